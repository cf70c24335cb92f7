#!/usr/bin/env python3
"""End-to-end tests: simulator + nginx module + Redis + pb-worker + audit database.

    t/e2e/run.sh [--only 1,3] [--list]

Scenarios (each asserts on the simulator's /_sim/stats and on service_audit_logs):
  1  50 jobs: all succeed, one container at a time, no 429, one launch per job, no polling
  2  the same 50 jobs fired by the naive launcher: 429s and refusals (the contrast)
  3  dropped webhooks recovered by the timeout monitor; duplicated webhooks processed once
  4  kill -9 of pb-worker, restart of Redis and of nginx mid-run: nothing lost, nothing twice
  5  two nginx instances, three workers, PostgreSQL: the invariants still hold
  6  API faults: 429 + Retry-After the worker was not told about, 5xx, hung launch calls
  7  lost launch answers: the worker binds the run it cannot see the answer of, never relaunches
  8  pbctl configure-agent: the agent's webhooks then go to nginx and reach Redis and the worker
The last line is "N passed, N failed"; the exit status is non-zero on any failure.
Logs of every process: build/e2e/<scenario>/.
"""
import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (AGENT, API_KEY, MODULE, NAIVE, NGINX_PORTS, PBCTL, QUEUE, SECRET,  # noqa: E402
                     SIM_PORT, TERMINAL, WORKER, Checks, Env, job_of, wait_for, webhook_url)

# Short runs keep the suite well under its time budget.
RUN = dict(run_seconds=0.15, start_seconds=0.05)
# Scenarios 1 and 2 share one org: plan.parallelism 1 and 40 API calls per minute, fewer than
# the 50 jobs, so the worker must pace itself (PB_API_CALLS_PER_MINUTE=40) to see no 429.
ORG_LIMIT = dict(rate_limit=40, rate_window=60)
# The other scenarios are not about the rate limit: a high limit on both sides.
SIM_LIMIT = dict(rate_limit=1200, rate_window=60)
FAST_WORKER = dict(PB_API_CALLS_PER_MINUTE=1200, PB_MONITOR_INTERVAL=1, PB_POLL_INTERVAL=1,
                   PB_BACKOFF_BASE=0.2, PB_BACKOFF_CAP=2)

C = Checks()
RESULTS = {}


def launches_per_job(stats):
    return collections.Counter(job_of(c) for c in stats["containers"])


def check_common(env, jobs, rows, stats, expect_status="success", label=""):
    """The invariants every scenario shares."""
    p = label and label + ": "
    terminal = [j for j in jobs if j in rows and rows[j]["status"] in TERMINAL]
    C.eq(p + "jobs with a terminal audit row", len(terminal), len(jobs))
    if expect_status:
        bad = {j: rows[j]["status"] for j in jobs if j in rows and rows[j]["status"] != expect_status}
        missing = [j for j in jobs if j not in rows]
        C.check(p + "every job ended %s" % expect_status, not bad and not missing,
                "other: %s missing: %s" % (dict(list(bad.items())[:8]), missing[:8]))
    per_job = launches_per_job(stats)
    twice = {j: n for j, n in per_job.items() if n > 1}
    C.check(p + "no job launched twice", not twice, twice)
    never = [j for j in jobs if per_job.get(j, 0) == 0]
    C.check(p + "every job launched", not never, "never launched: %s" % never[:10])
    C.eq(p + "launches == jobs", stats["launches"], len(jobs))
    C.eq(p + "max_concurrent_observed", stats["max_concurrent_observed"], 1)
    # audit rows point at the container the simulator ran for that job
    by_job = {}
    for c in stats["containers"]:
        by_job.setdefault(job_of(c), []).append(c["id"])
    wrong = {j: (rows[j]["phantom_container_id"], by_job.get(j)) for j in jobs
             if j in rows and str(rows[j]["phantom_container_id"]) not in by_job.get(j, [])}
    C.check(p + "phantom_container_id is the job's container", not wrong, dict(list(wrong.items())[:5]))
    # nothing left behind in Redis
    left = wait_for(lambda: env.redis_int("LLEN", QUEUE) == 0, 5)
    C.check(p + "webhook queue drained", left, "LLEN %s = %s" % (QUEUE, env.redis_int("LLEN", QUEUE)))
    stuck = [k for k in env.redis_keys(QUEUE + ":processing:*") if env.redis_int("LLEN", k)]
    C.check(p + "no envelope left in a processing list", not stuck, stuck)


def enqueue_all(env, jobs, agent_for=lambda i: AGENT):
    for i, j in enumerate(jobs):
        env.enqueue(j, "Company %03d" % (i + 1), agent=agent_for(i))


# ---------------------------------------------------------------------------------------------
def scenario_1():
    """50 jobs, 40 API calls/min allowed: sequential, no 429, one launch each, no polling."""
    with Env("s1-sequential") as env:
        env.start_redis()
        env.start_sim(parallelism=1, **RUN, **ORG_LIMIT)
        env.start_nginx(0)
        env.start_worker("worker-1", **dict(FAST_WORKER, PB_API_CALLS_PER_MINUTE=ORG_LIMIT["rate_limit"]))
        jobs = ["s1-%03d" % i for i in range(1, 51)]
        t0 = time.time()
        enqueue_all(env, jobs)
        rows = env.wait_terminal(jobs, 180)
        elapsed = time.time() - t0
        stats = env.sim_stats()
        check_common(env, jobs, rows, stats)
        C.eq("http_429_sent", stats["http_429_sent"], 0)
        C.eq("launch_refusals", stats["launch_refusals"], 0)
        C.eq("containers/fetch polls while webhooks flow", stats["polls"], 0)
        C.eq("webhooks delivered", stats["webhooks_sent"], len(jobs))
        C.eq("webhooks failed", stats["webhooks_failed"], 0)
        bad_payload = [j for j in jobs if j in rows and not (
            isinstance(rows[j]["webhook_payload"], dict)
            and str(rows[j]["webhook_payload"].get("containerId")) == str(rows[j]["phantom_container_id"])
            and rows[j]["webhook_payload"].get("exitMessage") == "finished")]
        C.check("webhook_payload stored and matches the container", not bad_payload, bad_payload[:5])
        st = env.pbctl("--json", "status", check=False)
        try:
            counts = json.loads(st.stdout)["counts"]
            C.check("pbctl --json status: 50 done, nothing pending or running",
                    (counts["done"], counts["pending"], counts["running"]) == (50, 0, 0), counts)
        except (ValueError, KeyError, TypeError):
            C.check("pbctl --json status parses", False, (st.stdout + st.stderr)[:300])
        RESULTS["worker"] = dict(jobs=len(jobs), launched=stats["launches"], http_429=stats["http_429_sent"],
                                 refusals=stats["launch_refusals"], api_calls=stats["api_calls"],
                                 polls=stats["polls"], max_concurrent=stats["max_concurrent_observed"],
                                 seconds=round(elapsed, 1),
                                 succeeded=sum(1 for r in rows.values() if r["status"] == "success"))
        print("  worker: %(jobs)d jobs in %(seconds)ss, %(api_calls)d API calls, %(polls)d polls" % RESULTS["worker"])


def scenario_2():
    """The same 50 jobs fired at once by the naive launcher, against the same org settings."""
    with Env("s2-naive") as env:
        env.start_sim(parallelism=1, **RUN, **ORG_LIMIT)
        r = subprocess.run([sys.executable, NAIVE, "--api-url", "http://127.0.0.1:%d" % SIM_PORT,
                            "--api-key", API_KEY, "--agent", AGENT, "--jobs", "50", "--json"],
                           capture_output=True, text=True, timeout=60)
        try:
            naive = json.loads(r.stdout)
        except ValueError:
            C.check("naive launcher output", False, r.stdout + r.stderr)
            return
        stats = env.sim_stats()
        lost = naive["jobs"] - naive["launched_200"]
        C.check("naive launcher loses jobs (429 or refusal)", lost > 0, naive)
        C.check("naive launcher gets 429s", naive["rate_limited_429"] > 0, naive)
        C.check("naive launcher gets maxParallelismReached refusals", naive["refused_parallelism"] > 0, naive)
        C.eq("simulator agrees on 429s", stats["http_429_sent"], naive["rate_limited_429"])
        C.eq("simulator agrees on refusals", stats["launch_refusals"], naive["refused_parallelism"])
        w = RESULTS.get("worker")
        print("\n  %-28s %10s %10s" % ("50 jobs, plan.parallelism=1", "pb-worker", "naive"))
        rows = [("launched (HTTP 200)", "launched", "launched_200"),
                ("HTTP 429 tooManyRequests", "http_429", "rate_limited_429"),
                ("maxParallelismReached", "refusals", "refused_parallelism")]
        for label, wk, nk in rows:
            print("  %-28s %10s %10s" % (label, w[wk] if w else "-", naive[nk]))
        print("  %-28s %10s %10s" % ("jobs completed", w["succeeded"] if w else "-", naive["launched_200"]))
        print("  (same org for both: plan.parallelism 1, %d API calls per %d s)\n"
              % (ORG_LIMIT["rate_limit"], ORG_LIMIT["rate_window"]))


def scenario_3():
    """Dropped webhooks are recovered by the timeout monitor; duplicates are processed once."""
    with Env("s3-faults") as env:
        env.start_redis()
        env.start_sim(parallelism=1, **RUN, **SIM_LIMIT, drop_next=2, duplicate_next=3)
        env.start_nginx(0)
        env.start_worker("worker-1", SEQUENTIAL_QUEUE_TIMEOUT=2, **FAST_WORKER)
        jobs = ["s3-%03d" % i for i in range(1, 13)]
        enqueue_all(env, jobs)
        rows = env.wait_terminal(jobs, 90)
        stats = env.sim_stats()
        check_common(env, jobs, rows, stats, expect_status="success")
        C.eq("webhooks dropped by the simulator", stats["webhooks_dropped"], 2)
        C.eq("webhooks duplicated by the simulator", stats["webhooks_duplicated"], 3)
        C.eq("all webhook POSTs accepted (duplicates too)", stats["webhooks_failed"], 0)
        dropped = [c for c in stats["containers"] if c["webhook"] == "dropped"]
        polled = [c["id"] for c in dropped if c["polls"] > 0]
        C.eq("dropped runs looked up by the monitor (containers/fetch)", len(polled), len(dropped))
        rows_all = env.audit_rows()
        per_job_rows = collections.Counter(r["job_id"] for r in rows_all)
        C.check("one audit row per job", all(per_job_rows[j] == 1 for j in jobs), per_job_rows)
        results = env.nginx_results(0)
        C.eq("nginx: 10 webhooks queued, 3 answered as duplicates",
             (results["queued"], results["duplicate"]), (10, 3))
        C.check("no secret in the access log", SECRET not in open(os.path.join(
            env.dir, "nginx-0", "logs", "access.log")).read(), "")
        seen = env.redis_keys(QUEUE + ":seen:*")
        C.check("dedupe markers written for delivered webhooks", len(seen) >= 10, len(seen))


def scenario_4():
    """kill -9 the worker, restart Redis and nginx mid-run: nothing lost, nothing launched twice."""
    with Env("s4-crash") as env:
        env.start_redis()
        env.start_sim(parallelism=1, run_seconds=0.5, start_seconds=0.05, **SIM_LIMIT)
        env.start_nginx(0)
        wenv = dict(FAST_WORKER, SEQUENTIAL_QUEUE_TIMEOUT=3, PB_HEARTBEAT_TTL=3)
        env.start_worker("worker-1", **wenv)
        jobs = ["s4-%03d" % i for i in range(1, 25)]
        enqueue_all(env, jobs)

        def terminal_count():
            return sum(1 for r in env.audit_rows() if r["job_id"] in jobs and r["status"] in TERMINAL)

        events = []
        if wait_for(lambda: terminal_count() >= 4, 60, 0.2):
            time.sleep(0.3)  # land somewhere inside a run
            env.stop("worker-1", signal.SIGKILL)
            events.append("kill -9 worker at %d done" % terminal_count())
            time.sleep(0.5)
            env.start_worker("worker-1b", **wenv)
        if wait_for(lambda: terminal_count() >= 10, 60, 0.2):
            env.restart_redis()
            events.append("redis restarted at %d done" % terminal_count())
        if wait_for(lambda: terminal_count() >= 15, 60, 0.2):
            wait_for(lambda: env.sim_stats()["running"] == 1, 5, 0.05)  # a run is under way:
            env.stop_nginx(0)                                             # its webhook will fail
            events.append("nginx stopped at %d done" % terminal_count())
            time.sleep(1.0)
            env.start_nginx(0)
        if wait_for(lambda: terminal_count() >= 18, 60, 0.2):
            time.sleep(0.2)
            env.stop("worker-1b", signal.SIGKILL)
            env.start_worker("worker-1c", **wenv)
            events.append("kill -9 worker again at %d done" % terminal_count())
        if wait_for(lambda: terminal_count() >= 21, 60, 0.2):
            # die inside the launch call: the launch is handled 1 s later, after the crash
            env.sim_config(hang_next=1, hang_seconds=1, hang_action="process")
            wait_for(lambda: env.sim_stats()["hangs"] >= 1, 30, 0.05)
            env.stop("worker-1c", signal.SIGKILL)
            time.sleep(0.3)
            env.start_worker("worker-1d", **wenv)
            events.append("kill -9 worker inside a launch call at %d done" % terminal_count())
        print("  events: " + "; ".join(events))
        C.eq("disruptions applied", len(events), 5)
        rows = env.wait_terminal(jobs, 120)
        stats = env.sim_stats()
        check_common(env, jobs, rows, stats, expect_status="success")
        C.eq("http_429_sent", stats["http_429_sent"], 0)
        failed = [c for c in stats["containers"] if c["webhook"] == "failed"]
        C.check("a webhook failed while nginx was down", len(failed) >= 1, stats["webhooks_failed"])
        C.check("the runs whose webhook failed were looked up", all(c["polls"] > 0 for c in failed),
                [(c["id"], c["polls"]) for c in failed])


def scenario_5():
    """Two nginx instances, three workers, PostgreSQL audit: the invariants hold."""
    with Env("s5-multi", db="postgresql") as env:
        env.prepare_db()
        env.start_redis()
        env.start_sim(parallelism=1, **RUN, **SIM_LIMIT)
        agents = [AGENT, "4717388215573026"]
        for agent, port in zip(agents, NGINX_PORTS):  # each agent reports to its own nginx
            st, _ = env.sim_api("POST", "/agents/save", {"id": agent, "notifications": {"webhook": webhook_url(port)}})
            C.eq("agent %s webhook saved" % agent, st, 200)
        env.start_nginx(0)
        env.start_nginx(1)
        for n in (1, 2, 3):
            env.start_worker("worker-%d" % n, **FAST_WORKER)
        jobs = ["s5-%03d" % i for i in range(1, 31)]
        enqueue_all(env, jobs, agent_for=lambda i: agents[i % 2])
        rows = env.wait_terminal(jobs, 120)
        stats = env.sim_stats()
        check_common(env, jobs, rows, stats, expect_status="success")
        C.eq("http_429_sent", stats["http_429_sent"], 0)
        C.eq("launch_refusals", stats["launch_refusals"], 0)
        C.eq("containers/fetch polls", stats["polls"], 0)
        hits = [sum(env.nginx_results(idx).values()) for idx in (0, 1)]
        C.check("both nginx instances received webhooks", all(h > 0 for h in hits), hits)
        print("  webhooks per nginx: %s" % hits)


def scenario_6():
    """API faults (429 + Retry-After, 5xx, hung calls) are retried: nothing lost, nothing twice."""
    with Env("s6-api-faults") as env:
        env.start_redis()
        # phase 1: a limit the worker is not told about: it must honour the 429s' Retry-After
        env.start_sim(parallelism=1, **RUN, rate_limit=3, rate_window=2)
        env.start_nginx(0)
        env.start_worker("worker-1", **dict(FAST_WORKER, PB_HTTP_TIMEOUT=1, SEQUENTIAL_QUEUE_TIMEOUT=5))
        jobs = ["s6-%03d" % i for i in range(1, 13)]
        enqueue_all(env, jobs)

        def terminal_count():
            return sum(1 for r in env.audit_rows() if r["job_id"] in jobs and r["status"] in TERMINAL)

        events = []

        def arm(label, after, hangs=None, **cfg):
            """Once `after` jobs are done, sets one fault; waits until it fired and the
            job it hit is settled, so that faults never pile up on one job."""
            if not wait_for(lambda: terminal_count() >= after, 60, 0.2):
                return
            env.sim_config(**cfg)
            events.append(label)
            if hangs is not None:
                wait_for(lambda: env.sim_stats()["hangs"] >= hangs, 30, 0.1)
            n = terminal_count()
            wait_for(lambda: terminal_count() >= n + 1, 60, 0.2)

        arm("429s until job 4", 4, **SIM_LIMIT)  # phase 2: no more 429s, one fault at a time
        arm("2 x 503", 4, fail_next=2)
        arm("launch hangs 2 s, never handled", 6, hangs=1, hang_next=1, hang_seconds=2, hang_action="drop")
        # a slow server: handled 2 s late, after the worker gave up. Real runs last minutes;
        # 3 s here, so that the worker's maxInstanceCount can refuse the late launch.
        arm("launch handled 2 s late (3 s runs)", 8, hangs=2, hang_next=1, hang_seconds=2,
            hang_action="process", run_seconds=3)
        print("  faults: " + "; ".join(events))
        rows = env.wait_terminal(jobs, 90)
        time.sleep(2.5)  # let a late-handled launch land before counting
        wait_for(lambda: env.sim_stats()["running"] == 0, 10)
        stats = env.sim_stats()
        check_common(env, jobs, rows, stats, expect_status="success")
        C.check("429s were sent (and survived)", stats["http_429_sent"] > 0, stats["http_429_sent"])
        C.eq("5xx sent", stats["http_5xx_sent"], 2)
        C.eq("hung calls", stats["hangs"], 2)
        print("  api calls %d, 429s %d, refusals %d" % (stats["api_calls"], stats["http_429_sent"],
                                                      stats["launch_refusals"]))


def scenario_7():
    """Lost launch answers (launched, answer never came): bound to the run, never relaunched."""
    with Env("s7-lost-answers") as env:
        env.start_redis()
        env.start_sim(parallelism=1, **RUN, **SIM_LIMIT)
        env.start_nginx(0)
        env.start_worker("worker-1", **dict(FAST_WORKER, PB_HTTP_TIMEOUT=1, SEQUENTIAL_QUEUE_TIMEOUT=5))
        jobs = ["s7-%03d" % i for i in range(1, 7)]
        hit = {}
        enqueue_all(env, jobs[:2])
        env.wait_terminal(jobs[:2], 30)
        # (a) the run outlasts the client's timeout: the reconciliation finds it running
        env.sim_config(hang_next=1, hang_seconds=2, hang_action="lose", run_seconds=3)
        enqueue_all(env, [jobs[2]])
        hit["answer lost, run still going"] = jobs[2]
        env.wait_terminal(jobs[:3], 30)
        env.sim_config(run_seconds=RUN["run_seconds"])
        enqueue_all(env, [jobs[3]])
        env.wait_terminal(jobs[:4], 30)
        # (b) the run ends (its webhook queued) before the client's 1 s timeout: e.g. an agent
        # that fails at once. Nothing runs any more when the worker looks.
        env.sim_config(hang_next=1, hang_seconds=2, hang_action="lose")
        enqueue_all(env, [jobs[4]])
        hit["answer lost, run already over"] = jobs[4]
        env.wait_terminal(jobs[:5], 30)
        enqueue_all(env, [jobs[5]])
        rows = env.wait_terminal(jobs, 30)
        time.sleep(2.5)
        wait_for(lambda: env.sim_stats()["running"] == 0, 10)
        stats = env.sim_stats()
        per_job = launches_per_job(stats)
        for label, job in hit.items():
            C.eq("%s: %s launched once" % (label, job), per_job.get(job, 0), 1)
            C.eq("%s: %s status" % (label, job), rows.get(job, {}).get("status"), "success")
        check_common(env, jobs, rows, stats, expect_status="success")
        C.eq("lost answers", stats["hangs"], 2)


def scenario_8():
    """pbctl configure-agent points an agent at nginx: its webhooks then arrive and drive the worker."""
    with Env("s8-configure-agent") as env:
        env.start_redis()
        env.start_sim(parallelism=1, **RUN, **SIM_LIMIT)
        env.sim_config(webhook_url="")  # no default: only a configured agent sends webhooks
        env.start_nginx(0)
        url = webhook_url()
        r = env.pbctl("configure-agent", "--agent", AGENT, "--webhook-url", url, check=False)
        C.eq("configure-agent exit status", r.returncode, 0)
        C.check("configure-agent reports webhook and maxParallelism, secret masked",
                "  maxParallelism: null -> 1" in r.stdout
                and "  notifications.webhook: (none) -> " + url.replace(SECRET, "***") in r.stdout
                and SECRET not in r.stdout + r.stderr, r.stdout + r.stderr)
        st, agent = env.sim_api("GET", "/agents/fetch?id=" + AGENT)
        C.check("the simulator's agent has the URL and maxParallelism 1",
                st == 200 and agent["notifications"].get("webhook") == url
                and agent["maxParallelism"] == 1, agent)
        r = env.pbctl("configure-agent", "--agent", AGENT, "--webhook-url", url, check=False)
        C.check("configure-agent again: nothing to change",
                r.returncode == 0 and "already configured" in r.stdout, r.stdout + r.stderr)

        env.start_worker("worker-1", **FAST_WORKER)
        jobs = ["s8-%03d" % i for i in range(1, 4)]
        enqueue_all(env, jobs)
        rows = env.wait_terminal(jobs, 60)
        stats = env.sim_stats()
        check_common(env, jobs, rows, stats, expect_status="success")
        C.eq("webhooks sent to the configured URL", stats["webhooks_sent"], len(jobs))
        C.eq("webhooks without a URL", stats["webhooks_no_url"], 0)
        C.eq("nginx: webhooks queued", env.nginx_results(0)["queued"], len(jobs))
        C.check("completed by their webhooks (no polling)",
                stats["polls"] == 0 and all(isinstance(rows[j]["webhook_payload"], dict) for j in jobs),
                stats["polls"])
        C.check("dedupe markers in Redis for each run", len(env.redis_keys(QUEUE + ":seen:*")) == len(jobs),
                env.redis_keys(QUEUE + ":seen:*"))


SCENARIOS = {1: scenario_1, 2: scenario_2, 3: scenario_3, 4: scenario_4, 5: scenario_5, 6: scenario_6,
             7: scenario_7, 8: scenario_8}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated scenario numbers")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        for n, f in SCENARIOS.items():
            print(n, f.__doc__)
        return 0
    chosen = [int(x) for x in a.only.split(",") if x.strip()] or list(SCENARIOS)
    missing = [p for p in (MODULE, WORKER, PBCTL) if not os.path.exists(p)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_all = time.time()
    for n in chosen:
        f = SCENARIOS[n]
        print("=== scenario %d: %s" % (n, f.__doc__), flush=True)
        if missing and n != 2:
            C.check("scenario %d prerequisites built" % n, False, "missing %s (run make)" % ", ".join(missing))
            continue
        t0 = time.time()
        try:
            f()
        except Exception as e:  # a harness error fails the scenario, the others still run
            C.check("scenario %d ran to the end" % n, False, "%s: %s" % (type(e).__name__, e))
            traceback.print_exc(file=sys.stdout)
        print("    (%.1f s; logs in build/e2e/)" % (time.time() - t0), flush=True)
    print("e2e: %.0f s" % (time.time() - t_all))
    if C.failed:
        print("failed: " + "; ".join(C.failed))
    print("%d passed, %d failed" % (C.passed, len(C.failed)))
    return 1 if C.failed else 0


if __name__ == "__main__":
    sys.exit(main())
