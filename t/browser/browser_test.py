#!/usr/bin/env python3
"""The status page in headless Chromium, against nginx during a real run.

Redis, the PhantomBuster simulator, nginx with the module (the page, the status
JSON, the admin location) and pb-worker are started with the end-to-end
harness (t/e2e/harness.py), on free loopback ports.  The first job is refused
by PhantomBuster with a 400 and dead-lettered; the others run one at a time.
The page, loaded once, must show the running job change and the queue shrink
without a reload; a retry without the admin token must be refused; with it,
the dead letter must go back to pending.  Then the page must say when the lane
is closed by a 429 and when Redis is unreachable.  Screenshots:
build/test-logs/status-page.png; PB_UPDATE_README_SHOT=1 also refreshes the
README's copy, docs/status-page.png (a test run leaves tracked files alone).

    t/browser/run.sh            last line: "N passed, N failed"
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import AGENT, Checks, Env, wait_for  # noqa: E402
from cdp import Browser  # noqa: E402

ROOT = harness.ROOT
LOGS = os.path.join(ROOT, "build", "test-logs")
SHOT = os.path.join(LOGS, "status-page.png")
README_SHOT = os.path.join(ROOT, "docs", "status-page.png")
TOKEN = "browser-test-admin-token"
JOBS = ["job-%d" % i for i in range(1, 6)]
RUN_SECONDS = 3.0

LOCATIONS = """
        location /pb/ {
            alias %(html)s/;
            types { text/html html; text/css css; application/javascript js; }
        }
        location = /pb/status.json {
            phantombuster_status;
            phantombuster_redis 127.0.0.1:%(redis)d;
        }
        location = /pb/admin {
            phantombuster_admin;
            phantombuster_admin_token %(token)s;
            phantombuster_redis 127.0.0.1:%(redis)d;
        }
        location = /pb/metrics {
            phantombuster_metrics;
            phantombuster_redis 127.0.0.1:%(redis)d;
        }
"""

C = Checks()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_state(b):
    """What a person sees: the running jobs, the counts, the tables' rows."""
    return b.evaluate("""(function () {
        function ids(t) {
            return Array.prototype.map.call(
                document.querySelectorAll('#' + t + ' tbody tr[data-job-id]'),
                function (tr) { return tr.dataset.jobId; });
        }
        return {running: ids('running-table'), pending: ids('pending-table'),
                dead: ids('dead-table'), recent: ids('recent-table'),
                pendingCount: document.getElementById('pending-count').textContent,
                eta: document.getElementById('eta').textContent,
                lane: document.getElementById('lane').textContent,
                banners: document.getElementById('banners').textContent,
                action: document.getElementById('action-result').textContent,
                marker: window.__pbMarker || null};
    })()""")


def scenario(env, b):
    html = os.path.join(ROOT, "html", "phantombuster")
    port = free_port()

    env.start_redis()
    env.start_sim(run_seconds=RUN_SECONDS, start_seconds=0.1, rate_limit=1200,
                  webhook_url=harness.webhook_url(port))
    env.start_nginx(port=port, workers=2, extra=LOCATIONS % {
        "html": html, "redis": harness.REDIS_PORT, "token": TOKEN})

    # the first launch is refused for good (a 400): dead-lettered at once
    env.sim_config(fail_next=1, fail_status=400)
    env.enqueue("dead-1", "Doomed Inc")
    for i, job in enumerate(JOBS):
        env.enqueue(job, "Company %d" % i)

    url = "http://127.0.0.1:%d/pb/" % port
    b.navigate(url)
    b.evaluate("window.__pbMarker = 'loaded once'")
    C.check("the page loads and renders the queue",
            wait_for(lambda: page_state(b)["pendingCount"] == str(len(JOBS) + 1), 10),
            page_state(b))

    env.start_worker(PB_API_CALLS_PER_MINUTE=1200, PB_MONITOR_INTERVAL=1)

    # ---- live updates, no reload ---------------------------------------------
    seen_running, pending_counts = [], []
    end = time.time() + 4 * RUN_SECONDS + 10
    while time.time() < end:
        s = page_state(b)
        for job in s["running"]:
            if job not in seen_running:
                seen_running.append(job)
        if s["pendingCount"].isdigit():
            pending_counts.append(int(s["pendingCount"]))
        if len(seen_running) >= 3 and "dead-1" in s["dead"]:
            break
        time.sleep(0.3)

    s = page_state(b)
    C.check("the running job changes on the page (%s)" % " -> ".join(seen_running),
            len(seen_running) >= 2 and all(j in JOBS for j in seen_running), seen_running)
    C.check("the pending count shrinks (%s)"
            % " -> ".join(str(n) for n in sorted(set(pending_counts), reverse=True)),
            pending_counts and min(pending_counts) < max(pending_counts), pending_counts)
    C.check("all without a reload", s["marker"] == "loaded once", s)
    C.check("the ETA of the queue is shown", s["eta"] not in ("", "–"), s["eta"])
    C.check("the dead letter is listed with a retry button",
            "dead-1" in s["dead"]
            and b.evaluate("!!document.querySelector('#dead-table button[data-retry=\"dead-1\"]')"),
            s)
    C.check("recent completions are listed", len(s["recent"]) >= 1, s)
    b.screenshot(SHOT)
    C.check("screenshot saved: %s" % os.path.relpath(SHOT, ROOT),
            os.path.getsize(SHOT) > 20000, os.path.getsize(SHOT))
    if os.environ.get("PB_UPDATE_README_SHOT") == "1":
        shutil.copyfile(SHOT, README_SHOT)

    # ---- the admin action ------------------------------------------------------
    b.click('#dead-table button[data-retry="dead-1"]')
    C.check("without the admin token the retry is refused",
            wait_for(lambda: "refused" in page_state(b)["action"], 10), page_state(b))
    C.check("and the job stays dead", "dead-1" in page_state(b)["dead"], page_state(b))

    b.type_into("#token", TOKEN)
    b.click('#dead-table button[data-retry="dead-1"]')
    C.check("with the token: sent, and the worker answers",
            wait_for(lambda: page_state(b)["action"] == "dlq_retry: done", 15),
            page_state(b))
    C.check("the dead letter goes back to pending",
            wait_for(lambda: "dead-1" in page_state(b)["pending"]
                     and "dead-1" not in page_state(b)["dead"], 10), page_state(b))
    b.screenshot(os.path.join(LOGS, "status-page-after-retry.png"))

    # ---- error states ----------------------------------------------------------
    env.redis("SET", "phantombuster:lane:closed_until",
              int(time.time() * 1000) + 90000, "PX", 90000)
    C.check("a lane closed by a 429 is said, with until when",
            wait_for(lambda: "Lane paused by PhantomBuster (429)" in page_state(b)["banners"]
                     and "No launch until" in page_state(b)["banners"], 10),
            page_state(b))

    stop_redis()
    C.check("Redis unreachable is said, and the page keeps the last state",
            wait_for(lambda: "Redis unreachable" in page_state(b)["banners"], 10)
            and page_state(b)["marker"] == "loaded once", page_state(b))
    b.screenshot(os.path.join(LOGS, "status-page-redis-down.png"))


def stop_redis():
    subprocess.run([os.path.join(ROOT, "scripts", "redis.sh"), "stop", str(harness.REDIS_PORT)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    # private ports: an e2e run or a demo may be using the fixed ones
    harness.REDIS_PORT = free_port()
    harness.SIM_PORT = free_port()
    os.makedirs(LOGS, exist_ok=True)

    env = Env("browser")
    b = None
    try:
        b = Browser(os.path.join(env.dir, "chromium.log"))
        scenario(env, b)
    except Exception:
        traceback.print_exc()
        C.check("the scenario ran to the end", False)
        for name in ("nginx-0", "worker-1", "sim"):
            print("--- %s\n%s" % (name, env.tail(name, 15)))
    finally:
        if b:
            b.close()
        env.close()

    print("%d passed, %d failed" % (C.passed, len(C.failed)))
    return 1 if C.failed else 0


if __name__ == "__main__":
    sys.exit(main())
