#!/usr/bin/env python3
"""Rollout phase 1 ("run both, compare"): pb-worker runs with PB_POLL_MODE=1
and completes every run by polling, while the agents already send their
webhooks, which the nginx module queues in Redis and nobody consumes.  This
compares the two: for each run the poller completed, did a webhook arrive,
and does it say the same thing (exit code, exit message)?

    scripts/deploy/compare-webhooks.py [--since-hours H]

Reads REDIS_URL, PB_WEBHOOK_QUEUE and AUDIT_DATABASE_URL like pb-worker
(or --redis-url, --queue, --audit-url).  Only reads.  Exit status 0 when
every polled run in the window has a matching webhook, 1 otherwise.
Python 3 standard library only; PostgreSQL through the psql client.
"""
import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import urllib.parse


def redis_lrange(url, key):
    u = urllib.parse.urlparse(url)
    if u.scheme == "unix":
        s = socket.socket(socket.AF_UNIX)
        s.connect(u.path)
        db = urllib.parse.parse_qs(u.query).get("db", ["0"])[0]
    else:
        s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), 5)
        db = (u.path or "/0").lstrip("/") or "0"
    f = s.makefile("rb")

    def cmd(*args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        return reply()

    def reply():
        line = f.readline().rstrip(b"\r\n")
        t, rest = line[:1], line[1:]
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t in (b"+", b":"):
            return rest
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:-2]
            return data
        if t == b"*":
            return [reply() for _ in range(int(rest))]
        raise RuntimeError("unexpected reply %r" % line)

    if u.password:
        cmd("AUTH", urllib.parse.unquote(u.password))
    cmd("SELECT", db)
    items = cmd("LRANGE", key, "0", "-1")
    s.close()
    return items


def audit_rows(url, since_hours):
    q = ("SELECT job_id, phantom_container_id, metadata FROM service_audit_logs"
         " WHERE phantom_container_id IS NOT NULL AND phantom_container_id <> ''")
    if url.startswith("sqlite:"):
        path = url[len("sqlite:"):]
        if path.startswith("//"):
            path = path[2:]
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        q += " AND updated_at >= strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-%d hours')" \
            % since_hours
        return [(a, b, json.loads(c or "{}")) for a, b, c in db.execute(q)]
    if url.startswith(("postgres://", "postgresql://")):
        q += " AND updated_at >= now() - interval '%d hours'" % since_hours
        out = subprocess.run(["psql", url, "-At", "-F", "\t", "-c", q],
                             check=True, capture_output=True, text=True).stdout
        rows = []
        for line in out.splitlines():
            a, b, c = line.split("\t", 2)
            rows.append((a, b, json.loads(c or "{}")))
        return rows
    raise SystemExit("compare-webhooks: unsupported AUDIT_DATABASE_URL %r" % url)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--queue", default=os.environ.get("PB_WEBHOOK_QUEUE", "phantombuster:webhooks"))
    ap.add_argument("--audit-url", default=os.environ.get("AUDIT_DATABASE_URL", "sqlite:./pb_audit.db"))
    ap.add_argument("--since-hours", type=int, default=24)
    a = ap.parse_args()

    hooks = {}
    for raw in redis_lrange(a.redis_url, a.queue) or []:
        try:
            p = json.loads(raw)["payload"]
            hooks[str(p["containerId"])] = p
        except (ValueError, KeyError, TypeError):
            continue

    polled = missing = mismatched = 0
    seen = set()
    for job, container, meta in audit_rows(a.audit_url, a.since_hours):
        if meta.get("found_by") != "polling":
            continue
        polled += 1
        seen.add(container)
        h = hooks.get(container)
        if h is None:
            missing += 1
            print("missing    job %s container %s: no webhook queued" % (job, container))
            continue
        want = (meta.get("exit_code"), meta.get("exit_message"))
        got = (h.get("exitCode"), h.get("exitMessage"))
        if want != got:
            mismatched += 1
            print("mismatch   job %s container %s: polled %s, webhook %s"
                  % (job, container, want, got))
        else:
            print("match      job %s container %s: exit %s %s" % (job, container, *got))
    extra = [c for c in hooks if c not in seen]
    for c in extra:
        print("no job     container %s: webhook for a run the poller did not complete" % c)
    print("compare: %d polled runs, %d with a matching webhook, %d missing, %d mismatched,"
          " %d webhooks without a polled run" % (polled, polled - missing - mismatched,
                                                 missing, mismatched, len(extra)))
    return 0 if polled and not missing and not mismatched else 1


if __name__ == "__main__":
    sys.exit(main())
