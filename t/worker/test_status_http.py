#!/usr/bin/env python3
"""pbctl status --json and the module's phantombuster_status agree.

Both run the one status script of common/pb_status.c; this checks it on the
same Redis: a queue with jobs in every state is seeded (pbctl enqueue, plus
the keys the worker's scripts write, docs/redis-layout.md), nginx with the
module serves the status, pbctl prints it, and the two JSON documents must be
equal but for the values that depend on the instant they were computed.

    test_status_http.py --redis-port PORT

Needs build/worker/pbctl (PBCTL) and the module (built if missing).  The last
line is "N passed, N failed".
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "t", "e2e"))
from harness import NGINX, NGINX_CONF, Checks, port_open, wait_for  # noqa: E402

PBCTL = os.environ.get("PBCTL") or os.path.join(ROOT, "build", "worker", "pbctl")
MODULE = os.environ.get("PB_MODULE_SO") or os.path.join(
    ROOT, "build", "nginx", "ngx_http_phantombuster_module.so")
DB = 13
QUEUE = "pbtest:status-agree"

# fields computed from the instant the script ran: compared by type only
RELATIVE = {"now", "elapsed_ms", "remaining_ms", "overdue_ms", "waiting_ms",
            "starts_in_ms", "done_in_ms", "queue_done_in_ms", "last_age_ms",
            "closed_ms", "message"}

# the status locations, in the e2e harness's nginx.conf
LOCATIONS = """
        location = /status {
            phantombuster_status;
            phantombuster_redis 127.0.0.1:%(redis)d db=%(db)d;
            phantombuster_queue %(queue)s;
        }
        location = /down {
            phantombuster_status;
            phantombuster_redis 127.0.0.1:1;
        }
"""

C = Checks()
check = C.check


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def normalized(v, key=None):
    if isinstance(v, dict):
        return {k: normalized(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [normalized(x) for x in v]
    if key in RELATIVE:
        return type(v).__name__
    return v


def seed(redis):
    now = int(time.time() * 1000)
    J = "phantombuster:job:"
    redis("FLUSHDB")
    for i, agent in enumerate(("A", "A", "B")):
        r = subprocess.run([PBCTL, "enqueue", "--agent", agent, "--job-id", "p%d" % i,
                            "--priority", str(i % 2)], capture_output=True, text=True,
                           env=pbctl_env(redis.port))
        check("pbctl enqueue p%d" % i, r.returncode == 0, r.stderr)
    redis("HSET", "phantombuster:run_stats", "avg_ms:A", 10000, "runs:A", 3,
          "last_ms:A", 9000, "avg_ms:*", 8000, "runs:*", 5, "last_ms:*", 5000)
    redis("HSET", J + "r1", "id", "r1", "agent", "A", "state", "running",
          "container", "c1", "claimed_at", now - 4000, "launched_at", now - 3500,
          "worker", "w1", "attempts", 0)
    redis("ZADD", "phantombuster:jobs:running", now + 1800000, "r1")
    redis("HSET", J + "d1", "id", "d1", "agent", "A", "state", "dead",
          "error", 'HTTP 400: "bad"', "attempts", 1)
    redis("ZADD", "phantombuster:jobs:dead", now - 2000, "d1")
    redis("HSET", J + "f1", "id", "f1", "agent", "A", "state", "done", "status",
          "failed", "exit_code", 1, "exit_message", "agent crashed",
          "claimed_at", now - 20000, "found_by", "webhook", "container", "c0")
    redis("ZADD", "phantombuster:jobs:done", now - 5000, "f1")
    redis("HSET", "phantombuster:metrics", "launches", 5, "exit:agent crashed", 1,
          "last_webhook_at", now - 5000)
    redis("SET", "phantombuster:worker:w1",
          json.dumps({"pid": 1, "at": now, "poll": False, "max_running": 2}))
    redis("SADD", "phantombuster:workers", "w1", "w2")
    redis("SET", "phantombuster:lane:closed_until", now + 60000, "PX", 60000)
    redis("LPUSH", QUEUE, "x", "y")


class Redis:
    def __init__(self, port):
        self.port = port

    def __call__(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), "-n", str(DB)]
                           + [str(a) for a in args], capture_output=True, text=True)
        return r.stdout.strip()


def pbctl_env(port):
    return dict(os.environ, REDIS_URL="redis://127.0.0.1:%d/%d" % (port, DB),
                PB_WEBHOOK_QUEUE=QUEUE)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-port", type=int, required=True)
    args = ap.parse_args()

    if not os.path.exists(MODULE):
        subprocess.run([os.path.join(ROOT, "scripts", "build-module.sh")], check=True,
                       stdout=subprocess.DEVNULL)

    redis = Redis(args.redis_port)
    seed(redis)

    tmp = tempfile.mkdtemp(prefix="pb-status-")
    os.makedirs(os.path.join(tmp, "logs"))
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF % {
            "module": MODULE, "prefix": tmp, "workers": 1, "port": port,
            "redis": args.redis_port, "queue": QUEUE, "secret": "unused",
            "extra": LOCATIONS % {"redis": args.redis_port, "db": DB, "queue": QUEUE}})
    nginx = subprocess.Popen([NGINX, "-p", tmp + "/", "-c", conf, "-e",
                              os.path.join(tmp, "logs", "error.log")])
    try:
        wait_for(lambda: port_open(port), 10)

        status, body = get("http://127.0.0.1:%d/status" % port)
        ctl = subprocess.run([PBCTL, "status", "--json"], capture_output=True, text=True,
                             env=pbctl_env(args.redis_port))
        check("module: 200", status == 200, body[:200])
        check("pbctl: exit 0", ctl.returncode == 0, ctl.stderr)
        try:
            http, cli = json.loads(body), json.loads(ctl.stdout)
        except ValueError as e:
            check("both are JSON", False, e)
            return
        check("the same document, field for field",
              normalized(http) == normalized(cli),
              json.dumps([normalized(http), normalized(cli)])[:2000])
        check("the state is the seeded one",
              (http["lane"]["state"], http["max_running"], http["counts"]["pending"],
               http["counts"]["webhooks_queued"], [p["id"] for p in http["pending"]],
               [w["alive"] for w in http["workers"]])
              == ("closed", 2, 3, 2, ["p1", "p0", "p2"], [True, False]), http)
        check("two slots: the first pending job starts when the lane reopens",
              http["pending"][0]["starts_in_ms"] == http["lane"]["closed_ms"]
              and cli["pending"][0]["starts_in_ms"] == cli["lane"]["closed_ms"])

        table = subprocess.run([PBCTL, "status"], capture_output=True, text=True,
                               env=pbctl_env(args.redis_port))
        check("pbctl status (table) shows the ETA and the tables",
              table.returncode == 0 and "queue done in" in table.stdout
              and "dead letters (latest)" in table.stdout
              and "HTTP 400: \"bad\"" in table.stdout, table.stdout + table.stderr)

        status, body = get("http://127.0.0.1:%d/down" % port)
        ctl = subprocess.run([PBCTL, "status", "--json"], capture_output=True, text=True,
                             env=dict(pbctl_env(1), REDIS_URL="redis://127.0.0.1:1/0"))
        check("Redis down: 503 JSON from the module, exit 1 from pbctl",
              (status, body, ctl.returncode) == (503, '{"error":"queue unavailable"}', 1),
              (status, body, ctl.returncode))
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
        redis("FLUSHDB")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a crash is a failure, not a silent pass
        check("test_status_http ran to the end", False, repr(e))
    print("test_status_http: %d passed, %d failed" % (C.passed, len(C.failed)))
    sys.exit(1 if C.failed else 0)
