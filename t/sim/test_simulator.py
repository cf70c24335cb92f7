#!/usr/bin/env python3
"""Tests of scripts/pb-simulator.py: starts it on a free port and talks HTTP to it.

Ends with a plain "N passed, N failed" line; exits non-zero on any failure."""
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SIM = os.path.join(ROOT, "scripts", "pb-simulator.py")
KEY = "test-key-123"
WEBHOOK_FIELDS = {"agentId", "agentName", "containerId", "script", "scriptOrg", "branch",
                  "launchDuration", "runDuration", "exitCode", "exitMessage", "resultObject"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A local webhook receiver: records (path, headers, body) of every POST."""

    def __init__(self):
        self.q = queue.Queue()
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.q.put((self.path, dict(self.headers), body))
                self.send_response(202)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def get(self, timeout=5):
        return self.q.get(timeout=timeout)

    def drain(self, wait=0.0):
        time.sleep(wait)
        out = []
        while not self.q.empty():
            out.append(self.q.get_nowait())
        return out


class SimCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rx = Receiver()
        cls.port = free_port()
        cls.base = "http://127.0.0.1:%d" % cls.port
        cls.hook = "http://127.0.0.1:%d/webhooks/phantombuster?secret=s3cr%%26t" % cls.rx.port
        cls.log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "pb-sim-test-%d.log" % cls.port), "w")
        cls.proc = subprocess.Popen([sys.executable, SIM, "--port", str(cls.port), "--api-key", KEY,
                                     "--run-seconds", "0.3", "--start-seconds", "0.05",
                                     "--webhook-url", cls.hook], stderr=cls.log)
        for _ in range(100):
            try:
                urllib.request.urlopen(cls.base + "/_sim/stats", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("simulator did not start")

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(10)
        cls.rx.server.shutdown()
        cls.log.close()

    def setUp(self):
        self.ctl("reset", {})
        self.ctl("config", {"parallelism": 1, "rate_limit": 1000, "rate_window": 60, "run_seconds": 0.3,
                            "exit_plan": "0:finished", "drop_fraction": 0, "duplicate_fraction": 0,
                            "webhook_delay": 0, "strict_agents": False, "string_ids": False,
                            "refusal_status": 400, "webhook_url": self.hook})
        self.rx.drain()

    # -- helpers
    def call(self, method, path, body=None, key=KEY, timeout=5):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if key is not None:
            req.add_header("X-Phantombuster-Key", key)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), json.loads(e.read() or b"null")

    def api(self, method, path, body=None, **kw):
        return self.call(method, "/api/v2" + path, body, **kw)

    def ctl(self, what, body=None):
        return self.call("POST" if body is not None else "GET", "/_sim/" + what, body, key=None)[2]

    def stats(self):
        return self.ctl("stats")

    def launch(self, agent="4717388215573025", **extra):
        return self.api("POST", "/agents/launch", dict({"id": agent}, **extra))

    def wait_idle(self, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            if self.stats()["running"] == 0:
                return
            time.sleep(0.05)
        self.fail("containers still running")

    # -- tests
    def test_auth(self):
        st, _, body = self.api("GET", "/orgs/fetch-resources", key=None)
        self.assertEqual((st, body["status"]), (401, "error"))
        st, _, _ = self.api("GET", "/orgs/fetch-resources", key="wrong")
        self.assertEqual(st, 401)
        st, _, body = self.api("GET", "/orgs/fetch-resources")
        self.assertEqual((st, body["plan"]["parallelism"]), (200, 1))
        self.assertEqual(self.stats()["http_401_sent"], 2)

    def test_launch_and_container_lifecycle(self):
        self.ctl("config", {"run_seconds": 1.0})
        st, _, body = self.launch(argument={"company": "Acme"})
        self.assertEqual(st, 200)
        self.assertEqual(list(body), ["containerId"])
        cid = body["containerId"]
        self.assertIsInstance(cid, str)
        self.assertTrue(cid.isdigit())
        st, _, c = self.api("GET", "/containers/fetch?id=" + cid)
        self.assertEqual(st, 200)
        self.assertIn(c["status"], ("starting", "running"))
        self.assertEqual((c["id"], c["launchType"], c["retryNumber"]), (cid, "user api call", 0))
        self.assertIsInstance(c["createdAt"], int)
        st, _, run = self.api("GET", "/orgs/fetch-running-containers")
        self.assertEqual([x["id"] for x in run["containers"]], [cid])
        self.wait_idle()
        st, _, c = self.api("GET", "/containers/fetch?id=%s&withResultObject=1" % cid)
        self.assertEqual((c["status"], c["endType"], c["exitCode"]), ("finished", "finished", 0))
        self.assertGreaterEqual(c["endedAt"], c["createdAt"])
        self.assertEqual(json.loads(c["resultObject"])[0]["argument"], {"company": "Acme"})
        st, _, _ = self.api("GET", "/containers/fetch?id=123456")
        self.assertEqual(st, 404)
        s = self.stats()
        self.assertEqual((s["launches"], s["polls"]), (1, 3))
        self.assertEqual(s["polls_by_container"], {cid: 2})

    def test_launch_bad_requests(self):
        self.assertEqual(self.launch(bogus=1)[0], 400)
        self.assertEqual(self.api("POST", "/agents/launch", {"argument": "{}"})[0], 400)
        self.assertEqual(self.launch(argument="{}", arguments="{}")[0], 400)
        self.assertEqual(self.api("GET", "/nope")[0], 404)
        self.assertEqual(self.stats()["launches"], 0)

    def test_rate_limit_429(self):
        self.ctl("config", {"rate_limit": 3, "rate_window": 30})
        codes = [self.api("GET", "/orgs/fetch-resources")[0] for _ in range(3)]
        self.assertEqual(codes, [200, 200, 200])
        st, headers, body = self.api("GET", "/orgs/fetch-resources")
        self.assertEqual(st, 429)
        self.assertTrue(headers["Retry-After"].isdigit())
        self.assertTrue(1 <= int(headers["Retry-After"]) <= 30)
        self.assertEqual((body["status"], body["error"]), ("error", "tooManyRequests"))
        self.assertTrue(body["message"])
        self.assertEqual(self.stats()["http_429_sent"], 1)
        # a short window frees up again
        self.ctl("config", {"rate_window": 0.3})
        time.sleep(0.4)
        self.assertEqual(self.api("GET", "/orgs/fetch-resources")[0], 200)

    def test_parallelism_refusal(self):
        self.ctl("config", {"run_seconds": 10})  # long enough to stay running on a loaded machine
        self.assertEqual(self.launch()[0], 200)
        st, _, body = self.launch(agent="999")
        self.assertEqual(st, 400)
        self.assertEqual(body, {"status": "error", "error": "maxParallelismReached",
                                "message": "Maximum parallel executions reached"})
        self.ctl("config", {"parallelism": 3, "refusal_status": 429})
        self.assertEqual(self.launch(agent="999")[0], 200)
        # maxInstanceCount: agent 999 already has one running
        st, _, body = self.launch(agent="999", maxInstanceCount=1)
        self.assertEqual((st, body["error"]), (429, "maxParallelismReached"))
        # agent maxParallelism saved on the agent
        self.assertEqual(self.api("POST", "/agents/save", {"id": "777", "maxParallelism": 1})[0], 200)
        self.assertEqual(self.launch(agent="777")[0], 200)
        self.assertEqual(self.launch(agent="777")[0], 429)
        s = self.stats()
        self.assertEqual((s["launches"], s["launch_refusals"], s["max_concurrent_observed"]), (3, 3, 3))

    def test_webhook_payload(self):
        st, _, body = self.launch(argument={"company": "Acme"})
        path, headers, raw = self.rx.get()
        self.assertEqual(path, "/webhooks/phantombuster?secret=s3cr%26t")
        self.assertEqual(headers.get("Content-Type"), "application/json")
        p = json.loads(raw)
        self.assertEqual(set(p), WEBHOOK_FIELDS)
        self.assertEqual(p["agentId"], 4717388215573025)
        self.assertEqual(p["containerId"], int(body["containerId"]))
        self.assertEqual((p["exitCode"], p["exitMessage"]), (0, "finished"))
        self.assertIsInstance(p["resultObject"], str)
        self.assertEqual(json.loads(p["resultObject"])[0]["argument"], {"company": "Acme"})
        for f in ("launchDuration", "runDuration"):
            self.assertIsInstance(p[f], int)
        self.assertGreaterEqual(p["runDuration"], 250)
        for f in ("agentName", "script", "scriptOrg", "branch"):
            self.assertIsInstance(p[f], str)
        time.sleep(0.1)
        s = self.stats()
        self.assertEqual((s["webhooks_sent"], s["webhooks_failed"]), (1, 0))
        self.assertEqual(s["containers"][0]["webhook"], "sent")

    def test_string_ids_and_agent_webhook(self):
        other = "http://127.0.0.1:%d/agent-hook?secret=a" % self.rx.port
        self.ctl("config", {"string_ids": True})
        self.api("POST", "/agents/save", {"id": "55", "notifications": {"webhook": other}})
        self.launch(agent="55")
        path, _, raw = self.rx.get()
        p = json.loads(raw)
        self.assertEqual(path, "/agent-hook?secret=a")
        self.assertEqual((p["agentId"], type(p["containerId"])), ("55", str))

    def test_drop_and_duplicate(self):
        self.ctl("config", {"drop_next": 1, "run_seconds": 0.1})
        self.launch()
        self.wait_idle()
        self.assertEqual(self.rx.drain(0.3), [])
        self.ctl("config", {"duplicate_next": 1})
        self.launch()
        got = [self.rx.get(), self.rx.get()]
        self.assertEqual(got[0][2], got[1][2])
        self.launch_after_idle()
        self.assertEqual(len(self.rx.drain(0.5)), 1)
        s = self.stats()
        self.assertEqual((s["webhooks_dropped"], s["webhooks_duplicated"], s["webhooks_sent"]), (1, 1, 3))
        self.assertEqual([c["webhook"] for c in s["containers"]], ["dropped", "sent", "sent"])
        # fraction 1.0 drops everything
        self.ctl("config", {"drop_fraction": 1.0})
        self.launch_after_idle()
        self.wait_idle()
        self.assertEqual(self.rx.drain(0.3), [])
        self.assertEqual(self.stats()["webhooks_dropped"], 2)

    def launch_after_idle(self):
        self.wait_idle()
        self.assertEqual(self.launch()[0], 200)

    def test_webhook_delay_and_failure(self):
        self.ctl("config", {"webhook_delay": 0.5, "run_seconds": 0.05})
        t0 = time.time()
        self.launch()
        self.rx.get()
        self.assertGreaterEqual(time.time() - t0, 0.5)
        self.ctl("config", {"webhook_delay": 0, "webhook_url": "http://127.0.0.1:%d/x" % free_port()})
        self.launch_after_idle()
        self.wait_idle()
        time.sleep(0.3)
        s = self.stats()
        self.assertEqual((s["webhooks_sent"], s["webhooks_failed"]), (1, 1))

    def test_stop_kills_and_sends_webhook(self):
        self.ctl("config", {"run_seconds": 30})
        cid = self.launch()[2]["containerId"]
        st, _, _ = self.api("POST", "/agents/stop", {"id": "4717388215573025"})
        self.assertEqual(st, 200)
        p = json.loads(self.rx.get()[2])
        self.assertEqual((str(p["containerId"]), p["exitCode"], p["exitMessage"]), (cid, 1, "killed"))
        c = self.api("GET", "/containers/fetch?id=" + cid)[2]
        self.assertEqual((c["status"], c["endType"]), ("finished", "killed"))
        self.assertEqual(self.api("POST", "/agents/stop", {"id": "nope"})[0], 400)
        self.assertEqual(self.stats()["containers_killed"], 1)

    def test_agent_save_fetch_merge(self):
        self.api("POST", "/agents/save", {"id": "42", "name": "Scraper",
                                          "notifications": {"webhook": "http://x/?secret=1", "mailAfterEachLaunch": False}})
        self.api("POST", "/agents/save", {"id": "42", "maxParallelism": 1, "notifications": {"webhook": "http://y/?secret=2"}})
        st, _, a = self.api("GET", "/agents/fetch?id=42")
        self.assertEqual(st, 200)
        self.assertEqual((a["id"], a["name"], a["maxParallelism"]), ("42", "Scraper", 1))
        self.assertEqual(a["notifications"], {"webhook": "http://y/?secret=2", "mailAfterEachLaunch": False})
        st, _, created = self.api("POST", "/agents/save", {"name": "new"})
        self.assertEqual(self.api("GET", "/agents/fetch?id=" + created["id"])[2]["name"], "new")
        # the spec's types and webhook maxLength (2000) for what configure-agent sends
        for bad in ({"notifications": "x"}, {"notifications": {"webhook": 5}},
                    {"notifications": {"webhook": "http://h/?secret=" + "s" * 2000}},
                    {"maxParallelism": "1"}, {"maxParallelism": True}):
            self.assertEqual(self.api("POST", "/agents/save", dict(bad, id="42"))[0], 400, bad)
        self.assertEqual(self.api("GET", "/agents/fetch?id=42")[2]["maxParallelism"], 1)

    def test_agent_fetch_output(self):
        st, _, out = self.api("GET", "/agents/fetch-output?id=88")
        self.assertEqual((st, out["status"], out["containerId"], out["isAgentRunning"]),
                         (200, "never launched", None, False))
        self.ctl("config", {"run_seconds": 10})
        cid = self.launch(agent="88")[2]["containerId"]
        out = self.api("GET", "/agents/fetch-output?id=88")[2]
        self.assertEqual((out["containerId"], out["isAgentRunning"]), (cid, True))
        self.assertIn(out["status"], ("starting", "running"))
        self.api("POST", "/agents/stop", {"id": "88"})
        out = self.api("GET", "/agents/fetch-output?id=88")[2]
        self.assertEqual((out["containerId"], out["status"], out["isAgentRunning"]), (cid, "finished", False))
        self.assertIsInstance(out["mostRecentEndedAt"], int)
        self.assertEqual(self.stats()["polls"], 0)  # polls count containers/fetch only

    def test_strict_agents(self):
        self.ctl("config", {"strict_agents": True})
        self.assertEqual(self.launch(agent="31337")[0], 404)
        self.assertEqual(self.api("GET", "/agents/fetch?id=31337")[0], 404)

    def test_exit_plan_cycle_and_mapping(self):
        self.ctl("config", {"exit_plan": "0:finished,1:finished,0:killed", "run_seconds": 0.05})
        got = []
        for _ in range(4):
            self.launch_after_idle()
            p = json.loads(self.rx.get()[2])
            got.append((p["exitCode"], p["exitMessage"]))
        self.assertEqual(got, [(0, "finished"), (1, "finished"), (0, "killed"), (0, "finished")])
        self.ctl("config", {"exit_plan": {"7": "87:finished", "*": "0:finished"}})
        self.launch_after_idle()
        p = json.loads(self.rx.get()[2])
        self.assertEqual(p["exitCode"], 0)
        self.wait_idle()
        self.launch(agent="7")
        p = json.loads(self.rx.get()[2])
        self.assertEqual((p["exitCode"], p["resultObject"]), (87, ""))

    def test_fail_and_hang(self):
        self.ctl("config", {"fail_next": 2})
        self.assertEqual(self.api("GET", "/orgs/fetch-resources")[0], 503)
        st = self.launch()[0]
        self.assertEqual(st, 503)
        self.assertEqual(self.api("GET", "/orgs/fetch-resources")[0], 200)
        self.ctl("config", {"hang_next": 1, "hang_seconds": 1.5})
        t0 = time.time()
        with self.assertRaises(OSError):  # timeout, then the connection is closed unanswered
            self.api("POST", "/agents/launch", {"id": "1"}, timeout=0.5)
        self.assertLess(time.time() - t0, 1.4)
        time.sleep(1.2)
        self.assertEqual(self.stats()["launches"], 0)  # "drop": never handled
        self.assertEqual(self.launch()[0], 200)
        s = self.stats()
        self.assertEqual((s["http_5xx_sent"], s["hangs"], s["launches"]), (2, 1, 1))

    def test_hang_process_and_lose(self):
        self.ctl("config", {"hang_next": 1, "hang_seconds": 1.0, "hang_action": "process", "run_seconds": 10})
        with self.assertRaises(OSError):
            self.api("POST", "/agents/launch", {"id": "1"}, timeout=0.3)
        self.assertEqual(self.stats()["launches"], 0)  # not yet: handled after the hang
        time.sleep(1.0)
        self.assertEqual(self.stats()["launches"], 1)
        self.ctl("reset", {})
        self.ctl("config", {"hang_next": 1, "hang_seconds": 1.0, "hang_action": "lose", "run_seconds": 10})
        with self.assertRaises(OSError):
            self.api("POST", "/agents/launch", {"id": "1"}, timeout=0.3)
        self.assertEqual(self.stats()["launches"], 1)  # handled at once, answer lost
        self.assertEqual(self.call("POST", "/_sim/config", {"hang_action": "bogus"}, key=None)[0], 400)
        time.sleep(0.8)

    def test_stats_shape_and_reset(self):
        self.ctl("config", {"run_seconds": 10})
        self.launch()
        s = self.stats()
        for k in ("calls", "launches", "launch_refusals", "http_429_sent", "http_5xx_sent", "polls",
                  "calls_per_container", "webhooks_sent", "webhooks_dropped", "webhooks_duplicated",
                  "webhooks_failed", "max_concurrent_observed", "running", "containers"):
            self.assertIn(k, s)
        self.assertEqual(s["calls"], {"POST /agents/launch": 1})
        self.assertEqual((s["running"], s["calls_per_container"]), (1, 1.0))
        self.ctl("reset", {})
        s = self.stats()
        self.assertEqual((s["launches"], s["containers"], s["running"]), (0, [], 0))
        self.assertEqual(self.rx.drain(0.5), [])  # a reset cancels pending webhooks

    def test_config_rejects_unknown(self):
        st, _, body = self.call("POST", "/_sim/config", {"no_such_switch": 1}, key=None)
        self.assertEqual(st, 400)


class LifecycleCase(unittest.TestCase):
    def test_sigterm_and_state_file(self):
        port = free_port()
        state = os.path.join(os.environ.get("TMPDIR", "/tmp"), "pb-sim-state-%d.json" % port)
        args = [sys.executable, SIM, "--port", str(port), "--api-key", KEY, "--state-file", state,
                "--run-seconds", "0.05"]
        for round_ in range(2):
            proc = subprocess.Popen(args, stderr=subprocess.PIPE)
            base = "http://127.0.0.1:%d" % port
            for _ in range(100):
                try:
                    s = json.loads(urllib.request.urlopen(base + "/_sim/stats", timeout=1).read())
                    break
                except OSError:
                    time.sleep(0.05)
            if round_ == 0:
                req = urllib.request.Request(base + "/api/v2/agents/save", method="POST",
                                             data=b'{"id":"9","name":"kept"}',
                                             headers={"X-Phantombuster-Key": KEY})
                urllib.request.urlopen(req, timeout=2).read()
            else:
                req = urllib.request.Request(base + "/api/v2/agents/fetch?id=9",
                                             headers={"X-Phantombuster-Key": KEY})
                self.assertEqual(json.loads(urllib.request.urlopen(req, timeout=2).read())["name"], "kept")
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(10), 0)
            self.assertIn(b"shutdown", proc.stderr.read())
        os.unlink(state)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    res = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(res.failures) + len(res.errors)
    print("%d passed, %d failed" % (res.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
