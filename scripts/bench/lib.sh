# Shared helpers of the benchmark scripts (sourced by scripts/bench/run.sh).
# Everything runs on loopback: nginx instances on 8501-8509, the simulator
# on 8515, PostgreSQL on 8510 (scripts/postgres.sh), a dedicated Redis on
# 6397.  Every process started here is recorded and stopped by bench_cleanup.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH=$ROOT/bench
B=$ROOT/build/bench                 # run-time files (configs, logs, pids)
RECORDS=$B/records.txt              # one "REC k=v ..." line per measurement
REDIS_PORT=${BENCH_REDIS_PORT:-6397}
PG_PORT=${BENCH_PG_PORT:-8510}
SIM_PORT=${BENCH_SIM_PORT:-8515}
SECRET=bench-$(date +%s)-secret
QUEUE=phantombuster:webhooks
NGINX=${NGINX:-/usr/sbin/nginx}
MODULE_SO=$ROOT/build/nginx/ngx_http_phantombuster_module.so
WORKER_BIN=$ROOT/build/worker/pb-worker
PBCTL_BIN=$ROOT/build/worker/pbctl
CLK_TCK=$(getconf CLK_TCK)

# CPU 0 for the servers (nginx, Redis, databases), CPU 1 for the load
# generator and the clients.  On a one-CPU machine both share CPU 0.
if [ "$(nproc)" -ge 2 ]; then CPU_SRV=0; CPU_CLI=1; else CPU_SRV=0; CPU_CLI=0; fi
on_srv() { taskset -c "$CPU_SRV" "$@"; }
on_cli() { taskset -c "$CPU_CLI" "$@"; }

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: FATAL: %s\n' "$*" >&2; exit 1; }

# rec k=v k=v ...: one measurement for the report.
rec() { printf 'REC %s\n' "$*" >>"$RECORDS"; }
# note TEXT: a line for the report's notes (NOT RUN, targets missed, ...).
note() { printf 'NOTE %s\n' "$*" >>"$RECORDS"; log "$*"; }

# ---- process bookkeeping ---------------------------------------------------

BG_PIDS=()          # plain background processes we started
NGINX_PREFIXES=()   # nginx instances we started (their -p prefix)
PG_STARTED=0

bench_cleanup() {
    local p pid
    set +e
    for p in "${NGINX_PREFIXES[@]}"; do
        nginx_stop "$p"
    done
    for pid in "${BG_PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null
        kill "$pid" 2>/dev/null
    done
    redis_stop
    if [ "$PG_STARTED" = 1 ]; then
        "$ROOT/scripts/postgres.sh" stop "$PG_PORT" >/dev/null 2>&1
        PG_STARTED=0
    fi
    set -e
    return 0
}

# bg CMD...: start CMD in the background, remember its pid in BG_PID.
bg() {
    "$@" &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
}

# stop_pid PID: TERM, wait up to 5 s, then KILL.  Only pids we started.
stop_pid() {
    local pid=$1 i
    kill -CONT "$pid" 2>/dev/null
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

# ---- /proc readings ----------------------------------------------------------

# CPU time (utime + stime) of PID in microseconds.
cpu_us() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    stat=${stat##*) }          # drop "pid (comm) ", comm may hold spaces
    set -- $stat
    # fields after comm start at 3 (state): utime is 14, stime 15
    echo $(( (${12} + ${13}) * 1000000 / CLK_TCK ))
}

# Resident set size of PID in KiB.
rss_kb() {
    awk '/^VmRSS:/ { print $2; found = 1 } END { if (!found) print 0 }' \
        "/proc/$1/status" 2>/dev/null || echo 0
}

# ---- Redis -------------------------------------------------------------------

rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# port_busy PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

redis_start() {
    mkdir -p "$B/redis"
    if port_busy "$REDIS_PORT"; then
        # 6397 is ours by convention, but not if someone else took it: use
        # the spare port of the bench range rather than touch their server.
        if [ -z "${BENCH_REDIS_PORT:-}" ] && ! port_busy 8511; then
            note "Redis port $REDIS_PORT is in use by another process: bench Redis on 8511 instead"
            REDIS_PORT=8511
        else
            die "something already listens on Redis port $REDIS_PORT (BENCH_REDIS_PORT to change)"
        fi
    fi
    on_srv redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
        --save '' --appendonly no --daemonize yes \
        --dir "$B/redis" --pidfile "$B/redis/redis.pid" \
        --logfile "$B/redis/redis.log" --enable-debug-command local \
        --maxclients 10000 \
        || die "redis-server did not start"
    local i
    for i in $(seq 100); do
        rcli ping 2>/dev/null | grep -q PONG && break
        sleep 0.05
    done
    rcli ping 2>/dev/null | grep -q PONG || die "redis-server on $REDIS_PORT not answering"
    REDIS_PID=$(cat "$B/redis/redis.pid")
}

redis_stop() {
    local pid
    [ -f "$B/redis/redis.pid" ] || return 0
    pid=$(cat "$B/redis/redis.pid")
    kill -CONT "$pid" 2>/dev/null
    rcli shutdown nosave >/dev/null 2>&1 || true
    stop_pid "$pid"
    rm -f "$B/redis/redis.pid"
}

# ---- nginx -------------------------------------------------------------------

# render TEMPLATE OUT [KEY=VALUE ...]: fills @KEY@ placeholders.
render() {
    local in=$1 out=$2 kv key val script=()
    shift 2
    for kv in "$@"; do
        key=${kv%%=*}
        val=${kv#*=}
        val=${val//\\/\\\\}
        val=${val//|/\\|}
        val=${val//&/\\&}
        script+=(-e "s|@$key@|$val|g")
    done
    sed "${script[@]}" "$in" >"$out"
    if grep -q '@[A-Z_]*@' "$out"; then
        die "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out" | head -1)"
    fi
}

# nginx_start NAME[@INSTANCE] PORT [KEY=VALUE ...]: renders
# bench/nginx/NAME.conf.in under build/bench/nginx-INSTANCE (default NAME)
# and starts it on CPU_SRV.  Sets NGINX_PREFIX.
nginx_start() {
    local name=${1%%@*} instance=${1#*@} port=$2 prefix
    shift 2
    prefix=$B/nginx-$instance
    rm -rf "$prefix"
    mkdir -p "$prefix/logs"
    local subst=(PREFIX="$prefix" PORT="$port" BENCH="$BENCH" ROOT="$ROOT"
                 REDIS_PORT="$REDIS_PORT" SECRET="$SECRET" QUEUE="$QUEUE"
                 MODULE_SO="$MODULE_SO" "$@")
    render "$BENCH/nginx/common.conf.in" "$prefix/common.conf" "${subst[@]}"
    render "$BENCH/nginx/http-common.conf.in" "$prefix/http-common.conf" "${subst[@]}"
    render "$BENCH/nginx/$name.conf.in" "$prefix/nginx.conf" "${subst[@]}"
    on_srv "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -t -q \
        || die "nginx config for $name does not load (see above)"
    on_srv "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
        || die "nginx $name did not start (see $prefix/error.log)"
    NGINX_PREFIXES+=("$prefix")
    NGINX_PREFIX=$prefix
    local i
    for i in $(seq 100); do
        [ -n "$(nginx_worker "$prefix")" ] && return 0
        sleep 0.05
    done
    die "nginx $name: no worker process (see $prefix/error.log)"
}

nginx_master() { cat "$1/nginx.pid" 2>/dev/null; }

# The (single) worker process of the nginx under prefix $1.
nginx_worker() {
    local m
    m=$(nginx_master "$1") || return 0
    [ -n "$m" ] || return 0
    ps --ppid "$m" -o pid=,args= 2>/dev/null | awk '/worker process/ { print $1; exit }'
}

nginx_stop() {
    local prefix=$1 m i
    m=$(nginx_master "$prefix")
    [ -n "$m" ] || return 0
    kill -QUIT "$m" 2>/dev/null
    for i in $(seq 50); do
        kill -0 "$m" 2>/dev/null || break
        sleep 0.1
    done
    kill -TERM "$m" 2>/dev/null || true
    rm -f "$prefix/nginx.pid"
}

# ---- wrk ---------------------------------------------------------------------

# run_wrk OUTFILE wrk-args...: wrk on CPU_CLI with the webhook script; the
# BENCH line of its done() is left in OUTFILE.
run_wrk() {
    local out=$1
    shift
    on_cli wrk --timeout 10s "$@" >"$out" 2>&1 || true
    grep -q '^BENCH ' "$out" || { cat "$out" >&2; die "wrk gave no result line"; }
}

# bench_field FILE KEY: the value of KEY= on the BENCH line of FILE.
bench_field() {
    sed -n 's/^BENCH .*\b'"$2"'=\([0-9.]*\).*/\1/p' "$1" | head -1
}

# ---- the PhantomBuster simulator ---------------------------------------------

SIM_PID=

# sim_start [flags...]: scripts/pb-simulator.py on SIM_PORT, on CPU_CLI.
sim_start() {
    sim_stop
    taskset -c "$CPU_CLI" python3 "$ROOT/scripts/pb-simulator.py" --port "$SIM_PORT" --quiet \
        --api-key bench-api-key "$@" 2>>"$B/simulator.log" &
    SIM_PID=$!
    BG_PIDS+=("$SIM_PID")
    local i
    for i in $(seq 100); do
        curl -fs "http://127.0.0.1:$SIM_PORT/_sim/stats" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "simulator did not start on $SIM_PORT (see $B/simulator.log)"
}

sim_stop() {
    [ -n "$SIM_PID" ] || return 0
    stop_pid "$SIM_PID"
    SIM_PID=
}

sim_stats() { curl -fs "http://127.0.0.1:$SIM_PORT/_sim/stats"; }

# json_get KEY...: reads JSON on stdin, prints the value at that path.
json_get() {
    python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1:]:
    v = v.get(k, 0) if isinstance(v, dict) else 0
print(v if not isinstance(v, bool) else int(v))' "$@"
}

# redis_stat FIELD: a counter of INFO stats (total_commands_processed,
# total_reads_processed, ...).
redis_stat() {
    rcli INFO stats | tr -d '\r' | sed -n "s/^$1:\([0-9]*\)\$/\1/p"
}

# redis_used_memory: INFO memory's used_memory, bytes.
redis_used_memory() {
    rcli INFO memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)$/\1/p'
}

# The enqueue script of docs/redis-layout.md (what pbctl enqueue runs).
enqueue_script() {
    awk '/<!-- enqueue-script -->/ { f = 1; next }
         f && /^```lua/ { g = 1; next }
         g && /^```/ { exit }
         g' "$ROOT/docs/redis-layout.md"
}
