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
import urllib.request

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

    def pbctl(self, *args):
        r = subprocess.run([PBCTL] + [str(a) for a in args], capture_output=True,
                           text=True, env=self.env(), timeout=60)
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
            return None

    def close(self, ok):
        for name in list(self.procs):
            self.stop(name, signal.SIGKILL if name.startswith("w") else signal.SIGTERM, 5)
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
        env.procs["w1"].kill()
        env.procs["w1"].wait()
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
        # the shipped program file, pointed at this test's paths
        conf = open(os.path.join(ROOT, "scripts", "supervisord", "pb-worker.conf")).read()
        key = os.path.join(env.dir, "api-key")
        with open(key, "w") as f:
            f.write(API_KEY + "\n")
        subst = {"REDIS_URL": "redis://127.0.0.1:%d/%d" % (rp, DB),
                 "AUDIT_DATABASE_URL": env.audit_url,
                 "PHANTOMBUSTER_API_KEY_FILE": key,
                 "PHANTOMBUSTER_API_URL": "http://127.0.0.1:%d" % env.sim_port}
        for k, v in subst.items():
            conf = re.sub(r'\b%s="[^"]*"' % k, '%s="%s"' % (k, v), conf)
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
        check("supervisord: stable worker ids host-NN",
              sorted(w["id"].rsplit("-", 1)[1] for w in workers) == ["00", "01"], workers)
        t0 = time.time()
        r = subprocess.run(ctl + ["stop", "all"], capture_output=True, text=True, timeout=40)
        log = open(os.path.join(env.dir, "supervisord.log")).read()
        check("supervisord: stop is clean (exit 0, no SIGKILL, < 10 s)",
              len(set(re.findall(r"stopped: (pb-worker-\d+) \(exit status 0\)", log))) == 2
              and "SIGKILL" not in log
              and time.time() - t0 < 10, (r.stdout, log[-500:]))
        lines = open(os.path.join(env.dir, "pb-worker-00.log")).read().splitlines()
        check("supervisord: the log is JSON lines",
              lines and all(json.loads(l).get("msg") for l in lines), lines[:2])
        ok = True
    finally:
        env.close(ok)


SCENARIOS = [s_basic, s_three_workers, s_rate_limited, s_refusals, s_failures,
             s_dropped_webhook, s_timeout_stop, s_poll_mode, s_instant_runs, s_kill9,
             s_crash_mid_launch, s_lost_answer, s_check_fails, s_dead_launcher_unsent,
             s_admin, s_supervisord, s_db_outage]


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
