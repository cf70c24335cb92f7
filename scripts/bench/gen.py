#!/usr/bin/env python3
"""Generates benchmark inputs on stdout.

  gen.py envelopes N QUEUE [BATCH]   Redis protocol (for redis-cli --pipe):
                                     LPUSH QUEUE with N webhook envelopes in
                                     the module's format (common/pb_envelope.c),
                                     BATCH envelopes per command, and the dedupe
                                     marker the module sets with each (its
                                     default phantombuster_dedupe 24h), which
                                     the worker reads
  gen.py sql sqlite|postgresql N     the audit rows those N webhooks become, as
                                     plain INSERTs in one transaction (the raw
                                     speed of the database: the practical limit)
  gen.py jobs N SHA [AGENT]          Redis protocol: N EVALSHA of the enqueue
                                     script of docs/redis-layout.md (loaded
                                     beforehand, SHA its digest): N pending
                                     jobs exactly as pbctl enqueue makes them
  gen.py payload                     one webhook payload (~600 bytes)

The payload is the one bench/wrk/webhook.lua sends: PhantomBuster's
completion webhook with a containerId of its own per envelope (none of them
belongs to a job the worker knows).
"""
import json
import os
import sys
import time

BASE_CONTAINER = 7100000000000000


def payload(container_id):
    result = json.dumps([{
        "profileUrl": "https://www.linkedin.com/in/bench-user-7f3a2c91/",
        "fullName": "Bench User", "headline": "Head of Growth at Example Ltd",
        "company": "Example Ltd", "location": "Lyon, Auvergne-Rhone-Alpes, France",
        "connectionDegree": "2nd", "mutualConnections": 7,
        "timestamp": "2024-05-14T09:32:11.482Z"}], separators=(",", ":"))
    return json.dumps({
        "agentId": 4717388215573025,
        "agentName": "LinkedIn Profile Scraper - benchmark leads",
        "containerId": container_id,
        "script": "LinkedIn Profile Scraper.js", "scriptOrg": "phantombuster",
        "branch": "master", "launchDuration": 1843, "runDuration": 127406,
        "exitCode": 0, "exitMessage": "finished", "resultObject": result,
    }, separators=(",", ":"))


def request_id(i):
    return "%032x" % (0xbe9c0000000000000000000000000000 + i)


def envelope(i, queue, now_ms):
    # head exactly as pb_envelope_head() writes it; the payload verbatim
    rid = request_id(i)
    return ('{"id":%s,"received_at":%d,"queue":%s,"payload":%s}'
            % (json.dumps(rid), now_ms, json.dumps(queue), payload(BASE_CONTAINER + i)))


def resp(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def cmd_envelopes(n, queue, batch=500):
    w = sys.stdout.buffer
    now = int(time.time() * 1000)
    i = 0
    while i < n:
        k = min(batch, n - i)
        for j in range(i, i + k):
            w.write(resp(["SET", "%s:seen:%d" % (queue, BASE_CONTAINER + j),
                          request_id(j), "PX", "86400000", "NX"]))
        w.write(resp(["LPUSH", queue] + [envelope(i + j, queue, now) for j in range(k)]))
        i += k
    w.flush()


def cmd_jobs(n, sha, agent="4717388215573025"):
    w = sys.stdout.buffer
    buf = []
    for i in range(n):
        jid = "bench-job-%07d" % i
        buf.append(resp(["EVALSHA", sha, "5", "phantombuster:job:" + jid,
                         "phantombuster:jobs:seq", "phantombuster:jobs:pending",
                         "phantombuster:audit:outbox", "phantombuster:metrics",
                         jid, agent, '{"company":"Company %07d"}' % i, "0", "bench"]))
        if len(buf) == 1000:
            w.write(b"".join(buf))
            buf = []
    w.write(b"".join(buf))
    w.flush()


def sql_quote(s):
    return "'" + s.replace("'", "''") + "'"


def cmd_sql(dialect, n):
    # The row pb-worker writes for a webhook of a container no job owns
    # (worker/lua.h, audit_unknown), inserted plainly.
    w = sys.stdout
    w.write("BEGIN;\n")
    now = ("'2024-05-14 09:32:11.482'" if dialect == "sqlite"
           else "(now() AT TIME ZONE 'utc')")
    for i in range(n):
        cid = str(BASE_CONTAINER + i)
        meta = json.dumps({"error": "unknown container",
                           "webhook_received_at": "2024-05-14T09:32:11.482Z",
                           "phantom_container_id": cid}, separators=(",", ":"))
        w.write("INSERT INTO service_audit_logs (job_id, service_name, agent_id, status, "
                "phantom_container_id, webhook_payload, metadata, created_at, updated_at) "
                "VALUES (%s, 'phantombuster', '4717388215573025', 'webhook_received', "
                "%s, %s, %s, %s, %s);\n"
                % (sql_quote("container:" + cid), sql_quote(cid),
                   sql_quote(payload(BASE_CONTAINER + i)), sql_quote(meta), now, now))
    w.write("COMMIT;\n")


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    if a[0] == "envelopes":
        cmd_envelopes(int(a[1]), a[2], int(a[3]) if len(a) > 3 else 500)
    elif a[0] == "sql":
        cmd_sql(a[1], int(a[2]))
    elif a[0] == "jobs":
        cmd_jobs(int(a[1]), a[2], *a[3:4])
    elif a[0] == "payload":
        print(payload(BASE_CONTAINER))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
