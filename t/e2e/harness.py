"""Process harness for the end-to-end tests and shared helpers.

Starts and stops, on loopback only: a redis-server of its own (port 6398, through
scripts/redis.sh), nginx with the phantombuster module (ports 8480/8481), the PhantomBuster
simulator (port 8490) and pb-worker processes; reads the simulator's /_sim/stats and the
service_audit_logs table (SQLite through Python's sqlite3, PostgreSQL through psql).
Everything it started is stopped by close(), also on errors and SIGTERM.
"""
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, "build")
# PB_E2E_MODULE / PB_E2E_WORKER / PB_E2E_PBCTL point at other builds (sanitizers, coverage).
MODULE = os.environ.get("PB_E2E_MODULE") or os.path.join(BUILD, "nginx", "ngx_http_phantombuster_module.so")
WORKER = os.environ.get("PB_E2E_WORKER") or os.path.join(BUILD, "worker", "pb-worker")
PBCTL = os.environ.get("PB_E2E_PBCTL") or os.path.join(BUILD, "worker", "pbctl")
SIMULATOR = os.path.join(ROOT, "scripts", "pb-simulator.py")
NAIVE = os.path.join(ROOT, "scripts", "naive-launcher.py")
NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")

REDIS_PORT = int(os.environ.get("PB_E2E_REDIS_PORT", "6398"))
NGINX_PORTS = (8480, 8481)
SIM_PORT = 8490
PG_PORT = int(os.environ.get("PB_TEST_PG_PORT", "5499"))
QUEUE = "phantombuster:webhooks"
API_KEY = "e2e-api-key-5b1f0c"
SECRET = "e2e-secret-9d0e6a4c2f7b"
AGENT = "4717388215573025"
TERMINAL = {"success", "failed", "timed_out", "dead_lettered"}


def webhook_url(port=NGINX_PORTS[0], secret=SECRET):
    return "http://127.0.0.1:%d/webhooks/phantombuster?secret=%s" % (port, secret)


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_json(method, url, body=None, headers=None, timeout=5):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def wait_for(pred, timeout, interval=0.1):
    """Calls pred until it returns a truthy value or timeout passes; returns the last value."""
    end = time.time() + timeout
    value = pred()
    while not value and time.time() < end:
        time.sleep(interval)
        value = pred()
    return value


def job_of(container):
    """The job id the e2e put in a launch's argument ({"job": ...}), or None."""
    for field in ("argument", "bonusArgument"):
        raw = container.get(field)
        if not raw:
            continue
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            continue
        if isinstance(value, str):  # argument sent as a JSON string inside JSON
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, dict) and value.get("job"):
            return value["job"]
    return None


class Checks:
    """Named assertions; the run ends with one 'N passed, N failed' line."""

    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print("  ok    %s" % name, flush=True)
        else:
            self.failed.append(name)
            print("  FAIL  %s%s" % (name, (": " + str(detail)) if detail != "" else ""), flush=True)
        return bool(ok)

    def eq(self, name, got, want):
        return self.check("%s (%r)" % (name, want), got == want, "got %r" % (got,))


class Env:
    """One scenario's processes. Use as a context manager."""

    def __init__(self, name, db="sqlite"):
        self.name = name
        self.dir = os.path.join(BUILD, "e2e", name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.procs = {}        # name -> Popen (sim, workers, nginx masters)
        self.logs = {}
        self.db = db
        self.redis_started = False
        if db == "postgresql":
            self.pg_db = "pb_e2e"
            self.audit_url = "postgresql://postgres@127.0.0.1:%d/%s" % (PG_PORT, self.pg_db)
        else:
            self.sqlite_path = os.path.join(self.dir, "audit.db")
            self.audit_url = "sqlite:" + self.sqlite_path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- generic processes ------------------------------------------------
    def spawn(self, name, argv, env=None):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        self.logs[name] = log.name
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=dict(os.environ, **(env or {})), cwd=self.dir)
        log.close()
        self.procs[name] = p
        return p

    def stop(self, name, sig=signal.SIGTERM, timeout=10):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        return p.returncode

    def tail(self, name, n=25):
        path = self.logs.get(name)
        if not path or not os.path.exists(path):
            return ""
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("    | " + line for line in lines[-n:])

    def close(self):
        for name in list(self.procs):
            if name.startswith("worker"):
                self.stop(name, signal.SIGTERM, 5)
        for name in list(self.procs):
            self.stop(name, signal.SIGQUIT if name.startswith("nginx") else signal.SIGTERM, 5)
        if self.redis_started:
            subprocess.run([os.path.join(ROOT, "scripts", "redis.sh"), "stop", str(REDIS_PORT)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.redis_started = False

    # ---- Redis ------------------------------------------------------------
    def start_redis(self, flush=True):
        r = subprocess.run([os.path.join(ROOT, "scripts", "redis.sh"), "start", str(REDIS_PORT)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("redis.sh start %d failed: %s" % (REDIS_PORT, r.stderr.strip()))
        self.redis_started = True
        if flush:
            self.redis("FLUSHALL")

    def restart_redis(self):
        r = subprocess.run([os.path.join(ROOT, "scripts", "redis.sh"), "restart", str(REDIS_PORT)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("redis.sh restart failed: %s" % r.stderr.strip())

    def redis(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(REDIS_PORT)] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    def redis_keys(self, pattern):
        return [k for k in self.redis("KEYS", pattern).split("\n") if k.strip()]

    def redis_int(self, *args):
        out = self.redis(*args)
        try:
            return int(out)
        except ValueError:
            return None

    # ---- simulator --------------------------------------------------------
    def start_sim(self, **cfg):
        argv = [sys.executable, SIMULATOR, "--port", str(SIM_PORT), "--api-key", API_KEY,
                "--webhook-url", webhook_url(), "--quiet"]
        for k, v in cfg.items():
            flag = "--" + k.replace("_", "-")
            if isinstance(v, bool):
                argv += [flag] if v else []
            else:
                argv += [flag, str(v)]
        self.spawn("sim", argv)
        if not wait_for(lambda: port_open(SIM_PORT), 10):
            raise RuntimeError("simulator did not start\n" + self.tail("sim"))

    def sim_url(self, path):
        return "http://127.0.0.1:%d%s" % (SIM_PORT, path)

    def sim_stats(self):
        return http_json("GET", self.sim_url("/_sim/stats"))[1]

    def sim_config(self, **kw):
        st, body = http_json("POST", self.sim_url("/_sim/config"), kw)
        if st != 200:
            raise RuntimeError("sim config %r: %s" % (kw, body))
        return body

    def sim_api(self, method, path, body=None):
        return http_json(method, self.sim_url("/api/v2" + path), body,
                         {"X-Phantombuster-Key": API_KEY})

    # ---- nginx --------------------------------------------------------------
    def start_nginx(self, idx=0, port=None, workers=2, extra=""):
        port = port or NGINX_PORTS[idx]
        prefix = os.path.join(self.dir, "nginx-%d" % idx)
        os.makedirs(os.path.join(prefix, "conf"), exist_ok=True)
        os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
        conf = os.path.join(prefix, "conf", "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF % {"module": MODULE, "prefix": prefix, "workers": workers,
                                  "port": port, "redis": REDIS_PORT, "queue": QUEUE,
                                  "secret": SECRET, "extra": extra})
        name = "nginx-%d" % idx
        self.spawn(name, [NGINX, "-p", prefix + "/", "-c", conf, "-e", os.path.join(prefix, "logs", "error.log")])
        self.logs[name] = os.path.join(prefix, "logs", "error.log")
        ok = wait_for(lambda: port_open(port) or self.procs[name].poll() is not None, 10)
        if not ok or self.procs[name].poll() is not None:
            raise RuntimeError("nginx %d did not start\n%s" % (idx, self.tail(name)))
        return port

    def nginx_results(self, idx=0):
        """Counter of $phantombuster_result over the webhook requests in nginx idx's access log."""
        import collections
        import re
        path = os.path.join(self.dir, "nginx-%d" % idx, "logs", "access.log")
        out = collections.Counter()
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    m = re.search(r'"POST /webhooks/phantombuster" (\d+) result="([^"]*)"', line)
                    if m:
                        out[m.group(2)] += 1
        return out

    def stop_nginx(self, idx=0):
        return self.stop("nginx-%d" % idx, signal.SIGQUIT)

    # ---- worker -------------------------------------------------------------
    def worker_env(self, **extra):
        env = {
            "REDIS_URL": "redis://127.0.0.1:%d/0" % REDIS_PORT,
            "AUDIT_DATABASE_URL": self.audit_url,
            "PHANTOMBUSTER_API_KEY": API_KEY,
            "PHANTOMBUSTER_API_URL": "http://127.0.0.1:%d" % SIM_PORT,
            "PB_WEBHOOK_QUEUE": QUEUE,
            "SEQUENTIAL_QUEUE_TIMEOUT": "60",
            "PB_MAX_RUNNING": "1",
            "PB_LOG_LEVEL": "debug",
        }
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start_worker(self, name="worker-1", **extra):
        env = self.worker_env(PB_WORKER_ID="e2e-" + name, **extra)
        p = self.spawn(name, [WORKER], env)
        time.sleep(0.2)
        if p.poll() is not None:
            raise RuntimeError("%s exited at once (%s)\n%s" % (name, p.returncode, self.tail(name)))
        return p

    def pbctl(self, *args, check=True):
        r = subprocess.run([PBCTL] + [str(a) for a in args], capture_output=True, text=True,
                           env=dict(os.environ, **self.worker_env()), timeout=30, cwd=self.dir)
        if check and r.returncode != 0:
            raise RuntimeError("pbctl %s failed (%d): %s %s" % (" ".join(map(str, args)), r.returncode,
                                                                r.stdout.strip(), r.stderr.strip()))
        return r

    def enqueue(self, job_id, company, agent=AGENT):
        arg = json.dumps({"company": company, "job": job_id})
        return self.pbctl("enqueue", "--agent", agent, "--argument", arg, "--job-id", job_id)

    # ---- audit table --------------------------------------------------------
    def prepare_db(self):
        if self.db != "postgresql":
            return
        sh = os.path.join(ROOT, "scripts", "postgres.sh")
        r = subprocess.run([sh, "start", str(PG_PORT)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("postgres.sh start failed: %s" % r.stderr.strip())
        for sql in ("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.pg_db,
                    "CREATE DATABASE %s" % self.pg_db):
            r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres",
                                "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("psql: %s" % r.stderr.strip())

    def audit_rows(self):
        cols = "id, job_id, agent_id, status, phantom_container_id, webhook_payload, metadata, created_at, updated_at"
        if self.db == "postgresql":
            sql = ("SELECT coalesce(json_agg(t ORDER BY id), '[]') FROM (SELECT %s FROM service_audit_logs) t" % cols)
            r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres",
                                "-d", self.pg_db, "-qAt", "-c", sql], capture_output=True, text=True)
            if r.returncode != 0:
                return []
            rows = json.loads(r.stdout or "[]")
            for row in rows:
                for k in ("webhook_payload", "metadata"):
                    if isinstance(row.get(k), str):
                        row[k] = _maybe_json(row[k])
            return rows
        if not os.path.exists(self.sqlite_path):
            return []
        try:
            con = sqlite3.connect("file:%s?mode=ro" % self.sqlite_path, uri=True, timeout=5)
            con.row_factory = sqlite3.Row
            rows = [dict(r) for r in con.execute("SELECT %s FROM service_audit_logs ORDER BY id" % cols)]
            con.close()
        except sqlite3.Error:
            return []
        for row in rows:
            for k in ("webhook_payload", "metadata"):
                row[k] = _maybe_json(row[k])
        return rows

    def wait_terminal(self, job_ids, timeout):
        """Waits until every job has a terminal audit row; returns {job_id: row}."""
        want = set(job_ids)

        def done():
            rows = {r["job_id"]: r for r in self.audit_rows() if r["job_id"] in want}
            return rows if len(rows) == len(want) and all(r["status"] in TERMINAL for r in rows.values()) else None

        wait_for(done, timeout, 0.5)
        return {r["job_id"]: r for r in self.audit_rows() if r["job_id"] in want}


def _maybe_json(v):
    if isinstance(v, (bytes, str)):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


NGINX_CONF = """
load_module %(module)s;
user root;
master_process on;
daemon off;
worker_processes %(workers)d;
pid %(prefix)s/logs/nginx.pid;
error_log %(prefix)s/logs/error.log info;
events { worker_connections 512; }
http {
    # no query string in the log: it carries the secret
    log_format pb '$remote_addr [$time_iso8601] "$request_method $uri" $status '
                  'result="$phantombuster_result" container=$phantombuster_container_id';
    access_log %(prefix)s/logs/access.log pb;
    client_body_temp_path %(prefix)s/client_body;
    proxy_temp_path %(prefix)s/proxy;
    fastcgi_temp_path %(prefix)s/fastcgi;
    uwsgi_temp_path %(prefix)s/uwsgi;
    scgi_temp_path %(prefix)s/scgi;
    server {
        listen 127.0.0.1:%(port)d;
        location = /webhooks/phantombuster {
            phantombuster_webhook;
            phantombuster_redis 127.0.0.1:%(redis)d;
            phantombuster_queue %(queue)s;
            phantombuster_secret %(secret)s;
            phantombuster_redis_timeout 2s;
            phantombuster_dedupe 24h;
        }
        %(extra)s
    }
}
"""
