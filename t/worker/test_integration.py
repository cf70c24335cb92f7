#!/usr/bin/env python3
"""pb-worker against the PhantomBuster simulator, end to end.

Each scenario gets a flushed Redis database, a fresh simulator, a webhook
sink standing in for the nginx module (t/worker/webhook_sink.py), an SQLite
audit file (PostgreSQL for the outage scenario) and real pb-worker
processes.  Checks what the simulator saw (launches, concurrency, 429s),
what Redis holds and what the audit table says.

    test_integration.py --redis-port 6394 [--only NAME]

Environment: PB_WORKER_TEST_ONLY=name (one scenario), PB_TEST_DB_OUTAGE
(seconds of PostgreSQL outage, default 30), PB_TEST_SKIP_PG=1.
The last line is "N passed, N failed".
"""
import argparse
import functools
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

from stub_api import StubAPI

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("PB_WORKER_BUILD") or os.path.join(ROOT, "build", "worker")
WORKER = os.path.join(BUILD, "pb-worker")
PBCTL = os.path.join(BUILD, "pbctl")
SIM = os.path.join(ROOT, "scripts", "pb-simulator.py")
SINK = os.path.join(ROOT, "t", "worker", "webhook_sink.py")
API_KEY = "worker-test-key"
DB = 13
PG_PORT = int(os.environ.get("PB_WORKER_TEST_PG_PORT", "5497"))
TERMINAL = {"success", "failed", "timed_out", "dead_lettered"}

passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok - %s" % name)
    else:
        failed += 1
        print("not ok - %s%s" % (name, (": %s" % (detail,)) if detail else ""))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


class Env:
    def __init__(self, redis_port, name, db="sqlite", **sim):
        self.name = name
        self.redis_port = redis_port
        self.dir = tempfile.mkdtemp(prefix="pbw-%s-" % name)
        self.procs = {}
        self.sim_port, self.sink_port = free_port(), free_port()
        self.redis("FLUSHDB")
        if db == "sqlite":
            self.audit_url = "sqlite:" + os.path.join(self.dir, "audit.db")
        else:
            self.audit_url = "postgresql://postgres@127.0.0.1:%d/pb_test" % PG_PORT
        args = ["--port", self.sim_port, "--api-key", API_KEY, "--quiet",
                "--webhook-url", "http://127.0.0.1:%d/hook" % self.sink_port]
        sim.setdefault("run_seconds", 0.2)
        sim.setdefault("start_seconds", 0.05)
        for k, v in sim.items():
            args += ["--" + k.replace("_", "-"), v]
        self.spawn("sim", ["python3", SIM] + [str(a) for a in args])
        self.spawn("sink", ["python3", SINK, "--port", str(self.sink_port),
                            "--redis-port", str(redis_port), "--db", str(DB)])
        wait_for(lambda: self.port_open(self.sim_port) and self.port_open(self.sink_port), 10)

    @staticmethod
    def port_open(port):
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def spawn(self, name, argv, env=None):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=log, env=env,
                                            cwd=self.dir)
        return self.procs[name]

    def env(self, **extra):
        e = dict(os.environ)
        e.update({
            "REDIS_URL": "redis://127.0.0.1:%d/%d" % (self.redis_port, DB),
            "AUDIT_DATABASE_URL": self.audit_url,
            "PHANTOMBUSTER_API_KEY": API_KEY,
            "PHANTOMBUSTER_API_URL": "http://127.0.0.1:%d" % self.sim_port,
            "PB_MONITOR_INTERVAL": "0.5",
            "PB_HTTP_TIMEOUT": "3",
            "PB_HEARTBEAT_TTL": "3",
            "PB_BACKOFF_BASE": "0.2",
            "PB_BACKOFF_CAP": "2",
            "PB_LOG_LEVEL": "debug",
        })
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def worker(self, wid="w1", **extra):
        return self.spawn(wid, [WORKER], self.env(PB_WORKER_ID=wid, **extra))

    def pbctl(self, *args, stdin=None, **extra):
        r = subprocess.run([PBCTL] + [str(a) for a in args], capture_output=True,
                           text=True, env=self.env(**extra), timeout=60, input=stdin)
        return r

    def enqueue(self, n, prefix="job", agent="4717388215573025"):
        ids = []
        for i in range(n):
            jid = "%s-%03d" % (prefix, i)
            r = self.pbctl("enqueue", "--agent", agent, "--job-id", jid,
                           "--argument", json.dumps({"job": jid}))
            assert r.returncode == 0, r.stderr
            ids.append(jid)
        return ids

    def redis(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.redis_port), "-n", str(DB)]
                           + [str(a) for a in args], capture_output=True, text=True)
        return r.stdout.strip()

    def job(self, jid):
        out = self.redis("HGETALL", "phantombuster:job:" + jid).split("\n")
        return dict(zip(out[0::2], out[1::2])) if len(out) > 1 else {}

    def sim(self, path="stats", body=None):
        url = "http://127.0.0.1:%d/_sim/%s" % (self.sim_port, path)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def metrics(self):
        out = self.redis("HGETALL", "phantombuster:metrics").split("\n")
        return {k: int(v) for k, v in zip(out[0::2], out[1::2])} if len(out) > 1 else {}

    def audit_rows(self):
        if self.audit_url.startswith("sqlite:"):
            path = self.audit_url[len("sqlite:"):]
            if not os.path.exists(path):
                return {}
            con = sqlite3.connect(path)
            rows = con.execute("SELECT job_id, status, phantom_container_id, webhook_payload,"
                               " metadata FROM service_audit_logs").fetchall()
            con.close()
        else:
            sql = ("SELECT coalesce(json_agg(json_build_array(job_id, status, phantom_container_id,"
                   " webhook_payload::text, metadata::text)), '[]') FROM service_audit_logs")
            r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres",
                                "-d", "pb_test", "-qAt", "-c", sql], capture_output=True, text=True)
            rows = json.loads(r.stdout or "[]") if r.returncode == 0 else []
        out = {}
        for jid, status, cid, payload, md in rows:
            out.setdefault(jid, []).append({"status": status, "container": cid, "payload": payload,
                                            "metadata": json.loads(md or "{}")})
        return out

    def all_terminal(self, ids, timeout):
        return wait_for(lambda: all(self.job(j).get("state") in ("done", "dead") for j in ids),
                        timeout, 0.2)

    def outbox_drained(self, timeout=15):
        return wait_for(lambda: self.redis("LLEN", "phantombuster:audit:outbox") == "0", timeout)

    def stop(self, name, sig=signal.SIGTERM, timeout=12):
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return p.returncode if p else None
        p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
            return None

    def close(self, ok):
        # SIGTERM for workers too: a killed worker writes no coverage data
        # (.gcda); stop() falls back to SIGKILL after the wait
        for name in list(self.procs):
            self.stop(name, signal.SIGTERM, 12 if name.startswith("w") else 5)
        if ok and not os.environ.get("PB_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("# logs kept in %s" % self.dir)


def common_checks(env, ids, label, expect="success"):
    stats = env.sim()
    check("%s: every job %s" % (label, expect),
          all(env.job(j).get("status") == expect for j in ids),
          {j: env.job(j).get("status") for j in ids if env.job(j).get("status") != expect})
    check("%s: never more than one run at a time (simulator)" % label,
          stats["max_concurrent_observed"] <= 1, stats["max_concurrent_observed"])
    launched = [json.loads(c["argument"] or "{}").get("job") for c in stats["containers"]]
    check("%s: every job launched exactly once" % label,
          sorted(launched) == sorted(ids), "%d launches for %d jobs" % (len(launched), len(ids)))
    drained = env.outbox_drained()
    rows = env.audit_rows()
    bad = {j: rows.get(j) for j in ids
           if not (len(rows.get(j, [])) == 1 and rows[j][0]["status"] == expect
                   and rows[j][0]["payload"]
                   and rows[j][0]["container"] == env.job(j).get("container"))}
    check("%s: audit rows terminal with payload" % label, drained and not bad,
          (drained, dict(list(bad.items())[:2]), {j: env.job(j) for j in list(bad)[:1]}))
    return stats, rows


# ---- scenarios -------------------------------------------------------------

def s_basic(rp):
    env = Env(rp, "basic")
    ok = False
    try:
        ids = env.enqueue(5)
        env.worker("w1")
        check("basic: 5 jobs finish", env.all_terminal(ids, 30))
        stats, rows = common_checks(env, ids, "basic")
        md = rows[ids[0]][0]["metadata"]
        check("basic: metadata keys", all(k in md for k in (
            "webhook_received_at", "phantom_container_id", "next_job_queued",
            "queue_position", "attempts")), md)
        check("basic: webhook-driven, no polling", stats["polls"] == 0, stats["polls"])
        r = env.pbctl("status", "--json")
        st = json.loads(r.stdout)
        check("basic: pbctl status --json", r.returncode == 0 and st["counts"]["done"] == 5
              and st["counts"]["running"] == 0, r.stdout[:200])
        check("basic: SIGTERM exits 0 within 10 s", env.stop("w1", timeout=10) == 0)
        ok = True
    finally:
        env.close(ok)


def s_three_workers(rp):
    env = Env(rp, "three", rate_limit=120, rate_window=60, run_seconds=0.1)
    ok = False
    try:
        ids = env.enqueue(50)
        for w in ("w1", "w2", "w3"):
            env.worker(w, PB_API_CALLS_PER_MINUTE=100)
        check("three: 50 jobs finish", env.all_terminal(ids, 120))
        stats, rows = common_checks(env, ids, "three workers")
        check("three: 0 HTTP 429 received", stats["http_429_sent"] == 0, stats["http_429_sent"])
        check("three: no refusals needed", stats["launch_refusals"] == 0, stats["launch_refusals"])
        workers = {env.job(j).get("worker") for j in ids}
        check("three: work shared by the workers", len(workers) >= 2, workers)
        ok = True
    finally:
        env.close(ok)


def s_rate_limited(rp):
    # the throttle off and a tight simulator limit: 429s must happen and cost nothing
    env = Env(rp, "ratelimit", rate_limit=3, rate_window=4, run_seconds=0.1)
    ok = False
    try:
        ids = env.enqueue(8)
        env.worker("w1", PB_API_CALLS_PER_MINUTE=0)
        env.worker("w2", PB_API_CALLS_PER_MINUTE=0)
        check("429: 8 jobs finish", env.all_terminal(ids, 90))
        stats, _ = common_checks(env, ids, "429")
        m = env.metrics()
        check("429: the simulator did refuse with 429", stats["http_429_sent"] > 0,
              stats["http_429_sent"])
        check("429: counted in metrics", m.get("launch_429", 0) == stats["http_429_sent"],
              (m.get("launch_429"), stats["http_429_sent"]))
        check("429: no retry budget used", all(env.job(j).get("attempts") == "0" for j in ids))
        check("429: no dead letters", env.redis("ZCARD", "phantombuster:jobs:dead") == "0")
        ok = True
    finally:
        env.close(ok)


def s_refusals(rp):
    env = Env(rp, "refusals", parallelism=1, run_seconds=0.4)
    ok = False
    try:
        ids = env.enqueue(3, "a", agent="101") + env.enqueue(3, "b", agent="202")
        env.worker("w1", PB_MAX_RUNNING=2)
        check("refusal: 6 jobs finish", env.all_terminal(ids, 60))
        stats, _ = common_checks(env, ids, "refusal")
        m = env.metrics()
        check("refusal: maxParallelismReached seen and counted",
              stats["launch_refusals"] > 0 and m.get("launch_refusals") == stats["launch_refusals"],
              (stats["launch_refusals"], m.get("launch_refusals")))
        check("refusal: no attempts used", all(env.job(j).get("attempts") == "0" for j in ids))
        ok = True
    finally:
        env.close(ok)


def s_failures(rp):
    env = Env(rp, "failures", fail_next=2, fail_status=503)
    ok = False
    try:
        ids = env.enqueue(1, "f")
        env.worker("w1", PB_MAX_ATTEMPTS=5)
        check("5xx: job finishes after retries", env.all_terminal(ids, 30))
        j = env.job(ids[0])
        check("5xx: success with 2 attempts used", j.get("status") == "success"
              and j.get("attempts") == "2", j)
        env.sim("config", {"fail_next": 1, "fail_status": 400})
        ids2 = env.enqueue(1, "g")
        check("400: job settles", env.all_terminal(ids2, 30))
        j = env.job(ids2[0])
        check("400: dead-lettered at once with the reason", j.get("status") == "dead_lettered"
              and j.get("attempts") == "1" and "HTTP 400" in j.get("error", ""), j)
        r = env.pbctl("dlq", "list")
        check("400: pbctl dlq list shows it", ids2[0] in r.stdout, r.stdout)
        r = env.pbctl("dlq", "retry", ids2[0])
        check("400: pbctl dlq retry", r.returncode == 0, r.stderr)
        check("400: the retried job succeeds",
              wait_for(lambda: env.job(ids2[0]).get("status") == "success", 30))
        check("400: audit row went back and forward to success", env.outbox_drained()
              and env.audit_rows()[ids2[0]][0]["status"] == "success")
        j = env.job(ids2[0])
        r = env.pbctl("list", "--state", "done")
        line = [l for l in r.stdout.splitlines() if ids2[0] in l]
        check("400: after the retry the old error is gone (job, pbctl list)",
              "error" not in j and "last_error" not in j and line
              and "HTTP 400" not in line[0] and j["container"] in line[0], (j, r.stdout))
        md = env.audit_rows()[ids2[0]][0]["metadata"]
        check("400: the audit row keeps it as history only",
              "HTTP 400" in md.get("dead_letter_error", "") and "error" not in md, md)
        md = env.audit_rows()[ids[0]][0]["metadata"]
        check("5xx: the success row keeps the last launch error",
              "HTTP 503" in md.get("launch_error", "") and "last_error" not in env.job(ids[0]), md)
        env.sim("config", {"fail_next": 10, "fail_status": 503})
        ids3 = env.enqueue(1, "h")
        check("5xx: job settles when the budget runs out", env.all_terminal(ids3, 30))
        j = env.job(ids3[0])
        check("5xx: dead-lettered after PB_MAX_ATTEMPTS", j.get("status") == "dead_lettered"
              and j.get("attempts") == "5", j)
        ok = True
    finally:
        env.close(ok)


def s_dropped_webhook(rp):
    env = Env(rp, "dropped", drop_next=1, run_seconds=0.3)
    ok = False
    try:
        ids = env.enqueue(3, "d")
        env.worker("w1", SEQUENTIAL_QUEUE_TIMEOUT=2)
        check("dropped: all jobs finish", env.all_terminal(ids, 30))
        common_checks(env, ids, "dropped")
        j = env.job(ids[0])
        check("dropped: recovered by the timeout monitor (found_by polling)",
              j.get("found_by") == "polling", j)
        md = env.audit_rows()[ids[0]][0]["metadata"]
        check("dropped: audit says found_by polling", md.get("found_by") == "polling", md)
        check("dropped: the others came by webhook",
              all(env.job(i).get("found_by") == "webhook" for i in ids[1:]))
        ok = True
    finally:
        env.close(ok)


def s_timeout_stop(rp):
    env = Env(rp, "timeout", run_seconds=60)
    ok = False
    try:
        ids = env.enqueue(2, "t")
        env.worker("w1", SEQUENTIAL_QUEUE_TIMEOUT=2)
        check("timeout: first run settles", wait_for(
            lambda: env.job(ids[0]).get("state") == "done", 20))
        j = env.job(ids[0])
        check("timeout: marked timed_out", j.get("status") == "timed_out", j)
        stats = env.sim()
        check("timeout: agent stopped upstream", stats["stops"] >= 1, stats["stops"])
        check("timeout: slot freed, next job launched",
              wait_for(lambda: env.job(ids[1]).get("state") in ("running", "done"), 10))
        check("timeout: counted", env.metrics().get("timeouts", 0) >= 1)
        ok = True
    finally:
        env.close(ok)


def s_poll_mode(rp):
    env = Env(rp, "poll", webhook_url="", run_seconds=0.3)
    ok = False
    try:
        # no webhook URL at all: the simulator sends nothing
        env.sim("config", {"webhook_url": ""})
        ids = env.enqueue(3, "p")
        env.worker("w1", PB_POLL_MODE=1, PB_POLL_INTERVAL=0.3)
        check("poll: all jobs finish without webhooks", env.all_terminal(ids, 30))
        common_checks(env, ids, "poll")
        check("poll: found by polling", all(env.job(j).get("found_by") == "polling" for j in ids))
        ok = True
    finally:
        env.close(ok)


def s_instant_runs(rp):
    # runs that end before the launch answer is back: webhooks may come first
    env = Env(rp, "instant", run_seconds=0, start_seconds=0)
    ok = False
    try:
        ids = env.enqueue(10, "i")
        env.worker("w1")
        env.worker("w2")
        check("instant: all jobs finish", env.all_terminal(ids, 30))
        common_checks(env, ids, "instant")
        check("instant: nothing unknown", env.metrics().get("webhooks_unknown", 0) == 0,
              env.metrics())
        ok = True
    finally:
        env.close(ok)


def s_kill9(rp):
    env = Env(rp, "kill9", run_seconds=0.3)
    ok = False
    try:
        n, kills = 20, 20
        ids = env.enqueue(n, "k")
        names = ["w1", "w2", "w3"]
        for w in names:
            env.worker(w, SEQUENTIAL_QUEUE_TIMEOUT=20)
        rng = random.Random(int(os.environ.get("PB_TEST_SEED", "7")))
        for _ in range(kills):
            time.sleep(rng.uniform(0.05, 0.6))
            w = rng.choice(names)
            env.procs[w].kill()
            env.procs[w].wait()
            env.worker(w, SEQUENTIAL_QUEUE_TIMEOUT=20)
        check("kill -9 x%d: all jobs finish" % kills, env.all_terminal(ids, 120))
        stats, _ = common_checks(env, ids, "kill -9")
        m = env.metrics()
        check("kill -9: no webhook lost (every webhook sent was applied)",
              stats["webhooks_sent"] == n and m.get("webhooks", 0) >= n
              and env.redis("LLEN", "phantombuster:webhooks") == "0",
              (stats["webhooks_sent"], m.get("webhooks")))
        ok = True
    finally:
        env.close(ok)


def s_db_outage(rp):
    if os.environ.get("PB_TEST_SKIP_PG") == "1":
        return
    # one outage at a time on this host: concurrent runs share the cluster
    import fcntl
    os.makedirs("/tmp/pb", exist_ok=True)
    with open("/tmp/pb/worker-test-pg-%d.lock" % PG_PORT, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        db_outage(rp)


def db_outage(rp):
    outage = float(os.environ.get("PB_TEST_DB_OUTAGE", "30"))
    pg = os.path.join(ROOT, "scripts", "postgres.sh")
    r = subprocess.run([pg, "start", str(PG_PORT)], capture_output=True, text=True)
    if r.returncode != 0:
        check("db outage: PostgreSQL starts", False, r.stderr)
        return
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres", "-d",
                    "pb_test", "-qc", "DROP TABLE IF EXISTS service_audit_logs"],
                   capture_output=True)
    env = Env(rp, "dboutage", db="postgresql", run_seconds=0.5)
    ok = False
    try:
        ids = env.enqueue(12, "o")
        env.worker("w1")
        wait_for(lambda: env.job(ids[1]).get("state") == "done", 20)
        subprocess.run([pg, "stop", str(PG_PORT)], capture_output=True)
        t0 = time.time()
        time.sleep(outage)
        done_during = sum(1 for j in ids if env.job(j).get("state") == "done")
        backlog = int(env.redis("LLEN", "phantombuster:audit:outbox") or 0)
        check("db outage: work went on while the database was down (%d done)" % done_during,
              done_during > 2)
        check("db outage: audit rows waited in Redis (%d)" % backlog, backlog > 0)
        subprocess.run([pg, "start", str(PG_PORT)], capture_output=True)
        print("# database was down %.0f s" % (time.time() - t0))
        check("db outage: all jobs finish", env.all_terminal(ids, 60))
        common_checks(env, ids, "db outage")
        ok = True
    finally:
        env.close(ok)


def s_admin(rp):
    env = Env(rp, "admin", run_seconds=1.0, drop_next=1)
    ok = False
    try:
        ids = env.enqueue(2, "a")
        env.worker("w1", SEQUENTIAL_QUEUE_TIMEOUT=600)
        wait_for(lambda: env.job(ids[0]).get("state") == "running", 10)
        env.stop("w1")
        # the run ends upstream, its webhook is dropped, its worker is gone
        wait_for(lambda: env.sim()["webhooks_dropped"] == 1, 10)
        r = env.pbctl("--json", "restart")
        res = json.loads(r.stdout or "{}")
        check("restart: frees the slot of a run finished upstream",
              r.returncode == 0 and res.get("freed") == 1, (r.stdout, r.stderr))
        j = env.job(ids[0])
        check("restart: completed as by its webhook", j.get("status") == "success"
              and j.get("found_by") == "restart", j)

        env.redis("HSET", "phantombuster:job:ghost", "id", "ghost", "agent", "1",
                  "state", "running", "token", "x", "container", "123456789",
                  "worker", "nobody", "score", "1")
        env.redis("ZADD", "phantombuster:jobs:running", "99999999999999", "ghost")
        r = env.pbctl("restart")
        check("restart: frees a run unknown upstream", r.returncode == 0
              and env.job("ghost").get("status") == "failed"
              and "not found upstream" in env.job("ghost").get("error", ""),
              (r.stdout, r.stderr, env.job("ghost")))

        more = env.enqueue(2, "b")
        env.worker("w2")
        wait_for(lambda: env.job(ids[1]).get("state") == "running", 10)
        r = env.pbctl("drain", "--wait", "30")
        check("drain: waits for the running run, then exits 0",
              r.returncode == 0 and env.job(ids[1]).get("state") == "done", (r.stdout, r.stderr))
        launches = env.sim()["launches"]
        time.sleep(1.5)
        check("drain: no new launch while draining",
              env.sim()["launches"] == launches
              and all(env.job(j).get("state") == "pending" for j in more))
        r = env.pbctl("--json", "status")
        check("drain: status says draining",
              json.loads(r.stdout)["lane"]["state"] == "draining", r.stdout[:200])

        # a status page's command, through Redis, run by the worker
        env.redis("LPUSH", "phantombuster:control:commands",
                  json.dumps({"cmd": "resume", "request_id": "r1", "by": "test"}))
        check("command list: the worker runs it and answers",
              wait_for(lambda: env.redis("GET", "phantombuster:control:result:r1") != "", 5)
              and json.loads(env.redis("GET", "phantombuster:control:result:r1"))["ok"])
        env.redis("LPUSH", "phantombuster:control:commands",
                  json.dumps({"cmd": "dlq_retry", "id": "nope", "request_id": "r2"}))
        check("command list: a bad request answers an error",
              wait_for(lambda: env.redis("GET", "phantombuster:control:result:r2") != "", 5)
              and "not in the dead-letter set"
              in json.loads(env.redis("GET", "phantombuster:control:result:r2"))["error"])
        check("resumed: the drained jobs run", env.all_terminal(more, 20))
        ok = True
    finally:
        env.close(ok)


def s_crash_mid_launch(rp):
    # the launch call hangs 1.5 s, then the simulator launches: the worker is
    # killed inside the call and restarted under the same id
    env = Env(rp, "midlaunch", run_seconds=0.5, hang_next=1, hang_seconds=1.5,
              hang_action="process")
    ok = False
    try:
        ids = env.enqueue(3, "m")
        env.worker("w1")
        check("mid-launch: the call is in flight",
              wait_for(lambda: env.job(ids[0]).get("state") == "launching", 10))
        env.procs["w1"].kill()
        env.procs["w1"].wait()
        env.worker("w1")
        check("mid-launch: all jobs finish", env.all_terminal(ids, 40))
        common_checks(env, ids, "mid-launch")
        log = open(os.path.join(env.dir, "w1.log")).read()
        check("mid-launch: settled from its doubt, not by a second launch",
              '"msg":"launch in doubt","job":"m-000"' in log
              and env.sim()["launches"] == 3, env.sim()["launches"])

        # the call hangs past our HTTP timeout and is dropped: nothing launched,
        # so the job is retried (one attempt used) and launched once
        env.sim("config", {"hang_next": 1, "hang_seconds": 3, "hang_action": "drop"})
        more = env.enqueue(1, "n")
        env.stop("w1")
        env.worker("w1", PB_HTTP_TIMEOUT=1)
        check("lost answer: job finishes", env.all_terminal(more, 30))
        j = env.job(more[0])
        check("lost answer: retried once after checking upstream",
              j.get("status") == "success" and j.get("attempts") == "1", j)
        check("lost answer: launched once", env.sim()["launches"] == 4, env.sim()["launches"])
        ok = True
    finally:
        env.close(ok)


def s_lost_answer(rp):
    # the launch is handled but its answer never comes (HTTP timeout 1 s), and the
    # run ends, its webhook queued, before the worker gives up: it must not relaunch
    env = Env(rp, "lostanswer", run_seconds=0.1, start_seconds=0.02, hang_next=1,
              hang_seconds=2, hang_action="lose")
    ok = False
    try:
        ids = env.enqueue(2, "l")
        env.worker("w1", PB_HTTP_TIMEOUT=1)
        check("lost answer, run over: all jobs finish", env.all_terminal(ids, 30))
        common_checks(env, ids, "lost answer, run over")
        j = env.job(ids[0])
        check("lost answer, run over: completed by its webhook, no attempt used",
              j.get("found_by") == "webhook" and j.get("attempts") == "0", j)
        check("lost answer, run over: counted as in doubt",
              env.metrics().get("launches_in_doubt") == 1, env.metrics())

        # the run outlasts the timeout: PhantomBuster shows it, the job is bound to it
        env.sim("config", {"hang_next": 1, "hang_seconds": 2, "hang_action": "lose",
                           "run_seconds": 3})
        more = env.enqueue(1, "m")
        check("lost answer, run going: job finishes", env.all_terminal(more, 30))
        stats, _ = common_checks(env, ids + more, "lost answer, run going")
        j = env.job(more[0])
        check("lost answer, run going: bound to its run, no attempt used",
              j.get("found_by") == "webhook" and j.get("attempts") == "0", j)
        log = open(os.path.join(env.dir, "w1.log")).read()
        check("lost answer, run going: found through agents/fetch-output",
              '"msg":"launch reconciled","job":"m-000","result":"recorded"' in log
              and stats["calls"].get("GET /agents/fetch-output", 0) >= 1, stats["calls"])
        ok = True
    finally:
        env.close(ok)


def s_check_fails(rp):
    # the launch request is never handled (timeout), and the worker's check of
    # PhantomBuster fails too (429, then a timeout): the job stays in doubt, is
    # relaunched once PhantomBuster shows no run, and is not dead-lettered
    env = Env(rp, "checkfails", hang_next=1, hang_seconds=2, hang_action="drop",
              fail_next=1, fail_status=429)
    ok = False
    try:
        ids = env.enqueue(1, "c")
        env.worker("w1", PB_HTTP_TIMEOUT=1, SEQUENTIAL_QUEUE_TIMEOUT=4)
        check("check 429: job finishes", env.all_terminal(ids, 40))
        j = env.job(ids[0])
        check("check 429: success, relaunched with one attempt",
              j.get("status") == "success" and j.get("attempts") == "1", j)
        check("check 429: the check did get a 429", env.sim()["http_429_sent"] == 1,
              env.sim()["http_429_sent"])

        env.sim("config", {"hang_next": 2, "hang_seconds": 2, "hang_action": "drop"})
        more = env.enqueue(1, "d")
        check("check timeout: job finishes", env.all_terminal(more, 40))
        j = env.job(more[0])
        check("check timeout: success, relaunched with one attempt",
              j.get("status") == "success" and j.get("attempts") == "1", j)
        common_checks(env, ids + more, "check fails")
        check("check fails: nothing dead-lettered",
              env.redis("ZCARD", "phantombuster:jobs:dead") == "0")
        ok = True
    finally:
        env.close(ok)


def s_dead_launcher_unsent(rp):
    # the worker dies inside a launch call that PhantomBuster never handles: the
    # job is relaunched once PhantomBuster shows no run of the agent, not dead-lettered
    env = Env(rp, "deadunsent", hang_next=1, hang_seconds=4, hang_action="drop")
    ok = False
    try:
        ids = env.enqueue(2, "u")
        env.worker("w1", PB_HTTP_TIMEOUT=3, SEQUENTIAL_QUEUE_TIMEOUT=5)
        check("dead launcher, unsent: the call is in flight",
              wait_for(lambda: env.job(ids[0]).get("state") == "launching", 10))
        env.procs["w1"].kill()
        env.procs["w1"].wait()
        env.worker("w1", PB_HTTP_TIMEOUT=3, SEQUENTIAL_QUEUE_TIMEOUT=5)
        check("dead launcher, unsent: all jobs finish", env.all_terminal(ids, 40))
        common_checks(env, ids, "dead launcher, unsent")
        j = env.job(ids[0])
        check("dead launcher, unsent: relaunched with one attempt",
              j.get("attempts") == "1", j)
        ok = True
    finally:
        env.close(ok)


def s_configure_agent(rp):
    # no default webhook URL: only an agent configured by pbctl sends webhooks
    env = Env(rp, "configure", webhook_url="")
    ok = False
    agent, other = "4717388215573025", "555"
    secret = "cfg-s3cr3t-4b9e"
    url = "http://127.0.0.1:%d/hook?secret=%s" % (env.sink_port, secret)
    try:
        env.sim("config", {"webhook_url": ""})
        st = sim_api(env, "POST", "/agents/save", {"id": agent, "notifications": {
            "mailManualExitError": True, "slackWebHook": "https://hooks.slack.example/T0/B0"}})
        check("configure: agent with other notifications saved", st[0] == 200, st)

        r = env.pbctl("configure-agent", "--agent", agent, "--webhook-url", url, "--dry-run")
        check("configure: --dry-run reports and saves nothing",
              r.returncode == 0 and "would change (dry run" in r.stdout
              and sim_api(env, "GET", "/agents/fetch?id=" + agent)[1]["maxParallelism"] is None
              and env.sim()["calls"].get("POST /agents/save") == 1, (r.stdout, r.stderr))

        r = env.pbctl("--verbose", "configure-agent", "--agent", agent, "--webhook-url", url)
        lines = r.stdout.splitlines()
        check("configure: one line per changed field, before -> after", r.returncode == 0
              and lines[1:] == ["  maxParallelism: null -> 1",
                                "  notifications.webhook: (none) -> "
                                "http://127.0.0.1:%d/hook?secret=***" % env.sink_port],
              (r.stdout, r.stderr))
        check("configure: the secret shows nowhere (output, logs)",
              secret not in r.stdout + r.stderr and '"msg":"agent configured"' in r.stderr,
              r.stderr)
        a = sim_api(env, "GET", "/agents/fetch?id=" + agent)[1]
        check("configure: saved as asked, other notifications kept",
              a["maxParallelism"] == 1 and a["notifications"] == {
                  "mailManualExitError": True, "webhook": url,
                  "slackWebHook": "https://hooks.slack.example/T0/B0"}, a)

        saves = env.sim()["calls"].get("POST /agents/save")
        r = env.pbctl("configure-agent", "--agent", agent, "--webhook-url", "-", stdin=url + "\n")
        check("configure: again (URL on stdin): nothing to change, nothing saved",
              r.returncode == 0 and "already configured" in r.stdout
              and env.sim()["calls"].get("POST /agents/save") == saves, (r.stdout, r.stderr))

        r = env.pbctl("--json", "configure-agent", "--agent", other, "--webhook-url", url,
                      "--max-parallelism", "3")
        res = json.loads(r.stdout or "{}")
        check("configure: --json, --max-parallelism",
              r.returncode == 0 and res.get("saved") is True
              and {c["field"]: c.get("after") for c in res["changes"]}.get("maxParallelism") == 3
              and secret not in r.stdout, r.stdout)

        # its webhooks now go to the configured URL: the job completes by webhook
        ids = env.enqueue(2, "c", agent=agent)
        env.worker("w1")
        check("configure: jobs of the configured agent finish", env.all_terminal(ids, 30))
        stats = env.sim()
        check("configure: their webhooks went to the configured URL",
              all(c["webhook"] == "sent" for c in stats["containers"])
              and stats["webhooks_no_url"] == 0
              and all(env.job(j).get("found_by") == "webhook" for j in ids), stats["containers"])

        # PhantomBuster says no
        r = env.pbctl("configure-agent", "--agent", agent, "--webhook-url", url,
                      PHANTOMBUSTER_API_KEY="wrong-key")
        check("configure: a wrong API key: exit 1, one line",
              r.returncode == 1 and "HTTP 401 from agents/fetch" in r.stderr
              and len(r.stderr.splitlines()) == 1, r.stderr)
        env.sim("config", {"fail_next": 1, "fail_status": 503})
        r = env.pbctl("configure-agent", "--agent", agent, "--webhook-url", url)
        check("configure: a 503: exit 1", r.returncode == 1 and "HTTP 503" in r.stderr, r.stderr)
        env.sim("config", {"strict_agents": True})
        r = env.pbctl("configure-agent", "--agent", "999", "--webhook-url", url)
        check("configure: an unknown agent: exit 1, not found",
              r.returncode == 1 and "agent 999 not found" in r.stderr, r.stderr)
        ok = True
    finally:
        env.close(ok)


def with_stub(name):
    """A scenario body(env, api) run against StubAPI, both closed at the end."""
    def wrap(body):
        @functools.wraps(body)
        def scenario(rp):
            api = StubAPI()
            env = Env(rp, name)
            ok = False
            try:
                body(env, api)
                ok = True
            finally:
                api.close()
                env.close(ok)
        return scenario
    return wrap


@with_stub("configurestub")
def s_configure_stub(env, api):
    """configure-agent against a PhantomBuster whose save fails or does not stick."""
    url = "https://hooks.example/hook?secret=stub-s3cr3t"
    agent = {"id": "77", "maxParallelism": 1, "notifications": {"webhook": "https://old/?secret=old-s3cr3t"}}
    api.answer("GET /agents/fetch", (200, agent))
    api.answer("POST /agents/save", (402, {"status": "error", "message": "Maximum amount of "
                                            "agents reached (%s)" % url}))
    r = env.pbctl("configure-agent", "--agent", "77", "--webhook-url", url, PHANTOMBUSTER_API_URL=api.url)
    check("configure stub: a save refused (402): exit 1, the echoed secret masked",
          r.returncode == 1 and "agents/save failed: HTTP 402" in r.stderr
          and "stub-s3cr3t" not in r.stderr and "old-s3cr3t" not in r.stderr, r.stderr)
    check("configure stub: the existing notifications were sent back merged",
          api.calls[-1][3] == {"id": "77", "maxParallelism": 1,
                               "notifications": {"webhook": url}}, api.calls[-1])

    api.answer("POST /agents/save", (200, {"id": "77"}))
    r = env.pbctl("configure-agent", "--agent", "77", "--webhook-url", url, PHANTOMBUSTER_API_URL=api.url)
    check("configure stub: a save that does not stick: exit 1, says which field",
          r.returncode == 1 and "read-back does not match: notifications.webhook is "
          "https://old/?secret=***, not https://hooks.example/hook?secret=***" in r.stderr
          and api.called("GET /agents/fetch") == 3, r.stderr)

    api.answer("GET /agents/fetch", (200, ["not", "an", "agent"]))
    r = env.pbctl("configure-agent", "--agent", "77", "--webhook-url", url, PHANTOMBUSTER_API_URL=api.url)
    check("configure stub: an answer that is no agent: exit 1",
          r.returncode == 1 and "not a JSON object" in r.stderr, r.stderr)


@with_stub("stublaunch")
def s_stub_launch(env, api):
    """Launch answers the simulator never gives: 403, 200 without a containerId, 404."""
    api.answer("POST /agents/launch", (403, {"status": "error", "error": "forbidden"}),
               (200, {}), (404, {"status": "error", "message": "Agent not found"}))
    api.answer("GET /agents/fetch-output", (200, {"containerId": "4242", "status": "finished"}))
    api.answer("GET /containers/fetch", (200, {
        "id": "4242", "status": "finished", "endType": "finished", "exitCode": 0,
        "createdAt": redis_now(env) + 60000}))
    ids = env.enqueue(1, "a")
    env.worker("w1", PHANTOMBUSTER_API_URL=api.url, PB_HTTP_TIMEOUT=1)
    check("stub launch: the job finishes", env.all_terminal(ids, 30))
    j, m = env.job(ids[0]), env.metrics()
    check("stub launch: 403 closed the lane, cost no attempt",
          m.get("launch_auth_errors") == 1 and j.get("attempts") == "0", (m, j))
    check("stub launch: 200 without containerId: in doubt, then bound to the "
          "agent's run and completed from its fetch",
          m.get("launches_in_doubt") == 1 and j.get("status") == "success"
          and j.get("container") == "4242" and j.get("found_by") == "polling", (m, j))
    check("stub launch: once launched, no error left on the job",
          "last_error" not in j and "error" not in j, j)
    more = env.enqueue(1, "b")
    check("stub launch: a 404 settles at once", env.all_terminal(more, 20))
    j = env.job(more[0])
    check("stub launch: 404 dead-letters with the reason",
          j.get("status") == "dead_lettered"
          and "HTTP 404 from agents/launch: Agent not found" in j.get("error", ""), j)


def redis_now(env):
    sec, usec = env.redis("TIME").split("\n")
    return int(sec) * 1000 + int(usec) // 1000


def put_run(env, jid, state, deadline_in_ms, **fields):
    """A job holding a slot, as a worker would have left it."""
    now = redis_now(env)
    f = {"id": jid, "agent": "9", "state": state, "status": "pending", "token": "t-" + jid,
         "worker": "nobody", "claimed_at": now - 60000, "attempts": 0, "priority": 0,
         "score": 1}
    f.update(fields)
    args = []
    for k, v in f.items():
        args += [k, v]
    env.redis("HSET", "phantombuster:job:" + jid, *args)
    env.redis("ZADD", "phantombuster:jobs:running", now + deadline_in_ms, jid)
    return now


@with_stub("restartcases")
def s_restart_cases(env, api):
    """pbctl restart (one monitor pass) on each kind of stuck slot."""
    def restart(*flags):
        r = env.pbctl("--json", *flags, "restart", PHANTOMBUSTER_API_URL=api.url)
        return r, json.loads(r.stdout or "{}")

    def fresh():
        env.redis("FLUSHDB")
        api.calls.clear()

    fresh()
    put_run(env, "t1", "running", -1000, container="555", status="phantom_launched")
    api.answer("GET /containers/fetch", (200, {"id": "555", "status": "running"}))
    api.answer("POST /agents/stop", (500, {"status": "error", "error": "internalServerError"}))
    r, res = restart()
    j = env.job("t1")
    check("restart: past its deadline and still going: timed out, even when the stop fails",
          r.returncode == 0 and res.get("freed") == 1 and j.get("status") == "timed_out"
          and "stop failed: HTTP 500" in j.get("error", ""), (r.stderr, j))

    fresh()
    put_run(env, "t2", "running", 60000, container="556", status="phantom_launched")
    api.answer("GET /containers/fetch", (503, {"status": "error", "error": "internalServerError"}))
    r, res = restart("--verbose")
    check("restart: a check that fails leaves the run alone",
          r.returncode == 0 and res.get("freed") == 0 and env.job("t2").get("state") == "running"
          and '"msg":"cannot check run"' in r.stderr, (r.stderr, env.job("t2")))

    fresh()
    put_run(env, "t3", "running", -1000, container="557")
    env.redis("SET", "phantombuster:lane:closed_until", redis_now(env) + 60000, "PX", 60000)
    r, res = restart()
    check("restart: while the lane is closed nothing is asked, nothing freed",
          r.returncode == 0 and res.get("freed") == 0 and not api.calls, api.calls)

    fresh()
    env.redis("ZADD", "phantombuster:jobs:running", redis_now(env) + 60000, "ghost")
    r, res = restart()
    check("restart: a slot whose job was deleted by hand is freed",
          r.returncode == 0 and res.get("freed") == 1, (r.stdout, r.stderr))

    fresh()
    put_run(env, "t5", "claimed", 60000)
    put_run(env, "t6", "claimed", 60000, worker="alive")
    env.redis("SET", "phantombuster:worker:alive", "{}", "PX", 60000)
    r, res = restart()
    check("restart: a dead worker's claim goes back in line, a live one's stays",
          r.returncode == 0 and env.job("t5").get("state") == "pending"
          and env.redis("ZSCORE", "phantombuster:jobs:pending", "t5") != ""
          and env.job("t6").get("state") == "claimed"
          and env.metrics().get("recovered_claims") == 1, (env.job("t5"), env.job("t6")))

    fresh()
    now = put_run(env, "t7", "launching", 60000)
    env.redis("HSET", "phantombuster:job:t7", "launching_at", now - 60000)
    env.redis("HSET", "phantombuster:launching", "9", "t7")
    api.answer("GET /agents/fetch-output", (200, {"containerId": None, "status": "never launched"}))
    r, _ = restart()
    j = env.job("t7")
    check("restart: a dead launcher's launch is put in doubt, not relaunched in the same pass",
          r.returncode == 0 and j.get("state") == "launching" and j.get("in_doubt") == "1", j)
    r, _ = restart()
    j = env.job("t7")
    check("restart: no run of the agent since, grace over: back for a retry, one attempt",
          r.returncode == 0 and j.get("state") == "retry" and j.get("attempts") == "1"
          and "no run of the agent" in j.get("last_error", ""), j)

    fresh()
    put_run(env, "t8", "launching", 60000, in_doubt=1, launching_at=redis_now(env))
    api.answer("GET /agents/fetch-output", (200, {"containerId": 3.5}))
    r, _ = restart("--verbose")
    check("restart: an agent output without a usable containerId: still in doubt",
          r.returncode == 0 and env.job("t8").get("in_doubt") == "1"
          and "no containerId in the agent's output" in r.stderr, r.stderr)

    fresh()
    put_run(env, "t9", "launching", 60000, in_doubt=1, launching_at=redis_now(env))
    api.answer("GET /agents/fetch-output", (200, {"containerId": "777"}))
    api.answer("GET /containers/fetch", (503, {"status": "error"}))
    r, _ = restart("--verbose")
    check("restart: the agent's last run cannot be fetched: still in doubt",
          r.returncode == 0 and env.job("t9").get("in_doubt") == "1"
          and "cannot fetch the agent's last run" in r.stderr, r.stderr)

    fresh()
    put_run(env, "t10", "launching", 60000, in_doubt=1, launching_at=redis_now(env),
            early_container="888", early_status="success", early_exit_code="0",
            early_exit_message="finished", early_payload='{"containerId":888}',
            early_received_at="2026-01-01T00:00:00.000Z")
    r, _ = restart()
    j = env.job("t10")
    check("restart: a launch in doubt whose webhook is held completes from it, no call",
          r.returncode == 0 and j.get("status") == "success" and j.get("container") == "888"
          and not api.calls, (j, api.calls))

    fresh()
    put_run(env, "t11", "launching", 60000, in_doubt=1, launching_at=redis_now(env))
    api.answer("GET /agents/fetch-output", (200, {"containerId": "999"}))
    api.answer("GET /containers/fetch", (200, {"id": "999", "status": "running",
                                               "createdAt": redis_now(env)}))
    r, _ = restart()
    j = env.job("t11")
    check("restart: the agent's run since the attempt is ours, still going: bound",
          r.returncode == 0 and j.get("state") == "running" and j.get("container") == "999"
          and "in_doubt" not in j, j)


def s_redis_outage(rp):
    """Redis of its own stopped for 2 s mid-run: the worker waits, reconnects, loses nothing."""
    port = free_port()
    redis_sh = os.path.join(ROOT, "scripts", "redis.sh")
    subprocess.run([redis_sh, "start", str(port)], check=True, capture_output=True)
    env = Env(port, "redisoutage", run_seconds=0.3)
    ok = False
    try:
        ids = env.enqueue(6, "r")
        env.worker("w1", SEQUENTIAL_QUEUE_TIMEOUT=3)
        wait_for(lambda: env.job(ids[1]).get("state") == "done", 20)
        subprocess.run([redis_sh, "stop", str(port)], capture_output=True)
        time.sleep(2)
        check("redis outage: the worker waits it out", env.procs["w1"].poll() is None)
        subprocess.run([redis_sh, "start", str(port)], check=True, capture_output=True)
        check("redis outage: all jobs finish", env.all_terminal(ids, 40))
        common_checks(env, ids, "redis outage")
        log = open(os.path.join(env.dir, "w1.log")).read()
        check("redis outage: logged once, then the reconnection",
              log.count('"msg":"redis connection lost"') + log.count('"msg":"redis connect failed"')
              == 1 and '"msg":"redis connected"' in log, log[-800:])
        ok = True
    finally:
        env.close(ok)
        subprocess.run([redis_sh, "stop", str(port)], capture_output=True)
        if ok:
            shutil.rmtree("/tmp/pb/redis-%d" % port, ignore_errors=True)


def sim_api(env, method, path, body=None):
    url = "http://127.0.0.1:%d/api/v2%s" % (env.sim_port, path)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", "X-Phantombuster-Key": API_KEY})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


SUPERVISORD_MAIN = """[supervisord]
nodaemon=true
logfile=%(dir)s/supervisord.log
pidfile=%(dir)s/supervisord.pid
[unix_http_server]
file=%(dir)s/supervisor.sock
[supervisorctl]
serverurl=unix://%(dir)s/supervisor.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[include]
files = %(dir)s/pb-worker.conf
"""


def s_supervisord(rp):
    import re
    if not shutil.which("supervisord"):
        print("# supervisord not installed: skipped")
        return
    env = Env(rp, "supervisord")
    ok = False
    try:
        # the shipped program file, pointed at this test's paths, two workers
        conf = open(os.path.join(ROOT, "scripts", "deploy", "supervisor", "pb-worker.conf")).read()
        key = os.path.join(env.dir, "api-key")
        with open(key, "w") as f:
            f.write(API_KEY + "\n")
        subst = {"REDIS_URL": "redis://127.0.0.1:%d/%d" % (rp, DB),
                 "AUDIT_DATABASE_URL": env.audit_url,
                 "PHANTOMBUSTER_API_KEY_FILE": key}
        for k, v in subst.items():
            conf, n = re.subn(r'\b%s="[^"]*"' % k, '%s="%s"' % (k, v), conf)
            assert n == 1, k
        conf = re.sub(r"(?m)^environment=", 'environment=PHANTOMBUSTER_API_URL='
                      '"http://127.0.0.1:%d",' % env.sim_port, conf)
        conf = re.sub(r"(?m)^numprocs=.*$", "numprocs=2", conf)
        conf = re.sub(r"(?m)^command=.*$", "command=" + WORKER, conf)
        conf = re.sub(r"(?m)^directory=.*$", "directory=" + env.dir, conf)
        conf = re.sub(r"(?m)^user=.*\n", "", conf)
        conf = re.sub(r"(?m)^stdout_logfile=/var/log/pb-worker/", "stdout_logfile=%s/" % env.dir, conf)
        with open(os.path.join(env.dir, "pb-worker.conf"), "w") as f:
            f.write(conf)
        main = os.path.join(env.dir, "supervisord.conf")
        with open(main, "w") as f:
            f.write(SUPERVISORD_MAIN % {"dir": env.dir})
        env.spawn("supervisord", ["supervisord", "-c", main])
        ctl = ["supervisorctl", "-c", main]
        running = lambda: subprocess.run(ctl + ["status"], capture_output=True,
                                         text=True).stdout.count("RUNNING") == 2
        check("supervisord: two workers RUNNING", wait_for(running, 15))
        ids = env.enqueue(4, "s")
        check("supervisord: jobs run", env.all_terminal(ids, 30))
        workers = json.loads(env.pbctl("--json", "status").stdout)["workers"]
        check("supervisord: stable worker ids host:N",
              sorted(w["id"].rsplit(":", 1)[1] for w in workers) == ["0", "1"], workers)
        t0 = time.time()
        r = subprocess.run(ctl + ["stop", "all"], capture_output=True, text=True, timeout=40)
        log = open(os.path.join(env.dir, "supervisord.log")).read()
        check("supervisord: stop is clean (exit 0, no SIGKILL, < 10 s)",
              len(set(re.findall(r"stopped: (pb-worker-\d+) \(exit status 0\)", log))) == 2
              and "SIGKILL" not in log
              and time.time() - t0 < 10, (r.stdout, log[-500:]))
        lines = open(os.path.join(env.dir, "pb-worker-0.log")).read().splitlines()
        check("supervisord: the log is JSON lines",
              lines and all(json.loads(l).get("msg") for l in lines), lines[:2])
        ok = True
    finally:
        env.close(ok)


SCENARIOS = [s_basic, s_three_workers, s_rate_limited, s_refusals, s_failures,
             s_dropped_webhook, s_timeout_stop, s_poll_mode, s_instant_runs, s_kill9,
             s_crash_mid_launch, s_lost_answer, s_check_fails, s_dead_launcher_unsent,
             s_admin, s_configure_agent, s_configure_stub, s_stub_launch, s_restart_cases,
             s_redis_outage, s_supervisord, s_db_outage]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--redis-port", type=int, default=6394)
    p.add_argument("--only", default=os.environ.get("PB_WORKER_TEST_ONLY"))
    a = p.parse_args()
    for s in SCENARIOS:
        if a.only and s.__name__ != "s_" + a.only:
            continue
        print("# %s" % s.__name__[2:])
        try:
            s(a.redis_port)
        except Exception:
            check("%s ran" % s.__name__[2:], False, traceback.format_exc())
    print("test_integration: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
