# Section 4: API economy (sourced by scripts/bench/run.sh).
#
# The same BENCH_API_JOBS jobs against the simulator (plan.parallelism 1, its
# default rate limit of 60 calls per 60 s), three ways:
#   webhook   pb-worker, completions through the module (the product)
#   poll      pb-worker --poll, PB_POLL_INTERVAL=BENCH_API_POLL_S, no webhooks
#   naive     scripts/naive-launcher.py: every job launched at once, no queue
# Calls come from the simulator's GET /_sim/stats.  Runs last
# BENCH_API_RUN_S seconds: in poll mode the number of polls per job is about
# run time / poll interval, so it grows with real runs (minutes) unless the
# poll interval grows with them (and with it the latency to the next launch).

BENCH_API_JOBS=${BENCH_API_JOBS:-6}
BENCH_API_RUN_S=${BENCH_API_RUN_S:-2}
BENCH_API_POLL_S=${BENCH_API_POLL_S:-0.5}
A_PORT=8507
A_DIR=$B/api
AGENT_ID=4717388215573025

a_env() {
    A_ENV=(env REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
           AUDIT_DATABASE_URL="sqlite:$A_DIR/audit-$1.db"
           PHANTOMBUSTER_API_KEY=bench-api-key
           PHANTOMBUSTER_API_URL="http://127.0.0.1:$SIM_PORT"
           PB_WEBHOOK_QUEUE="$QUEUE" PB_WORKER_ID="bench-api-$1" PB_LOG_LEVEL=warn
           PB_MONITOR_INTERVAL=1 SEQUENTIAL_QUEUE_TIMEOUT=60
           PB_POLL_INTERVAL="$BENCH_API_POLL_S")
}

# a_worker_mode MODE(webhook|poll)
a_worker_mode() {
    local mode=$1 wpid i done=0 t0 t1 stats
    rcli FLUSHALL >/dev/null
    if [ "$mode" = webhook ]; then
        sim_start --parallelism 1 --run-seconds "$BENCH_API_RUN_S" \
            --webhook-url "http://127.0.0.1:$A_PORT/webhooks/phantombuster/api?secret=$SECRET"
    else
        sim_start --parallelism 1 --run-seconds "$BENCH_API_RUN_S"
    fi
    a_env "$mode"
    local flags=()
    [ "$mode" = poll ] && flags=(--poll)
    "${A_ENV[@]}" taskset -c "$CPU_CLI" "$WORKER_BIN" "${flags[@]}" 2>>"$A_DIR/worker-$mode.log" &
    wpid=$!
    BG_PIDS+=("$wpid")
    t0=$(date +%s%N)
    for i in $(seq "$BENCH_API_JOBS"); do
        "${A_ENV[@]}" "$PBCTL_BIN" enqueue --agent "$AGENT_ID" \
            --argument "{\"company\":\"Company $i\"}" --job-id "bench-$mode-$i" \
            >>"$A_DIR/pbctl.log" 2>&1 || die "pbctl enqueue failed (see $A_DIR/pbctl.log)"
    done
    local limit=$(( BENCH_API_JOBS * (${BENCH_API_RUN_S%.*} + 3) + 20 ))
    for i in $(seq $((limit * 5))); do
        done=$(rcli ZCARD phantombuster:jobs:done)
        [ "$done" -ge "$BENCH_API_JOBS" ] && break
        kill -0 "$wpid" 2>/dev/null || die "pb-worker ($mode) exited (see $A_DIR/worker-$mode.log)"
        sleep 0.2
    done
    t1=$(date +%s%N)
    stats=$(sim_stats)
    stop_pid "$wpid"
    sim_stop
    [ "$done" -ge "$BENCH_API_JOBS" ] \
        || note "api ($mode): only $done of $BENCH_API_JOBS jobs done in ${limit}s"
    local succeeded
    succeeded=$(rcli HGET phantombuster:metrics completed_success)
    rec section=api mode="$mode" jobs="$BENCH_API_JOBS" completed="$done" \
        succeeded="${succeeded:-0}" \
        calls="$(echo "$stats" | json_get api_calls)" \
        launch_calls="$(echo "$stats" | json_get calls 'POST /agents/launch')" \
        polls="$(echo "$stats" | json_get polls)" \
        refused="$(( $(echo "$stats" | json_get http_429_sent) + $(echo "$stats" | json_get launch_refusals) ))" \
        webhooks="$(echo "$stats" | json_get webhooks_sent)" elapsed_us=$(( (t1 - t0) / 1000 ))
    log "  $mode: $done jobs, $(echo "$stats" | json_get api_calls) API calls, $(echo "$stats" | json_get polls) polls"
}

a_naive() {
    local out stats launched
    sim_start --parallelism 1 --run-seconds "$BENCH_API_RUN_S"
    out=$(on_cli python3 "$ROOT/scripts/naive-launcher.py" --api-url "http://127.0.0.1:$SIM_PORT" \
        --api-key bench-api-key --agent "$AGENT_ID" --jobs "$BENCH_API_JOBS" --json) \
        || die "naive launcher failed"
    stats=$(sim_stats)
    sim_stop
    launched=$(echo "$out" | json_get launched_200)
    rec section=api mode=naive jobs="$BENCH_API_JOBS" completed="$launched" succeeded="$launched" \
        calls="$(echo "$stats" | json_get api_calls)" \
        launch_calls="$(echo "$stats" | json_get calls 'POST /agents/launch')" \
        polls="$(echo "$stats" | json_get polls)" \
        refused="$(( $(echo "$stats" | json_get http_429_sent) + $(echo "$stats" | json_get launch_refusals) ))" \
        webhooks=0 lost="$((BENCH_API_JOBS - launched))"
    log "  naive: $launched of $BENCH_API_JOBS jobs launched, $(echo "$stats" | json_get api_calls) API calls"
}

bench_api() {
    log "== 4. API economy ($BENCH_API_JOBS jobs, runs of ${BENCH_API_RUN_S}s, poll every ${BENCH_API_POLL_S}s)"
    rm -rf "$A_DIR"
    mkdir -p "$A_DIR"
    if [ ! -x "$WORKER_BIN" ] || [ ! -x "$PBCTL_BIN" ]; then
        note "NOT RUN: API economy of pb-worker (pb-worker / pbctl not built)"
    else
        if [ -f "$MODULE_SO" ]; then
            nginx_start module@api "$A_PORT" REDIS_TIMEOUT=2s DEDUPE=24h
            local prefix=$NGINX_PREFIX
            a_worker_mode webhook
            nginx_stop "$prefix"
        else
            note "NOT RUN: API economy in webhook mode (module not built)"
        fi
        a_worker_mode poll
    fi
    a_naive
}
