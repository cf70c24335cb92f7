#!/usr/bin/env python3
"""Turns build/bench/records.txt into the markdown report and the chart.

Called by scripts/bench/run.sh.  Every figure comes from one REC line
written during the run (scripts/bench/*.sh); ratios are computed here, from
figures of the same run only.
"""
import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys

NAMES = {
    "module": "(a) ngx_http_phantombuster_module",
    "plain": "(b) plain nginx `return 202`",
    "echo": "(b') plain nginx, body read (echo)",
    "openresty": "(c) OpenResty way (lua + resty.redis + cjson)",
    "nodedupe": "(a') the module, phantombuster_dedupe off",
}
ORDER = ["module", "nodedupe", "plain", "echo", "openresty"]

# Targets at 64 connections (issue 6).
T_RPS_PLAIN = 0.5
T_RPS_OR = 2.0
T_CPU_PLAIN = 2.0
T_P99_PLAIN = 3.0
T_DRAIN = 0.5


def num(v):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def load(path):
    recs, notes = [], []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("REC "):
                d = {}
                for kv in line[4:].split():
                    k, _, v = kv.partition("=")
                    d[k] = num(v)
                recs.append(d)
            elif line.startswith("NOTE "):
                notes.append(line[5:])
    return recs, notes


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:
        return ""


def machine():
    cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
    ncpu = sh("nproc")
    return [
        ("CPU", "%s, %s CPUs" % (cpu or "?", ncpu or "?")),
        ("kernel", sh("uname -sr")),
        ("nginx", sh("/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //'")),
        ("Redis", sh("redis-server --version | sed 's/ sha=.*//'")),
        ("wrk", sh("dpkg-query -W -f='${Version}' wrk 2>/dev/null") or "?"),
        ("lua-nginx-module", sh("dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null") or "-"),
        ("PostgreSQL", sh("psql --version 2>/dev/null") or "-"),
        ("SQLite", sh("sqlite3 --version 2>/dev/null | cut -d' ' -f1") or "-"),
        ("memory", sh("free -g | awk '/^Mem:/ { print $2 \" GiB\" }'")),
    ]


def mean(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.mean(xs) if xs else None


def fmt(x, digits=0, unit=""):
    if x is None:
        return "n/a"
    if digits == 0:
        return "{:,.0f}{}".format(x, unit)
    return "{:,.{d}f}{}".format(x, unit, d=digits)


def ratio(a, b, digits=2):
    if a is None or b in (None, 0):
        return None
    return a / b


def rfmt(r, digits=2):
    return "n/a" if r is None else "%.*fx" % (digits, r)


def verdict(ok):
    return "met" if ok else "**MISSED**"


class Webhook:
    def __init__(self, recs):
        self.runs = [r for r in recs if r.get("section") == "webhook"]
        self.contenders = [c for c in ORDER if any(r["contender"] == c for r in self.runs)]
        self.conns = sorted({r["conns"] for r in self.runs})
        for r in self.runs:
            d = r["duration_us"] / 1e6
            r["rps"] = r["requests"] / d if d else 0
            ok2xx = r["requests"] - r["non2xx"]
            r["ok2xx"] = ok2xx
            r["nginx_us_req"] = r["nginx_cpu_us"] / r["requests"] if r["requests"] else None
            r["redis_us_req"] = r["redis_cpu_us"] / r["requests"] if r["requests"] else None
            r["cpu_us_req"] = ((r["nginx_cpu_us"] + r["redis_cpu_us"]) / r["requests"]
                               if r["requests"] else None)
            if r.get("pushes"):
                inflight = r["issued"] - r["requests"]
                r["lost"] = max(0, ok2xx - r["llen"])
                r["extra"] = r["llen"] - ok2xx
                r["push_ok"] = r["llen"] >= ok2xx and r["extra"] <= inflight
                r["inflight"] = inflight

    # Noise on a shared machine only ever slows a run down, so each figure
    # is the best of the rounds: the highest req/s, the lowest latency and
    # CPU per request.  Every round is listed too.
    def agg(self, who, conns, key):
        xs = [r.get(key) for r in self.runs
              if r["contender"] == who and r["conns"] == conns
              and isinstance(r.get(key), (int, float))]
        if not xs:
            return None
        return max(xs) if key == "rps" else min(xs)

    def has(self, who):
        return who in self.contenders


def webhook_section(w, out, targets):
    out.append("## 1. Webhook endpoint\n")
    out.append("wrk `-t1 -cN -d%ss --latency`, keep-alive, ~600-byte payload with a new "
               "containerId per request; one nginx worker and Redis on CPU %s, wrk on CPU %s; "
               "%s interleaved rounds; each figure is the best of the rounds (noise only slows a run: highest req/s, lowest latency and CPU), every round's req/s is listed below. CPU per request = "
               "(utime+stime delta of the nginx worker / of redis-server) / responses.\n"
               % (w.meta.get("duration_s"), w.meta.get("cpu_srv"), w.meta.get("cpu_cli"),
                  w.meta.get("rounds")))
    out.append("| contender | conns | req/s | p50 ms | p99 ms | nginx CPU us/req | redis CPU us/req | pushes per Redis read | non-2xx | pushes vs 2xx |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for conns in w.conns:
        for who in w.contenders:
            runs = [r for r in w.runs if r["contender"] == who and r["conns"] == conns]
            if not runs:
                continue
            if runs[0].get("pushes"):
                lost = sum(r["lost"] for r in runs)
                extra = sum(r["extra"] for r in runs)
                allok = all(r["push_ok"] for r in runs)
                check = "%s: %d lost, %d pushed for requests cut off at the end" % (
                    "ok" if allok else "**FAIL**", lost, extra)
            else:
                check = "-"
            pushes = runs[0].get("pushes")
            # pushes (list entries) per read() Redis made: the depth of the
            # pipelining (INFO's command count would include the commands
            # the push script runs inside Redis)
            cpr = mean([r["llen"] / r["redis_reads"] for r in runs
                        if r.get("redis_reads", 0) > 0]) if pushes else None
            out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %d | %s |" % (
                NAMES[who], conns, fmt(w.agg(who, conns, "rps")),
                fmt(w.agg(who, conns, "p50_us") / 1000, 2),
                fmt(w.agg(who, conns, "p99_us") / 1000, 2),
                fmt(w.agg(who, conns, "nginx_us_req"), 1),
                fmt(w.agg(who, conns, "redis_us_req"), 1) if pushes else "-",
                fmt(cpr, 2) if pushes else "-",
                sum(r["non2xx"] for r in runs), check))
    out.append("")
    per = []
    for c in w.conns:
        for who in w.contenders:
            rs = [r for r in w.runs if r["contender"] == who and r["conns"] == c]
            if rs:
                per.append("%s c%d %s (p99 %s ms)" % (
                    who, c, "/".join(fmt(r["rps"]) for r in rs),
                    "/".join(fmt(r["p99_us"] / 1000, 2) for r in rs)))
    out.append("Every round, req/s (p99): " + "; ".join(per) + ".\n")

    if w.has("module"):
        out.append("### Ratios (same run)\n")
        out.append("| conns | a/b req/s | a/c req/s | p99 a/b | CPU/req a/b (nginx+redis vs nginx) | a/b' req/s | c/b req/s |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|")
        for conns in w.conns:
            a_rps = w.agg("module", conns, "rps")
            out.append("| %d | %s | %s | %s | %s | %s | %s |" % (
                conns,
                rfmt(ratio(a_rps, w.agg("plain", conns, "rps"))),
                rfmt(ratio(a_rps, w.agg("openresty", conns, "rps"))),
                rfmt(ratio(w.agg("module", conns, "p99_us"), w.agg("plain", conns, "p99_us"))),
                rfmt(ratio(w.agg("module", conns, "cpu_us_req"), w.agg("plain", conns, "cpu_us_req"))),
                rfmt(ratio(a_rps, w.agg("echo", conns, "rps"))),
                rfmt(ratio(w.agg("openresty", conns, "rps"), w.agg("plain", conns, "rps")))))
        out.append("")
        c = 64 if 64 in w.conns else max(w.conns)
        # (a) as shipped, dedupe on; (a') dedupe off, the peer table's
        # contract (validate, LPUSH, 202)
        for who, a in (("module", "a"), ("nodedupe", "a'")):
            if not w.has(who):
                continue
            a_rps = w.agg(who, c, "rps")
            checks = [
                ("req/s %s/b >= %.1fx" % (a, T_RPS_PLAIN), ratio(a_rps, w.agg("plain", c, "rps")),
                 T_RPS_PLAIN, True),
                ("req/s %s/c >= %.1fx" % (a, T_RPS_OR), ratio(a_rps, w.agg("openresty", c, "rps")),
                 T_RPS_OR, True),
                ("CPU/req %s/b <= %.1fx" % (a, T_CPU_PLAIN),
                 ratio(w.agg(who, c, "cpu_us_req"), w.agg("plain", c, "cpu_us_req")),
                 T_CPU_PLAIN, False),
                ("p99 %s/b <= %.1fx" % (a, T_P99_PLAIN),
                 ratio(w.agg(who, c, "p99_us"), w.agg("plain", c, "p99_us")), T_P99_PLAIN, False),
            ]
            for name, r, t, higher in checks:
                if r is None:
                    targets.append(("webhook c%d %s" % (c, name), "n/a", "not measured"))
                    continue
                ok = r >= t if higher else r <= t
                targets.append(("webhook c%d %s" % (c, name), rfmt(r), verdict(ok)))
        lost = sum(r["lost"] for r in w.runs if r["contender"] == "module")
        allok = all(r["push_ok"] for r in w.runs if r["contender"] == "module")
        targets.append(("webhook: zero lost pushes", "%d lost" % lost, verdict(allok and lost == 0)))


def slow_section(recs, out, targets):
    runs = [r for r in recs if r.get("section") == "slow"]
    if not runs:
        return
    out.append("### Module with a slow or stopped Redis\n")
    out.append("| scenario | requests | non-2xx | p50 ms | p99 ms | max ms | timeout ms | within timeout |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        limit = r["timeout_us"] * 1.1 + 50000   # timer granularity + wrk's own delay
        ok = r["max_us"] <= limit
        label = {"debug_sleep": "Redis `DEBUG SLEEP 0.5` every second",
                 "sigstop": "Redis stopped (SIGSTOP) for the whole run"}.get(r["scenario"], r["scenario"])
        out.append("| %s | %d | %d | %s | %s | %s | %s | %s |" % (
            label, r["requests"], r["non2xx"], fmt(r["p50_us"] / 1000, 1),
            fmt(r["p99_us"] / 1000, 1), fmt(r["max_us"] / 1000, 1),
            fmt(r["timeout_us"] / 1000), "yes" if ok else "**NO**"))
        targets.append(("slow Redis (%s): max latency <= timeout" % r["scenario"],
                        "%s ms" % fmt(r["max_us"] / 1000), verdict(ok)))
        if "after_requests" in r:
            out.append("")
            out.append("After SIGCONT: %d requests in 2 s, %d non-2xx (recovery)." % (
                r["after_requests"], r["after_non2xx"]))
    out.append("")


def queue_section(recs, out, targets):
    runs = [r for r in recs if r.get("section") == "queue"]
    if not runs:
        return
    out.append("## 2. Queue throughput\n")
    out.append("Envelopes pushed with redis-cli --pipe, then pb-worker started and timed until "
               "every audit row is in the database (webhooks of containers no job owns: one "
               "`container:<id>` row each). Raw = the same rows as plain INSERTs by the database's "
               "own client in one transaction.\n")
    out.append("| backend | rows | pb-worker rows/s | worker CPU us/row | redis CPU us/row | raw inserts rows/s | worker / raw |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for backend in ("sqlite", "postgresql"):
        w = next((r for r in runs if r["kind"] == "worker" and r["backend"] == backend), None)
        raw = next((r for r in runs if r["kind"] == "raw" and r["backend"] == backend), None)
        if not w and not raw:
            continue
        wps = w["rows"] / (w["elapsed_us"] / 1e6) if w and w["elapsed_us"] else None
        rps = raw["rows"] / (raw["elapsed_us"] / 1e6) if raw and raw["elapsed_us"] else None
        rr = ratio(wps, rps)
        rows = ("%s of %s (time cap)" % (fmt(w["rows"]), fmt(w["n"])) if w and w.get("capped")
                else fmt(w["rows"]) if w else "-")
        out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            backend, rows, fmt(wps),
            fmt(w["worker_cpu_us"] / w["rows"], 1) if w and w["rows"] else "n/a",
            fmt(w["redis_cpu_us"] / w["rows"], 1) if w and w["rows"] else "n/a",
            fmt(rps), rfmt(rr, 3)))
        targets.append(("drain %s >= %.1fx raw inserts" % (backend, T_DRAIN), rfmt(rr, 3),
                        verdict(rr is not None and rr >= T_DRAIN)))
    out.append("")


def memory_section(recs, out, targets):
    runs = [r for r in recs if r.get("section") == "memory"]
    if not runs:
        return
    out.append("## 3. Memory\n")
    extra_lines = []
    out.append("| what | N | before | after | growth |")
    out.append("|---|---:|---:|---:|---:|")
    for r in runs:
        what = r["what"]
        if what == "nginx_rss":
            growth = r["after_kb"] - r["before_kb"]
            out.append("| nginx worker RSS (module) over N webhooks | %s | %s KiB | %s KiB | %s KiB (%s bytes/webhook) |" % (
                fmt(r["n"]), fmt(r["before_kb"]), fmt(r["after_kb"]), fmt(growth),
                fmt(growth * 1024 / r["n"], 3)))
            series = str(r.get("series_kb", ""))
            if series:
                extra_lines.append("nginx worker RSS after each 5-second chunk (KiB): %s." % series.replace(",", ", "))
            flat = growth * 1024 / r["n"] < 1.0
            targets.append(("nginx RSS flat over %s webhooks" % fmt(r["n"]),
                            "%+d KiB" % growth, verdict(flat)))
        elif what == "worker_rss":
            out.append("| pb-worker RSS: empty queue, then N pending jobs (%s completed in 5 s meanwhile) | %s | %s KiB | %s KiB | %s KiB |" % (
                fmt(r.get("done_5s", 0)), fmt(r["n"]), fmt(r["before_kb"]), fmt(r["after_kb"]),
                fmt(r["after_kb"] - r["before_kb"])))
        elif what == "redis_job":
            out.append("| Redis used_memory, N pending jobs | %s | %s MiB | %s MiB | %s bytes/job |" % (
                fmt(r["n"]), fmt(r["before_b"] / 2**20, 1), fmt(r["after_b"] / 2**20, 1),
                fmt((r["after_b"] - r["before_b"]) / r["n"], 1)))
        elif what == "redis_envelope":
            out.append("| Redis used_memory, N queued webhooks | %s | %s MiB | %s MiB | %s bytes/webhook |" % (
                fmt(r["n"]), fmt(r["before_b"] / 2**20, 1), fmt(r["after_b"] / 2**20, 1),
                fmt((r["after_b"] - r["before_b"]) / r["n"], 1)))
    out.append("")
    for line in extra_lines:
        out.append(line + "\n")


def api_section(recs, out, targets):
    runs = [r for r in recs if r.get("section") == "api"]
    if not runs:
        return
    out.append("## 4. API economy (simulator)\n")
    out.append("| mode | jobs asked | runs completed | API calls | calls per completed job | launch calls | polls | refused (429 + parallelism) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    per = {}
    for r in runs:
        cpj = r["calls"] / r["completed"] if r.get("completed") else None
        per[r["mode"]] = cpj
        out.append("| %s | %d | %d | %d | %s | %d | %d | %d |" % (
            r["mode"], r["jobs"], r["completed"], r["calls"], fmt(cpj, 2),
            r.get("launch_calls", 0), r.get("polls", 0), r.get("refused", 0)))
    out.append("")
    if per.get("webhook"):
        out.append("Ratios of calls per completed job: " + ", ".join(
            "%s / webhook %s" % (m, rfmt(ratio(v, per["webhook"])))
            for m, v in per.items() if m != "webhook" and v) + ".\n")


def profile_section(recs, out):
    prof = next((r for r in recs if r.get("section") == "profile"), None)
    if not prof or not os.path.exists(str(prof.get("file", ""))):
        return
    req = prof["requests"] or 1
    ng = prof["nginx_cpu_us"] / req
    rd = prof["redis_cpu_us"] / req
    parts = {}
    cur = None
    with open(prof["file"]) as f:
        for line in f:
            if line.startswith("## "):
                cur = line[3:].strip()
                parts[cur] = []
            elif cur and "%" in line:
                parts[cur].append(line.rstrip())
    out.append("## Profile of the module (perf, 64 connections)\n")
    out.append("One nginx worker sampled for 5 s with DWARF call graphs (`perf record --call-graph dwarf -e cpu-clock`), "
               "Redis with frame pointers, during a %s req/s run. The worker used %.1f us of CPU per request, "
               "Redis %.1f us; us/request below = share x that.\n"
               % (fmt(req / (prof["duration_us"] / 1e6)), ng, rd))
    pct = re.compile(r"^\s*([0-9.]+)%\s+(?:([0-9.]+)%\s+)?(.*?)\s*(?:-\s+-\s*)?$")

    def rows(name, limit, total, children=False):
        res = []
        for line in parts.get(name, [])[:limit]:
            m = pct.match(line)
            if not m:
                continue
            share = float(m.group(1))
            what = m.group(3).replace("[.] ", "").replace("|", "\\|").strip()
            what = re.sub(r"^redis-check-rdb\s+", "redis-server: ", what)
            what = re.sub(r"^(\S+\.so[.0-9]*|\[\w+\])\s+(?=\S)", r"\1: ", what)
            res.append("| %s | %.1f%% | %.2f |" % (what, share, share / 100 * total))
        return res

    out.append("| nginx worker, self time by object | share | us/request |")
    out.append("|---|---:|---:|")
    out.extend(rows("nginx worker: self time by shared object", 10, ng))
    out.append("")
    out.append("| nginx worker, inclusive time (function and what it calls) | share | us/request |")
    out.append("|---|---:|---:|")
    out.extend(rows("nginx worker: inclusive time by function", 30, ng, True))
    out.append("")
    out.append("| redis-server, self time | share | us/request |")
    out.append("|---|---:|---:|")
    out.extend(rows("redis-server: self time by function", 12, rd))
    out.append("")


def check_webhook(recs):
    """Exit status 1 and the misses on stdout when the module misses a target."""
    w = Webhook(recs)
    if not w.has("module"):
        return 0
    c = 64 if 64 in w.conns else max(w.conns)
    a = lambda k, who="module": w.agg(who, c, k)
    misses = []
    r = ratio(a("rps"), a("rps", "plain"))
    if r is not None and r < T_RPS_PLAIN:
        misses.append("req/s a/b %.2fx < %.1fx" % (r, T_RPS_PLAIN))
    r = ratio(a("rps"), a("rps", "openresty"))
    if r is not None and r < T_RPS_OR:
        misses.append("req/s a/c %.2fx < %.1fx" % (r, T_RPS_OR))
    r = ratio(a("cpu_us_req"), a("cpu_us_req", "plain"))
    if r is not None and r > T_CPU_PLAIN:
        misses.append("CPU/req a/b %.2fx > %.1fx" % (r, T_CPU_PLAIN))
    r = ratio(a("p99_us"), a("p99_us", "plain"))
    if r is not None and r > T_P99_PLAIN:
        misses.append("p99 a/b %.2fx > %.1fx" % (r, T_P99_PLAIN))
    print("\n".join(misses))
    return 1 if misses else 0


def check_queue(recs):
    runs = [r for r in recs if r.get("section") == "queue"]
    bad = []
    for backend in ("sqlite", "postgresql"):
        w = next((r for r in runs if r["kind"] == "worker" and r["backend"] == backend), None)
        raw = next((r for r in runs if r["kind"] == "raw" and r["backend"] == backend), None)
        if w and raw and w["elapsed_us"] and raw["elapsed_us"]:
            rr = (w["rows"] / w["elapsed_us"]) / (raw["rows"] / raw["elapsed_us"])
            if rr < T_DRAIN:
                bad.append("drain %s %.3fx < %.1fx" % (backend, rr, T_DRAIN))
    print("\n".join(bad))
    return 1 if bad else 0


def wprofile_section(recs, out):
    prof = next((r for r in recs if r.get("section") == "wprofile"), None)
    if not prof or not os.path.exists(str(prof.get("file", ""))):
        return
    parts, cur = {}, None
    with open(prof["file"]) as f:
        for line in f:
            if line.startswith("## "):
                cur = line[3:].strip()
                parts[cur] = []
            elif cur:
                parts[cur].append(line.rstrip())
    rows = prof["rows"] or 1
    out.append("### Profile of the drain (pb-worker into SQLite)\n")
    out.append("A separate drain of 20,000 envelopes, pb-worker sampled for 4 s "
               "(`perf record --call-graph dwarf`); Redis counters over the %s rows written.\n" % fmt(rows))
    pct = re.compile(r"^\s*([0-9.]+)%\s+(?:([0-9.]+)%\s+)?(.*?)\s*(?:-\s+-\s*)?$")
    for name, title in (("pb-worker: self time by shared object", "pb-worker, self time by object"),
                        ("pb-worker: inclusive time by function", "pb-worker, inclusive time")):
        out.append("| %s | share |" % title)
        out.append("|---|---:|")
        for line in parts.get(name, []):
            m = pct.match(line)
            if m:
                out.append("| %s | %.1f%% |" % (m.group(3).replace("[.] ", "").strip(), float(m.group(1))))
        out.append("")
    out.append("| Redis command | calls per row | us per call |")
    out.append("|---|---:|---:|")
    for line in parts.get("redis: commands per row", []):
        m = re.match(r"cmdstat_(\w+):calls=(\d+),usec=(\d+),usec_per_call=([0-9.]+)", line)
        if m:
            out.append("| %s | %.2f | %s |" % (m.group(1).upper(), int(m.group(2)) / rows, m.group(4)))
    out.append("")


def chart(w, path, data_dir):
    if not w.contenders:
        return None
    dat = os.path.join(data_dir, "chart.dat")
    with open(dat, "w") as f:
        f.write("# contender rps_c16 rps_c64 p99ms_c16 p99ms_c64\n")
        for who in w.contenders:
            row = [who]
            for key, scale in (("rps", 1), ("p99_us", 1000)):
                for c in (16, 64):
                    v = w.agg(who, c, key)
                    row.append("%.3f" % (v / scale) if v is not None else "NaN")
            f.write("%s %s\n" % (row[0], " ".join(row[1:])))
    gp = os.path.join(data_dir, "chart.gp")
    with open(gp, "w") as f:
        f.write("""set terminal pngcairo size 1100,480 font ',10' noenhanced
set output '%s'
set multiplot layout 1,2 title 'Webhook endpoint: one nginx worker + Redis on one CPU, wrk on the other'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set key top right
set yrange [0:*]
set title 'throughput (requests/s, higher is better)'
set format y '%%.0s%%c'
plot '%s' using 2:xtic(1) title '16 conns', '' using 3 title '64 conns'
set title 'p99 latency (ms, lower is better)'
set format y '%%g'
plot '%s' using 4:xtic(1) title '16 conns', '' using 5 title '64 conns'
unset multiplot
""" % (path, dat, dat))
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(path):
        # pngcairo may be missing on gnuplot-nox builds: fall back to png
        with open(gp) as f:
            text = f.read().replace("pngcairo size 1100,480 font ',10' noenhanced",
                                    "png size 1100,480 noenhanced")
        with open(gp, "w") as f:
            f.write(text)
        r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write("report: gnuplot failed: %s\n" % r.stderr)
            return None
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", required=True)
    ap.add_argument("--out")
    ap.add_argument("--check-webhook", action="store_true")
    ap.add_argument("--check-queue", action="store_true")
    ap.add_argument("--chart")
    ap.add_argument("--data-dir", default=".")
    ap.add_argument("--root", default=".")
    a = ap.parse_args()

    recs, notes = load(a.records)
    if a.check_webhook:
        sys.exit(check_webhook(recs))
    if a.check_queue:
        sys.exit(check_queue(recs))
    meta = {}
    for r in recs:
        if r.get("section") == "meta":
            meta.update(r)
    w = Webhook(recs)
    w.meta = meta

    out, targets = [], []
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.append("# Benchmark results, %s\n" % date)
    out.append("`make bench` (scripts/bench/run.sh); method and caveats in docs/benchmarks.md. "
               "Loopback, one run, side by side: compare the ratios, not the absolute numbers.\n")
    out.append("| machine | |")
    out.append("|---|---|")
    for k, v in machine():
        out.append("| %s | %s |" % (k, v))
    if meta.get("finished") and meta.get("started"):
        out.append("| bench runtime | %d s |" % (meta["finished"] - meta["started"]))
    if meta.get("load_start"):
        out.append("| load average 1/5/15 min, start / end (other work on the machine) | %s / %s |"
                   % (meta["load_start"], meta.get("load_end", "?")))
    out.append("")

    body = []
    webhook_section(w, body, targets)
    slow_section(recs, body, targets)
    profile_section(recs, body)
    queue_section(recs, body, targets)
    wprofile_section(recs, body)
    memory_section(recs, body, targets)
    api_section(recs, body, targets)

    if targets:
        out.append("## Targets (issue 6)\n")
        out.append("| target | this run | verdict |")
        out.append("|---|---:|---|")
        for t in targets:
            out.append("| %s | %s | %s |" % t)
        out.append("")
    out.extend(body)
    if a.chart:
        p = chart(w, a.chart, a.data_dir)
        if p:
            out.append("![throughput and p99 per contender](%s)\n" % os.path.basename(p))
    if notes:
        out.append("## Notes\n")
        for n in notes:
            out.append("- " + n)
        out.append("")

    text = "\n".join(out)
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
