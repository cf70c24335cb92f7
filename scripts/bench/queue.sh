# Section 2: queue throughput (sourced by scripts/bench/run.sh).
#
# BENCH_QUEUE_N webhook envelopes (module format, containers no job owns,
# so each becomes one audit row "container:<id>") are pushed with
# redis-cli --pipe while pb-worker is stopped; then pb-worker is started and
# timed until it has written every row (its audit_written counter), and
# the rows are counted in service_audit_logs.  Compared with the same
# rows INSERTed by sqlite3 / psql in one transaction.  pb-worker runs on
# CPU_CLI, Redis and the database on CPU_SRV.  A backend that has not
# finished after BENCH_QUEUE_MAX_S seconds is stopped there and its rate
# taken over the rows written so far (said so in the report).

BENCH_QUEUE_MAX_S=${BENCH_QUEUE_MAX_S:-45}
Q_DIR=$B/queue

# The worker's environment: "${Q_ENV[@]}" AUDIT_DATABASE_URL=... CMD &
# (a plain command, so that $! is the worker itself, not a subshell).
q_env() {
    Q_ENV=(env REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
           PHANTOMBUSTER_API_KEY=bench-api-key
           PHANTOMBUSTER_API_URL="http://127.0.0.1:$SIM_PORT"
           PB_WEBHOOK_QUEUE="$QUEUE" PB_WORKER_ID=bench-queue PB_LOG_LEVEL=warn)
}

pg_up() {
    if [ "$PG_STARTED" = 1 ]; then return 0; fi
    if ! command -v psql >/dev/null; then return 1; fi
    [ -x "$ROOT/scripts/postgres.sh" ] || return 1
    if "$ROOT/scripts/postgres.sh" status "$PG_PORT" >/dev/null 2>&1; then
        note "PostgreSQL on $PG_PORT was already running: used as is"
    else
        "$ROOT/scripts/postgres.sh" start "$PG_PORT" >/dev/null || return 1
        PG_STARTED=1
    fi
    # the server and its backends on the server CPU
    local pm
    pm=$(head -1 "/tmp/pb/pg-$PG_PORT/data/postmaster.pid" 2>/dev/null) || return 0
    taskset -pc "$CPU_SRV" "$pm" >/dev/null 2>&1 || true
    for p in $(ps --ppid "$pm" -o pid=); do taskset -pc "$CPU_SRV" "$p" >/dev/null 2>&1 || true; done
}

pg_sql() { # pg_sql DB SQL
    psql -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" -v ON_ERROR_STOP=1 -qAtc "$2"
}

pg_fresh_db() {
    pg_sql postgres "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
    pg_sql postgres "CREATE DATABASE $1" >/dev/null
}

# q_rows BACKEND TARGET: rows in service_audit_logs (0 when not there yet).
q_rows() {
    local n
    case $1 in
    sqlite) n=$(sqlite3 "$2" "SELECT count(*) FROM service_audit_logs" 2>/dev/null) || n=0 ;;
    postgresql) n=$(pg_sql "$2" "SELECT count(*) FROM service_audit_logs" 2>/dev/null) || n=0 ;;
    esac
    echo "${n:-0}"
}

# q_migrate BACKEND URL TARGET: lets pb-worker create its table (it migrates
# when it first opens the database, i.e. at its first audit row: one
# envelope is fed to it), then empties the table, so that migrations are
# not part of the timing.
q_migrate() {
    local pid i
    rcli FLUSHALL >/dev/null
    python3 "$HERE/gen.py" envelopes 1 "$QUEUE" 1 | rcli --pipe >/dev/null
    q_env
    "${Q_ENV[@]}" AUDIT_DATABASE_URL="$2" "$WORKER_BIN" 2>>"$Q_DIR/worker-$1.log" &
    pid=$!
    BG_PIDS+=("$pid")
    for i in $(seq 100); do
        [ "$(q_rows "$1" "$3")" -ge 1 ] && break
        sleep 0.1
    done
    stop_pid "$pid"
    [ "$(q_rows "$1" "$3")" -ge 1 ] || die "pb-worker did not create service_audit_logs ($1, see $Q_DIR/worker-$1.log)"
    case $1 in
    sqlite) sqlite3 "$3" "DELETE FROM service_audit_logs" ;;
    postgresql) pg_sql "$3" "DELETE FROM service_audit_logs" ;;
    esac
    rcli FLUSHALL >/dev/null
}

q_drain() {
    local backend=$1 url=$2 target=$3 n=$BENCH_QUEUE_N
    local pid t0 t1 rows w0 w1 r0 r1 pushed

    q_migrate "$backend" "$url" "$target"
    rcli FLUSHALL >/dev/null
    local p0 p1
    p0=$(date +%s%N)
    python3 "$HERE/gen.py" envelopes "$n" "$QUEUE" | rcli --pipe >"$Q_DIR/pipe.log" 2>&1 \
        || die "redis-cli --pipe failed (see $Q_DIR/pipe.log)"
    p1=$(date +%s%N)
    pushed=$(rcli LLEN "$QUEUE")
    [ "$pushed" = "$n" ] || die "pushed $pushed envelopes, expected $n"

    r0=$(cpu_us "$REDIS_PID")
    t0=$(date +%s%N)
    q_env
    "${Q_ENV[@]}" AUDIT_DATABASE_URL="$url" taskset -c "$CPU_CLI" "$WORKER_BIN" \
        2>>"$Q_DIR/worker-$backend.log" &
    pid=$!
    BG_PIDS+=("$pid")
    # The end: the worker's audit_written counter (bumped in Redis right
    # after each commit) reaching N, polled every 50 ms; a redis-cli call
    # costs far less than counting rows in the database, which a poll that
    # fine would slow the drain with (the rows are counted once at the end).
    local capped=0 written
    while :; do
        sleep 0.05
        written=$(rcli HGET phantombuster:metrics audit_written)
        [ "${written:-0}" -ge "$n" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -5 "$Q_DIR/worker-$backend.log" >&2
            die "pb-worker exited during the drain ($backend)"
        fi
        if [ $(( ($(date +%s%N) - t0) / 1000000000 )) -ge "$BENCH_QUEUE_MAX_S" ]; then
            capped=1
            break
        fi
    done
    t1=$(date +%s%N)
    w1=$(cpu_us "$pid"); r1=$(cpu_us "$REDIS_PID")
    stop_pid "$pid"
    rows=$(q_rows "$backend" "$target")
    rec section=queue kind=worker backend="$backend" n="$n" rows="$rows" capped="$capped" \
        elapsed_us=$(( (t1 - t0) / 1000 )) push_us=$(( (p1 - p0) / 1000 )) \
        worker_cpu_us="$w1" redis_cpu_us=$((r1 - r0)) left_in_queue="$(rcli LLEN "$QUEUE")"
    if [ "$capped" = 1 ]; then
        note "queue ($backend): pb-worker stopped after ${BENCH_QUEUE_MAX_S}s with $rows of $n rows written; rate measured over those"
    fi
    log "  $backend: pb-worker wrote $rows rows in $(( (t1 - t0) / 1000000 )) ms"
}

q_raw() {
    local backend=$1 url=$2 target=$3 n=$BENCH_QUEUE_N sql t0 t1 rows
    sql=$Q_DIR/inserts-$backend.sql
    python3 "$HERE/gen.py" sql "$backend" "$n" >"$sql"
    q_migrate "$backend" "$url" "$target"
    t0=$(date +%s%N)
    case $backend in
    sqlite) on_cli sqlite3 "$target" <"$sql" >"$Q_DIR/raw-$backend.log" 2>&1 ;;
    postgresql) on_cli psql -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$target" \
                    -v ON_ERROR_STOP=1 -q -f "$sql" >"$Q_DIR/raw-$backend.log" 2>&1 ;;
    esac || die "raw inserts failed ($backend, see $Q_DIR/raw-$backend.log)"
    t1=$(date +%s%N)
    rows=$(q_rows "$backend" "$target")
    [ "$rows" = "$n" ] || die "raw inserts: $rows rows, expected $n ($backend)"
    rec section=queue kind=raw backend="$backend" n="$n" rows="$rows" elapsed_us=$(( (t1 - t0) / 1000 ))
    log "  $backend: raw inserts of $n rows in $(( (t1 - t0) / 1000000 )) ms"
    rm -f "$sql"
}

# q_profile: why the drain is slow.  A separate short drain into SQLite
# (so the measured one is not slowed by perf): pb-worker sampled with DWARF
# call graphs, Redis' per-command counters divided by the rows written.
q_profile() {
    if ! command -v perf >/dev/null; then
        note "no worker profile: perf not installed (linux-perf)"
        return 0
    fi
    local db=$Q_DIR/profile.db wpid rows
    log "== 2b. profile of the drain (pb-worker, SQLite)"
    q_migrate sqlite "sqlite:$db" "$db"
    python3 "$HERE/gen.py" envelopes 20000 "$QUEUE" | rcli --pipe >/dev/null
    rcli CONFIG RESETSTAT >/dev/null
    q_env
    "${Q_ENV[@]}" AUDIT_DATABASE_URL="sqlite:$db" taskset -c "$CPU_CLI" "$WORKER_BIN" \
        2>>"$Q_DIR/worker-profile.log" &
    wpid=$!
    BG_PIDS+=("$wpid")
    sleep 1
    perf record -q -F 499 --call-graph dwarf,16384 -e cpu-clock -p "$wpid" \
        -o "$B/perf-worker.data" -- sleep 4 >/dev/null 2>&1 || true
    stop_pid "$wpid"
    rows=$(q_rows sqlite "$db")
    {
        echo "## pb-worker: self time by shared object"
        perf report -i "$B/perf-worker.data" --stdio --no-children --sort dso -g none 2>/dev/null \
            | grep '%' | head -10 || true
        echo "## pb-worker: inclusive time by function"
        perf report -i "$B/perf-worker.data" --stdio --children --sort symbol -g none 2>/dev/null \
            | grep '%' | grep -v '\[k\]' | grep -v ' 0x0000' \
            | grep -E 'pb_|turn|sqlite3_prepare|sqlite3_step|sqlite3VdbeHalt|CommitPhase|sqlite3WalFrames|redisGetReply|redisBufferWrite|redisBufferRead|json_|fdatasync|pwrite' \
            | head -30 || true
        echo "## redis: commands per row"
        rcli INFO commandstats | tr -d '\r' | grep '^cmdstat_' | sort -t= -k3 -rn | head -15 || true
    } >"$B/profile-worker.txt"
    rec section=wprofile rows="$rows" file="$B/profile-worker.txt"
}

bench_queue() {
    log "== 2. queue throughput ($BENCH_QUEUE_N envelopes)"
    if [ ! -x "$WORKER_BIN" ]; then
        note "NOT RUN: queue throughput (pb-worker not built: $WORKER_BIN)"
        return 0
    fi
    rm -rf "$Q_DIR"
    mkdir -p "$Q_DIR"

    q_raw sqlite "sqlite:$Q_DIR/raw.db" "$Q_DIR/raw.db"
    q_drain sqlite "sqlite:$Q_DIR/audit.db" "$Q_DIR/audit.db"

    if pg_up; then
        pg_fresh_db pb_bench_raw
        q_raw postgresql "postgresql://postgres@127.0.0.1:$PG_PORT/pb_bench_raw" pb_bench_raw
        pg_fresh_db pb_bench
        q_drain postgresql "postgresql://postgres@127.0.0.1:$PG_PORT/pb_bench" pb_bench
        pg_sql postgres "DROP DATABASE IF EXISTS pb_bench WITH (FORCE)" >/dev/null || true
        pg_sql postgres "DROP DATABASE IF EXISTS pb_bench_raw WITH (FORCE)" >/dev/null || true
    else
        note "NOT RUN: queue throughput with PostgreSQL (scripts/postgres.sh start $PG_PORT failed or psql missing)"
    fi
    if [ "$BENCH_PROFILE" = always ] || { [ "$BENCH_PROFILE" = auto ] \
            && ! python3 "$HERE/report.py" --records "$RECORDS" --check-queue >/dev/null; }; then
        q_profile
    fi
    rm -f "$Q_DIR"/*.db*
}
