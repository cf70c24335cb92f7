#!/usr/bin/env python3
"""The naive way: launch K PhantomBuster jobs at once, one thread each, no queue.

It is the contrast to pb-worker: against an org with plan.parallelism 1 (and a rate limit),
most launches come back as 429 tooManyRequests or maxParallelismReached refusals.
Prints the counts; with --json prints them as one JSON object.

    scripts/naive-launcher.py --api-url http://127.0.0.1:8490 --api-key KEY --agent 123 --jobs 50
"""
import argparse
import json
import os
import sys
import threading
import urllib.error
import urllib.request


def launch(api_url, key, agent, argument, timeout):
    req = urllib.request.Request(api_url.rstrip("/") + "/api/v2/agents/launch", method="POST",
                                 data=json.dumps({"id": agent, "argument": argument}).encode(),
                                 headers={"X-Phantombuster-Key": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except OSError as e:
        return None, str(e)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--api-url", default=os.environ.get("PHANTOMBUSTER_API_URL", "http://127.0.0.1:8490"))
    p.add_argument("--api-key", default=os.environ.get("PHANTOMBUSTER_API_KEY", "sim-api-key"))
    p.add_argument("--agent", default="4717388215573025")
    p.add_argument("--jobs", "-k", type=int, default=50)
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    a = p.parse_args()

    results = [None] * a.jobs
    barrier = threading.Barrier(a.jobs)

    def run(i):
        barrier.wait()  # all threads fire together
        results[i] = launch(a.api_url, a.api_key, a.agent, {"company": "company-%03d" % (i + 1)}, a.timeout)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(a.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    counts = {"jobs": a.jobs, "launched_200": 0, "rate_limited_429": 0, "refused_parallelism": 0,
              "server_error_5xx": 0, "other_error": 0, "container_ids": []}
    for status, body in results:
        if status == 200:
            counts["launched_200"] += 1
            try:
                counts["container_ids"].append(json.loads(body)["containerId"])
            except (ValueError, KeyError):
                pass
        elif status == 429:
            counts["rate_limited_429"] += 1
        elif "maxParallelismReached" in (body or ""):
            counts["refused_parallelism"] += 1
        elif status is not None and status >= 500:
            counts["server_error_5xx"] += 1
        else:
            counts["other_error"] += 1
    if a.json:
        print(json.dumps(counts))
    else:
        print("naive launcher: %d jobs fired at once against %s" % (a.jobs, a.api_url))
        for k in ("launched_200", "rate_limited_429", "refused_parallelism", "server_error_5xx", "other_error"):
            print("  %-20s %d" % (k, counts[k]))
        print("  => %d of %d jobs lost without a retry queue" % (a.jobs - counts["launched_200"], a.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
