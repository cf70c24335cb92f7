# Section 3: memory (sourced by scripts/bench/run.sh).
#
# a) nginx worker RSS (the module) before and after BENCH_MEMORY_N webhooks:
#    wrk in 5-second chunks until N responses, RSS sampled after each
#    chunk; Redis is emptied between chunks (FLUSHALL), so only nginx holds
#    state across them.  The first chunk also gives Redis memory per queued
#    webhook (envelope + dedupe marker).
# b) Redis memory per pending job and pb-worker RSS with BENCH_MEMORY_N
#    pending jobs, enqueued with the documented enqueue script
#    (docs/redis-layout.md) through redis-cli --pipe while pb-worker runs
#    against the simulator (webhook mode, through the module).

BENCH_MEMORY_MAX_S=${BENCH_MEMORY_MAX_S:-120}
M_PORT=8506
M_DIR=$B/memory

bench_memory() {
    log "== 3. memory ($BENCH_MEMORY_N webhooks / pending jobs)"
    rm -rf "$M_DIR"
    mkdir -p "$M_DIR"
    if [ -f "$MODULE_SO" ]; then
        mem_nginx
    else
        note "NOT RUN: nginx RSS over $BENCH_MEMORY_N webhooks (module not built)"
    fi
    mem_jobs
    if [ -n "${M_PREFIX:-}" ]; then nginx_stop "$M_PREFIX"; M_PREFIX=; fi
}

mem_nginx() {
    local url w out total=0 chunk=0 before after t0 series="" req
    nginx_start module@memory "$M_PORT" REDIS_TIMEOUT=2s DEDUPE=24h
    M_PREFIX=$NGINX_PREFIX
    url="http://127.0.0.1:$M_PORT/webhooks/phantombuster/memory?secret=$SECRET"
    w=$(nginx_worker "$M_PREFIX")

    # warm-up: pools, buffers, the Redis connection, 2 s of the same load
    rcli FLUSHALL >/dev/null
    run_wrk "$M_DIR/warmup.txt" -t1 -c64 -d2s -s "$BENCH/wrk/webhook.lua" "$url"
    rcli FLUSHALL >/dev/null
    before=$(rss_kb "$w")

    t0=$(date +%s)
    while [ "$total" -lt "$BENCH_MEMORY_N" ]; do
        chunk=$((chunk + 1))
        local m0 m1 llen
        m0=$(redis_used_memory)
        out=$M_DIR/chunk-$chunk.txt
        run_wrk "$out" -t1 -c64 -d5s -s "$BENCH/wrk/webhook.lua" "$url" -- \
            "$((7200000000000000 + chunk * 10000000000))"
        req=$(bench_field "$out" requests)
        total=$((total + req))
        series="$series${series:+,}$(rss_kb "$w")"
        if [ "$chunk" = 1 ]; then
            sleep 0.3
            m1=$(redis_used_memory)
            llen=$(rcli LLEN "$QUEUE")
            rec section=memory what=redis_envelope n="$llen" before_b="$m0" after_b="$m1"
        fi
        rcli FLUSHALL >/dev/null
        if [ "$total" -lt "$BENCH_MEMORY_N" ] \
            && [ $(( $(date +%s) - t0 )) -ge "$BENCH_MEMORY_MAX_S" ]; then
            note "memory: stopped after ${BENCH_MEMORY_MAX_S}s with $total webhooks (fewer than $BENCH_MEMORY_N)"
            break
        fi
    done
    after=$(rss_kb "$w")
    [ "$(nginx_worker "$M_PREFIX")" = "$w" ] || die "module worker process changed during the memory run (crash? see $M_PREFIX/error.log)"
    rec section=memory what=nginx_rss n="$total" before_kb="$before" after_kb="$after" series_kb="$series"
    log "  nginx worker RSS $before KiB -> $after KiB over $total webhooks (per chunk: $series)"
}

mem_jobs() {
    local sha m0 m1 wpid r0 r1 r2 done0 done1 n=$BENCH_MEMORY_N
    if [ ! -x "$WORKER_BIN" ]; then
        note "NOT RUN: pb-worker RSS with $n pending jobs (pb-worker not built)"
        return 0
    fi
    if [ ! -f "$ROOT/docs/redis-layout.md" ] || [ -z "$(enqueue_script)" ]; then
        note "NOT RUN: pending jobs (no enqueue script in docs/redis-layout.md)"
        return 0
    fi

    rcli FLUSHALL >/dev/null
    local hook=""
    if [ -n "${M_PREFIX:-}" ]; then
        hook="http://127.0.0.1:$M_PORT/webhooks/phantombuster/memory?secret=$SECRET"
    fi
    sim_start --parallelism 1 --rate-limit 0 --run-seconds 0.05 --start-seconds 0.01 \
        --webhook-url "$hook"

    # the worker alone first: its RSS with an empty queue
    env REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
        AUDIT_DATABASE_URL="sqlite:$M_DIR/audit.db" \
        PHANTOMBUSTER_API_KEY=bench-api-key \
        PHANTOMBUSTER_API_URL="http://127.0.0.1:$SIM_PORT" \
        PB_WEBHOOK_QUEUE="$QUEUE" PB_WORKER_ID=bench-memory PB_LOG_LEVEL=warn \
        PB_API_CALLS_PER_MINUTE=0 PB_MONITOR_INTERVAL=1 \
        taskset -c "$CPU_CLI" "$WORKER_BIN" 2>>"$M_DIR/worker.log" &
    wpid=$!
    BG_PIDS+=("$wpid")
    sleep 2
    kill -0 "$wpid" 2>/dev/null || die "pb-worker exited (see $M_DIR/worker.log)"
    r0=$(rss_kb "$wpid")

    sha=$(rcli SCRIPT LOAD "$(enqueue_script)")
    m0=$(redis_used_memory)
    local e0 e1
    e0=$(date +%s%N)
    python3 "$HERE/gen.py" jobs "$n" "$sha" | rcli --pipe >"$M_DIR/pipe.log" 2>&1 \
        || die "enqueue through redis-cli --pipe failed (see $M_DIR/pipe.log)"
    e1=$(date +%s%N)
    grep -q 'errors: 0,' "$M_DIR/pipe.log" || die "enqueue errors (see $M_DIR/pipe.log)"
    # The enqueue rows of the audit log are not what this measures (the
    # worker would spend the run writing them): drop them, as if written.
    rcli DEL phantombuster:audit:outbox >/dev/null
    sleep 0.5
    m1=$(redis_used_memory)
    local pending
    pending=$(rcli ZCARD phantombuster:jobs:pending)
    r1=$(rss_kb "$wpid")
    done0=$(rcli ZCARD phantombuster:jobs:done)
    sleep 5
    done1=$(rcli ZCARD phantombuster:jobs:done)
    r2=$(rss_kb "$wpid")
    kill -0 "$wpid" 2>/dev/null || die "pb-worker exited with $n pending jobs (see $M_DIR/worker.log)"
    stop_pid "$wpid"
    sim_stop
    rec section=memory what=redis_job n="$n" before_b="$m0" after_b="$m1" pending="$pending" \
        enqueue_us=$(( (e1 - e0) / 1000 ))
    rec section=memory what=worker_rss n="$n" before_kb="$r0" after_kb="$r2" loaded_kb="$r1" \
        done_5s=$((done1 - done0)) pending="$pending"
    log "  Redis $(( (m1 - m0) / n )) bytes/pending job; pb-worker RSS $r0 -> $r2 KiB with $pending pending (completed $((done1 - done0)) jobs in 5 s)"
    rcli FLUSHALL >/dev/null
}
