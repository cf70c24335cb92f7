#!/usr/bin/env python3
"""PhantomBuster API v2 simulator (Python 3 standard library only).

The only stand-in for PhantomBuster used by the tests and the demo. It follows the
contract in shared/research/phantombuster-api.md: X-Phantombuster-Key auth, JSON
bodies under /api/v2, asynchronous containers (starting -> running -> finished) and a
completion webhook POSTed to the agent's notifications.webhook URL. It adds what the
real service does not document but clients must survive: a rate limit (429 +
Retry-After), parallelism refusals ("maxParallelismReached") and fault switches.
A control API under /_sim/ (no key) reads counters and changes switches at runtime.
See docs/simulator.md.
"""
import argparse
import json
import math
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# Every switch: flag --name-with-dashes, runtime key name_with_underscores.
DEFAULTS = {
    "api_key": os.environ.get("PHANTOMBUSTER_API_KEY") or "sim-api-key",
    "parallelism": 1,          # org plan.parallelism
    "rate_limit": 60,          # API calls allowed per rate_window (0 = unlimited)
    "rate_window": 60.0,       # seconds (sliding window)
    "run_seconds": 2.0,        # running phase of a container
    "start_seconds": 0.1,      # starting phase (reported as launchDuration)
    "exit_plan": "0:finished", # see parse_exit_plan
    "webhook_url": "",         # default webhook for agents without notifications.webhook
    "webhook_timeout": 10.0,   # seconds per webhook POST (no retries, like the real service)
    "refusal_status": 400,     # HTTP status of a maxParallelismReached refusal
    "strict_agents": False,    # unknown agent ids -> 404 instead of auto-creating them
    "string_ids": False,       # webhook agentId/containerId as strings instead of numbers
    "drop_next": 0,            # drop the next N webhooks
    "drop_fraction": 0.0,      # drop this fraction of webhooks (random)
    "webhook_delay": 0.0,      # seconds to wait before POSTing a webhook
    "duplicate_next": 0,       # send the next N webhooks twice
    "duplicate_fraction": 0.0, # send this fraction of webhooks twice
    "fail_next": 0,            # answer the next N API calls with fail_status
    "fail_status": 503,
    "hang_next": 0,            # do not answer the next N API calls for hang_seconds
    "hang_seconds": 30.0,
    "hang_action": "drop",     # "drop": hang, close, no side effect; "process": hang, then
                               # handle and answer late; "lose": handle at once, hang, close
    "seed": None,              # random seed for the *_fraction switches
    "quiet": False,            # do not log one line per HTTP call
}

LAUNCH_FIELDS = {"id", "argument", "arguments", "bonusArgument", "saveArgument",
                 "saveArguments", "manualLaunch", "maxInstanceCount",
                 "internalMetadata", "userCustomMetadata"}
TERMINAL_MESSAGES = {"finished", "killed", "global timeout", "org timeout",
                     "agent timeout", "unknown", "no log timeout"}


def now_ms():
    return int(time.time() * 1000)


_log_lock = threading.Lock()


def log(event, **kv):
    parts = [time.strftime("%Y-%m-%dT%H:%M:%S"), "pb-sim", event]
    parts += ["%s=%s" % (k, json.dumps(v) if isinstance(v, str) and (" " in v or not v) else v)
              for k, v in kv.items()]
    with _log_lock:
        print(" ".join(parts), file=sys.stderr, flush=True)


def parse_plan_list(text):
    """"0:finished,1:finished,0:killed" -> [(0,"finished"),(1,"finished"),(0,"killed")]."""
    plan = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        code, _, msg = item.partition(":")
        plan.append((int(code), msg.strip() or "finished"))
    if not plan:
        raise ValueError("empty exit plan")
    return plan


def parse_exit_plan(value):
    """A list cycled over all launches, or a per-agent mapping (JSON object; key "*" =
    every other agent), each agent cycling through its own list."""
    if isinstance(value, str) and value.strip().startswith("{"):
        value = json.loads(value)
    if isinstance(value, dict):
        return {str(k): parse_plan_list(v) for k, v in value.items()}
    return {"*": parse_plan_list(value)}


class Sim:
    def __init__(self, cfg, state_file=None):
        self.lock = threading.RLock()
        self.cfg = dict(cfg)
        self.plan = parse_exit_plan(self.cfg["exit_plan"])
        self.rng = random.Random(self.cfg["seed"])
        self.state_file = state_file
        self.timers = {}
        self.generation = 0           # bumped by reset: late deliveries of before are not counted
        self._reset_state()
        if state_file and os.path.exists(state_file):
            self._load()

    # ---- state ------------------------------------------------------------
    def _reset_state(self):
        self.agents = {}
        self.containers = {}          # int id -> dict (insertion ordered)
        self.plan_pos = {}
        self.window = deque()         # monotonic times of calls counted by the rate limit
        self.next_cid = 7583362109412000 + random.randrange(0, 800) * 1000  # < 2**53
        self.next_agent = 4717388215573000
        self.c = {
            "calls": {}, "api_calls": 0, "launches": 0, "launch_refusals": 0,
            "http_400_sent": 0, "http_401_sent": 0, "http_404_sent": 0,
            "http_429_sent": 0, "http_5xx_sent": 0, "hangs": 0, "polls": 0,
            "stops": 0, "containers_killed": 0,
            "webhooks_sent": 0, "webhooks_dropped": 0, "webhooks_duplicated": 0,
            "webhooks_failed": 0, "webhooks_no_url": 0, "max_concurrent_observed": 0,
        }

    def reset(self):
        with self.lock:
            for t in self.timers.values():
                t.cancel()
            self.timers = {}
            self.generation += 1
            self._reset_state()
            for k in ("drop_next", "duplicate_next", "fail_next", "hang_next"):
                self.cfg[k] = 0
            self.rng = random.Random(self.cfg["seed"])
            self._save()
        log("reset")

    def _save(self):
        if not self.state_file:
            return
        data = {"agents": self.agents, "containers": list(self.containers.values()),
                "counters": self.c, "next_cid": self.next_cid, "next_agent": self.next_agent}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.state_file)

    def _load(self):
        with open(self.state_file) as f:
            data = json.load(f)
        self.agents = data.get("agents", {})
        self.c.update(data.get("counters", {}))
        self.next_cid = data.get("next_cid", self.next_cid)
        self.next_agent = data.get("next_agent", self.next_agent)
        for ct in data.get("containers", []):
            self.containers[int(ct["id"])] = ct
        log("state_loaded", file=self.state_file, containers=len(self.containers))

    def resume_timers(self):
        """After loading a state file, finish unfinished containers at their planned time."""
        with self.lock:
            for cid, ct in self.containers.items():
                if ct["status"] != "finished":
                    self._schedule(cid, max(0.0, ct["plannedEnd"] / 1000.0 - time.time()))

    def set_config(self, changes):
        with self.lock:
            for key, value in changes.items():
                if key not in DEFAULTS:
                    raise ValueError("unknown switch %r" % key)
                if key == "exit_plan":
                    self.plan = parse_exit_plan(value)
                    self.plan_pos = {}
                elif key == "seed":
                    self.rng = random.Random(value)
                elif isinstance(DEFAULTS[key], bool):
                    value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
                elif isinstance(DEFAULTS[key], (int, float)):
                    value = type(DEFAULTS[key])(value)
                if key == "hang_action" and value not in ("drop", "process", "lose"):
                    raise ValueError("hang_action must be drop, process or lose")
                self.cfg[key] = value
            log("config", **{k: self.cfg[k] if k != "api_key" else "***" for k in changes})
            return dict(self.cfg)

    def count(self, key, n=1):
        with self.lock:
            self.c[key] = self.c.get(key, 0) + n

    # ---- containers ---------------------------------------------------------
    def running(self, agent_id=None):
        return [ct for ct in self.containers.values() if ct["status"] != "finished"
                and (agent_id is None or ct["agentId"] == agent_id)]

    def status_of(self, ct):
        if ct["status"] == "finished":
            return "finished"
        return "running" if now_ms() >= ct["launchedAt"] else "starting"

    def get_agent(self, agent_id, force=False):
        agent_id = str(agent_id)
        a = self.agents.get(agent_id)
        if a is None and (force or not self.cfg["strict_agents"]):
            a = self.agents[agent_id] = {
                "id": agent_id, "name": "Simulated agent %s" % agent_id,
                "script": "LinkedIn Profile Scraper.js", "scriptOrg": "phantombuster",
                "branch": "master", "argument": "{}", "launchType": "manually",
                "maxParallelism": None, "maxRetryNumber": 0, "executionTimeLimit": None,
                "notifications": {}, "createdAt": now_ms()}
            log("agent_created", agent=agent_id)
        return a

    def next_exit(self, agent_id):
        key = agent_id if agent_id in self.plan else "*"
        plan = self.plan.get(key) or [(0, "finished")]
        pos = self.plan_pos.get(key, 0)
        self.plan_pos[key] = pos + 1
        return plan[pos % len(plan)]

    def launch(self, agent, argument, bonus):
        """Caller holds the lock and has checked the limits."""
        cid = self.next_cid
        self.next_cid += 1 + random.randrange(0, 50)
        created = now_ms()
        start_ms = int(self.cfg["start_seconds"] * 1000)
        run_ms = int(self.cfg["run_seconds"] * 1000)
        code, msg = self.next_exit(agent["id"])
        self.containers[cid] = {
            "id": str(cid), "agentId": agent["id"], "status": "starting",
            "createdAt": created, "launchedAt": created + start_ms,
            "plannedEnd": created + start_ms + run_ms, "endedAt": None,
            "exitCode": None, "endType": None, "plannedExit": [code, msg],
            "argument": argument, "bonusArgument": bonus, "resultObject": None,
            "polls": 0, "webhook": "pending"}
        self.c["launches"] += 1
        n = len(self.running())
        self.c["max_concurrent_observed"] = max(self.c["max_concurrent_observed"], n)
        self._schedule(cid, (start_ms + run_ms) / 1000.0)
        self._save()
        log("launch", agent=agent["id"], container=cid, running=n, exit="%d:%s" % (code, msg))
        return cid

    def _schedule(self, cid, delay):
        t = threading.Timer(delay, self.finish, args=(cid,))
        t.daemon = True
        self.timers[cid] = t
        t.start()

    def finish(self, cid, forced=None):
        with self.lock:
            ct = self.containers.get(cid)
            if ct is None or ct["status"] == "finished":
                return
            t = self.timers.pop(cid, None)
            if t is not None and forced is not None:
                t.cancel()
            code, msg = forced or ct["plannedExit"]
            ended = now_ms()
            ct.update(status="finished", endedAt=ended, exitCode=code, endType=msg)
            if ended < ct["launchedAt"]:
                ct["launchedAt"] = ended
            if code == 0:
                arg = ct["argument"]
                try:
                    arg = json.loads(arg)
                except (TypeError, ValueError):
                    pass
                ct["resultObject"] = json.dumps([{"containerId": ct["id"], "argument": arg,
                                                  "profileUrl": "https://www.linkedin.com/in/sim-%s/" % ct["id"]}])
            else:
                ct["resultObject"] = ""
            agent = self.agents.get(ct["agentId"]) or {}
            url = (agent.get("notifications") or {}).get("webhook") or self.cfg["webhook_url"]
            ids_as_str = self.cfg["string_ids"]
            payload = {
                "agentId": ct["agentId"] if ids_as_str or not ct["agentId"].isdigit() else int(ct["agentId"]),
                "agentName": agent.get("name", ""),
                "containerId": ct["id"] if ids_as_str else cid,
                "script": agent.get("script", ""), "scriptOrg": agent.get("scriptOrg", ""),
                "branch": agent.get("branch", ""),
                "launchDuration": ct["launchedAt"] - ct["createdAt"],
                "runDuration": ended - ct["launchedAt"],
                "exitCode": code, "exitMessage": msg, "resultObject": ct["resultObject"]}
            copies = 1
            if not url:
                ct["webhook"] = "no-url"
                self.c["webhooks_no_url"] += 1
                copies = 0
            elif self.cfg["drop_next"] > 0 or self.rng.random() < self.cfg["drop_fraction"]:
                if self.cfg["drop_next"] > 0:
                    self.cfg["drop_next"] -= 1
                ct["webhook"] = "dropped"
                self.c["webhooks_dropped"] += 1
                copies = 0
            elif self.cfg["duplicate_next"] > 0 or self.rng.random() < self.cfg["duplicate_fraction"]:
                if self.cfg["duplicate_next"] > 0:
                    self.cfg["duplicate_next"] -= 1
                self.c["webhooks_duplicated"] += 1
                copies = 2
            delay, timeout = self.cfg["webhook_delay"], self.cfg["webhook_timeout"]
            self._save()
        log("finished", container=cid, agent=ct["agentId"], exitCode=code, exitMessage=msg,
            webhook=ct["webhook"] if copies == 0 else "x%d" % copies)
        if copies:
            body = json.dumps(payload).encode()
            threading.Thread(target=self._deliver, args=(cid, url, body, copies, delay, timeout,
                                                         self.generation), daemon=True).start()

    def _deliver(self, cid, url, body, copies, delay, timeout, generation):
        if delay > 0:
            time.sleep(delay)
        results = []
        for i in range(copies):
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "pb-simulator"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    resp.read()
                    status = resp.status
            except urllib.error.HTTPError as e:
                status = e.code
            except Exception as e:  # connection refused, timeout, ...
                status = "error:%s" % type(e).__name__
            ok = isinstance(status, int) and 200 <= status < 300
            with self.lock:
                if generation == self.generation:
                    self.count("webhooks_sent" if ok else "webhooks_failed")
            results.append(status)
            log("webhook", container=cid, copy=i + 1, status=status, url=url.split("?")[0])
        with self.lock:
            ct = self.containers.get(cid) if generation == self.generation else None
            if ct is not None:
                ct["webhook"] = "sent" if all(isinstance(s, int) and 200 <= s < 300 for s in results) else "failed"
                ct["webhookStatus"] = results

    def stats(self):
        with self.lock:
            s = json.loads(json.dumps(self.c))
            run = self.running()
            s["running"] = len(run)
            s["calls_per_container"] = round(s["api_calls"] / s["launches"], 3) if s["launches"] else 0
            s["polls_by_container"] = {ct["id"]: ct["polls"] for ct in self.containers.values() if ct["polls"]}
            s["containers"] = [{
                "id": ct["id"], "agentId": ct["agentId"], "status": self.status_of(ct),
                "exitCode": ct["exitCode"], "exitMessage": ct["endType"],
                "createdAt": ct["createdAt"], "endedAt": ct["endedAt"],
                "argument": ct["argument"], "bonusArgument": ct["bonusArgument"],
                "polls": ct["polls"], "webhook": ct["webhook"]} for ct in self.containers.values()]
            s["config"] = {k: v for k, v in self.cfg.items() if k != "api_key"}
            return s

    def shutdown(self):
        with self.lock:
            for t in self.timers.values():
                t.cancel()
            self._save()


def err(code, error, message):
    return code, {"status": "error", "error": error, "message": message}


def as_arg_string(value):
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pb-simulator/1"
    sim = None  # set by main()

    def log_message(self, fmt, *args):  # http.server's own access log: replaced by ours
        pass

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send_json(self, code, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.close_connection = True
            log("client_gone", path=self.path.split("?")[0], status=code)

    def dispatch(self, method):
        sim = self.sim
        url = urlsplit(self.path)
        path = url.path.rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        raw = self.read_body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        if path.startswith("/_sim/"):
            code, obj = self.control(method, path, body)
            return self.send_json(code, obj)
        if not path.startswith("/api/v2/"):
            return self.send_json(*err(404, "notFound", "No such endpoint"))
        endpoint = "%s %s" % (method, path[len("/api/v2"):])
        headers = {}
        code = obj = None
        hang = fail = False
        with sim.lock:
            sim.c["api_calls"] += 1
            sim.c["calls"][endpoint] = sim.c["calls"].get(endpoint, 0) + 1
            if self.headers.get("X-Phantombuster-Key") != sim.cfg["api_key"]:
                code, obj = err(401, "unauthorized", "Missing or invalid X-Phantombuster-Key")
            elif sim.cfg["hang_next"] > 0:
                sim.cfg["hang_next"] -= 1
                sim.c["hangs"] += 1
                hang = True
            elif sim.cfg["fail_next"] > 0:
                sim.cfg["fail_next"] -= 1
                fail = True
            else:  # sliding-window rate limit; refused calls are not counted in the window
                limit, window = sim.cfg["rate_limit"], sim.cfg["rate_window"]
                mono = time.monotonic()
                while sim.window and sim.window[0] <= mono - window:
                    sim.window.popleft()
                if limit > 0 and len(sim.window) >= limit:
                    retry = max(1, math.ceil(sim.window[0] + window - mono))
                    headers["Retry-After"] = str(retry)
                    code, obj = err(429, "tooManyRequests",
                                    "Too many requests: %d calls per %gs, retry in %ds" % (limit, window, retry))
                else:
                    sim.window.append(mono)
        lose = False
        if hang:
            seconds, action = sim.cfg["hang_seconds"], sim.cfg["hang_action"]
            log("hang", endpoint=endpoint, seconds=seconds, action=action)
            if action == "lose":
                lose = True
            else:
                time.sleep(seconds)
                if action == "drop":
                    self.close_connection = True
                    return
        if fail:
            code, obj = err(sim.cfg["fail_status"], "internalServerError", "Simulated server error")
        if code is None:
            if body is None or not isinstance(body, dict):
                code, obj = err(400, "badRequest", "Body is not a JSON object")
            else:
                handler = ROUTES.get(endpoint)
                if handler is None:
                    code, obj = err(404, "notFound", "No such endpoint: %s" % endpoint)
                else:
                    code, obj = handler(sim, query, body)
        if code == 429:
            sim.count("http_429_sent")
        elif code >= 500:
            sim.count("http_5xx_sent")
        elif code in (400, 401, 404):
            sim.count("http_%d_sent" % code)
        if not sim.cfg["quiet"]:
            log("call", endpoint=endpoint, status=code,
                **({"error": obj.get("error")} if isinstance(obj, dict) and obj.get("status") == "error" else {}))
        if lose:  # handled, but the answer never leaves
            time.sleep(seconds)
            self.close_connection = True
            return
        self.send_json(code, obj, headers)

    def control(self, method, path, body):
        sim = self.sim
        if path == "/_sim/stats" and method == "GET":
            return 200, sim.stats()
        if path == "/_sim/config" and method == "GET":
            return 200, {k: v for k, v in sim.cfg.items() if k != "api_key"}
        if path == "/_sim/config" and method == "POST":
            if not isinstance(body, dict):
                return 400, {"error": "body must be a JSON object"}
            try:
                cfg = sim.set_config(body)
            except (ValueError, TypeError) as e:
                return 400, {"error": str(e)}
            return 200, {k: v for k, v in cfg.items() if k != "api_key"}
        if path == "/_sim/reset" and method == "POST":
            sim.reset()
            return 200, {"status": "reset"}
        return 404, {"error": "unknown control endpoint"}


# ---- API v2 endpoints: (sim, query, body) -> (status, json) ----------------------------

def api_launch(sim, q, body):
    unknown = set(body) - LAUNCH_FIELDS
    if unknown:
        return err(400, "badRequest", "Unknown parameter(s): %s" % ", ".join(sorted(unknown)))
    if "id" not in body or body["id"] in (None, ""):
        return err(400, "badRequest", "Missing parameter: id")
    if "argument" in body and "arguments" in body:
        return err(400, "badRequest", "Duplicated parameter: argument/arguments")
    with sim.lock:
        agent = sim.get_agent(body["id"])
        if agent is None:
            return err(404, "notFound", "Agent not found")
        org_running = len(sim.running())
        agent_running = len(sim.running(agent["id"]))
        mic = body.get("maxInstanceCount")
        why = None
        if org_running >= sim.cfg["parallelism"]:
            why = "org parallelism %d" % sim.cfg["parallelism"]
        elif isinstance(mic, (int, float)) and mic >= 1 and agent_running >= mic:
            why = "maxInstanceCount %s" % mic
        elif agent.get("maxParallelism") and agent_running >= agent["maxParallelism"]:
            why = "agent maxParallelism %s" % agent["maxParallelism"]
        if why:
            sim.c["launch_refusals"] += 1
            log("launch_refused", agent=agent["id"], reason=why, running=org_running)
            return err(sim.cfg["refusal_status"], "maxParallelismReached",
                       "Maximum parallel executions reached")
        arg = body.get("argument", body.get("arguments"))
        arg = as_arg_string(arg) if arg is not None else agent.get("argument")
        if body.get("saveArgument") or body.get("saveArguments"):
            agent["argument"] = arg
        cid = sim.launch(agent, arg, as_arg_string(body.get("bonusArgument")))
    return 200, {"containerId": str(cid)}


def api_container_fetch(sim, q, body):
    with sim.lock:
        sim.c["polls"] += 1
        try:
            ct = sim.containers.get(int(q.get("id", "")))
        except ValueError:
            ct = None
        if ct is None:
            return err(404, "notFound", "Container not found")
        ct["polls"] += 1
        out = {"id": ct["id"], "status": sim.status_of(ct), "createdAt": ct["createdAt"],
               "launchType": "user api call", "retryNumber": 0, "agentId": ct["agentId"]}
        if out["status"] != "starting":
            out["launchedAt"] = ct["launchedAt"]
        if ct["status"] == "finished":
            out.update(endType=ct["endType"], endedAt=ct["endedAt"], exitCode=ct["exitCode"])
        if q.get("withResultObject") in ("1", "true"):
            out["resultObject"] = ct["resultObject"]
        return 200, out


def api_agent_fetch_output(sim, q, body):
    """The agent's most recent container (what a client checks after a lost launch answer)."""
    with sim.lock:
        agent = sim.get_agent(q["id"]) if q.get("id") else None
        if agent is None:
            return err(404, "notFound", "Agent not found")
        mine = [ct for ct in sim.containers.values() if ct["agentId"] == agent["id"]]
        last = mine[-1] if mine else None
        ended = [ct["endedAt"] for ct in mine if ct["endedAt"]]
        return 200, {"containerId": last["id"] if last else None,
                     "status": sim.status_of(last) if last else "never launched",
                     "output": "", "outputPos": 0, "mostRecentEndedAt": max(ended) if ended else None,
                     "progress": None, "progressLabel": None,
                     "isAgentRunning": bool(sim.running(agent["id"])), "canSoftAbort": False}


def api_agent_stop(sim, q, body):
    with sim.lock:
        agent = sim.agents.get(str(body.get("id", "")))
        if agent is None:
            return err(400, "badRequest", "Agent not found")
        sim.c["stops"] += 1
        victims = [int(ct["id"]) for ct in sim.running(agent["id"])]
    log("stop", agent=agent["id"], killed=len(victims))
    for cid in victims:
        sim.count("containers_killed")
        sim.finish(cid, forced=(1, "killed"))
    return 200, {}


def api_agent_fetch(sim, q, body):
    with sim.lock:
        agent = sim.get_agent(q["id"]) if q.get("id") else None
        if agent is None:
            return err(404, "notFound", "Agent not found")
        return 200, dict(agent)


def save_problem(body):
    """What the spec's agents/save schema refuses among the fields the worker sends."""
    notifications = body.get("notifications")
    if notifications is not None and not isinstance(notifications, dict):
        return "notifications must be an object"
    webhook = (notifications or {}).get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or len(webhook) > 2000):
        return "notifications.webhook must be a string of at most 2000 characters"
    mp = body.get("maxParallelism")
    if mp is not None and (isinstance(mp, bool) or not isinstance(mp, (int, float))):
        return "maxParallelism must be a number"
    return None


def api_agent_save(sim, q, body):
    """Top-level fields replace; `notifications` is merged key by key (documented choice)."""
    problem = save_problem(body)
    if problem:
        return err(400, "badRequest", problem)
    with sim.lock:
        if body.get("id") not in (None, ""):
            agent = sim.get_agent(body["id"])
            if agent is None:
                return err(404, "notFound", "Agent not found")
        else:  # no id: create a new agent (even with --strict-agents)
            sim.next_agent += 1
            agent = sim.get_agent(str(sim.next_agent), force=True)
        for k, v in body.items():
            if k == "id":
                continue
            if k == "notifications" and isinstance(v, dict):
                agent.setdefault("notifications", {}).update(v)
            elif k in ("argument", "arguments"):
                agent["argument"] = as_arg_string(v)
            else:
                agent[k] = v
        sim._save()
        log("agent_saved", agent=agent["id"], fields=",".join(sorted(body)))
        return 200, {"id": agent["id"]}


def api_fetch_resources(sim, q, body):
    with sim.lock:
        return 200, {"plan": {"parallelism": sim.cfg["parallelism"], "agents": 100,
                              "executionTime": 20 * 3600 * 1000, "name": "simulator"},
                     "parallelism": {"used": len(sim.running()), "total": sim.cfg["parallelism"]},
                     "dailyResourceNextResetAt": now_ms() + 86400000,
                     "monthlyResourceNextResetAt": now_ms() + 30 * 86400000}


def api_running_containers(sim, q, body):
    with sim.lock:
        return 200, {"containers": [{
            "id": ct["id"], "agentId": ct["agentId"],
            "agentName": sim.agents.get(ct["agentId"], {}).get("name", ""),
            "createdAt": ct["createdAt"], "retryNumber": 0, "launchType": "user api call",
            "scriptSlug": "linkedin-profile-scraper"} for ct in sim.running()]}


ROUTES = {
    "POST /agents/launch": api_launch,
    "GET /containers/fetch": api_container_fetch,
    "POST /agents/stop": api_agent_stop,
    "GET /agents/fetch": api_agent_fetch,
    "GET /agents/fetch-output": api_agent_fetch_output,
    "POST /agents/save": api_agent_save,
    "GET /orgs/fetch-resources": api_fetch_resources,
    "GET /orgs/fetch-running-containers": api_running_containers,
}


def main(argv=None):
    p = argparse.ArgumentParser(description="PhantomBuster API v2 simulator (see docs/simulator.md)")
    p.add_argument("--port", type=int, default=8490)
    p.add_argument("--state-file", default=None)
    for key, default in DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", default=default)
        elif key == "seed":
            p.add_argument(flag, type=int, default=None)
        else:
            p.add_argument(flag, type=type(default), default=default)
    a = p.parse_args(argv)
    cfg = {k: getattr(a, k) for k in DEFAULTS}
    try:
        sim = Sim(cfg, a.state_file)
    except ValueError as e:
        p.error(str(e))
    Handler.sim = sim
    ThreadingHTTPServer.request_queue_size = 128  # listen backlog: bursts of launches
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    th = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    th.start()
    sim.resume_timers()
    log("listening", addr="127.0.0.1:%d" % server.server_address[1], parallelism=cfg["parallelism"],
        rate="%d/%gs" % (cfg["rate_limit"], cfg["rate_window"]), run_seconds=cfg["run_seconds"])
    stop.wait()
    log("shutdown")
    server.shutdown()
    server.server_close()
    sim.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
