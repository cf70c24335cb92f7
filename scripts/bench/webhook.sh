# Section 1: the webhook endpoint (sourced by scripts/bench/run.sh).
#
# Contenders, each one nginx worker on CPU_SRV next to the one Redis:
#   module     ngx_http_phantombuster_module           (a)
#   plain      nginx `return 202` (reads and discards)  (b, the upper bound)
#   echo       nginx echo_read_request_body + 202       (b', when installed)
#   openresty  lua-nginx-module + lua-resty-redis + cjson (c)
#   nodedupe   the module with phantombuster_dedupe off (64 connections
#              only): what the dedupe marker costs
# wrk on CPU_CLI, keep-alive, 16 and 64 connections, BENCH_DURATION s each,
# BENCH_ROUNDS interleaved rounds.  Per run: req/s, latency percentiles,
# nginx worker and Redis CPU per request (/proc/PID/stat), and for the
# pushing contenders the list length against the 2xx count.

WEBHOOK_PATH=/webhooks/phantombuster/profile_extraction
REDIS_TIMEOUT_S=${BENCH_REDIS_TIMEOUT_S:-2}

declare -A WH_PORT=([module]=8501 [plain]=8502 [openresty]=8503 [echo]=8504 [nodedupe]=8505)
declare -A WH_PREFIX=()
declare -A WH_PUSHES=([module]=1 [plain]=0 [openresty]=1 [echo]=0 [nodedupe]=1)

wh_url() { echo "http://127.0.0.1:${WH_PORT[$1]}$WEBHOOK_PATH?secret=$SECRET"; }

# Waits until the list stops growing (pushes of requests still in flight
# when wrk stopped), prints its length.
wh_settled_llen() {
    local a b i
    a=$(rcli LLEN "$QUEUE")
    for i in $(seq 20); do
        sleep 0.2
        b=$(rcli LLEN "$QUEUE")
        [ "$a" = "$b" ] && break
        a=$b
    done
    echo "$a"
}

# wh_measure CONTENDER CONNS ROUND
wh_measure() {
    local who=$1 conns=$2 round=$3 out w n0 n1 r0 r1 llen
    out=$B/wrk-$who-c$conns-r$round.txt
    rcli FLUSHALL >/dev/null
    w=$(nginx_worker "${WH_PREFIX[$who]}")
    [ -n "$w" ] || die "$who: nginx worker gone (see ${WH_PREFIX[$who]}/error.log)"
    local c0 c1 rd0 rd1
    c0=$(redis_stat total_commands_processed); rd0=$(redis_stat total_reads_processed)
    n0=$(cpu_us "$w"); r0=$(cpu_us "$REDIS_PID")
    run_wrk "$out" -t1 -c"$conns" -d"${BENCH_DURATION}s" --latency \
        -s "$BENCH/wrk/webhook.lua" "$(wh_url "$who")"
    n1=$(cpu_us "$w"); r1=$(cpu_us "$REDIS_PID")
    c1=$(redis_stat total_commands_processed); rd1=$(redis_stat total_reads_processed)
    llen=$(wh_settled_llen)
    local req issued non2xx dur
    req=$(bench_field "$out" requests)
    issued=$(bench_field "$out" issued)
    non2xx=$(bench_field "$out" non2xx)
    dur=$(bench_field "$out" duration_us)
    rec section=webhook contender="$who" conns="$conns" round="$round" \
        requests="$req" issued="$issued" non2xx="$non2xx" duration_us="$dur" \
        p50_us="$(bench_field "$out" p50_us)" p90_us="$(bench_field "$out" p90_us)" \
        p99_us="$(bench_field "$out" p99_us)" max_us="$(bench_field "$out" max_us)" \
        sockerr="$(( $(bench_field "$out" connect) + $(bench_field "$out" read) + $(bench_field "$out" write) + $(bench_field "$out" timeout) ))" \
        nginx_cpu_us="$((n1 - n0))" redis_cpu_us="$((r1 - r0))" \
        llen="$llen" pushes="${WH_PUSHES[$who]}" \
        redis_cmds=$((c1 - c0 - 2)) redis_reads=$((rd1 - rd0 - 2))
    log "  $who c$conns round $round: $(awk -v r="$req" -v d="$dur" 'BEGIN { printf "%.0f req/s", r / (d / 1e6) }')," \
        "p99 $(bench_field "$out" p99_us) us, non-2xx $non2xx, list $llen"
}

bench_webhook() {
    log "== 1. webhook endpoint (${BENCH_DURATION}s per run, ${BENCH_ROUNDS} rounds)"
    local contenders=() who

    if [ -f "$MODULE_SO" ]; then
        contenders+=(module nodedupe)
    else
        note "NOT RUN: module not built ($MODULE_SO missing): contender (a) skipped"
    fi
    contenders+=(plain)
    if [ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]; then
        contenders+=(echo)
    else
        note "not run: plain nginx with echo_read_request_body (libnginx-mod-http-echo not installed); plain = return 202"
    fi
    if [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] \
        && [ -f /usr/share/lua/5.1/nginx/redis.lua ]; then
        contenders+=(openresty)
    else
        note "NOT RUN: OpenResty contender (libnginx-mod-http-lua / lua-nginx-redis missing)"
    fi

    for who in "${contenders[@]}"; do
        case $who in
        module) nginx_start module "${WH_PORT[$who]}" REDIS_TIMEOUT="${REDIS_TIMEOUT_S}s" DEDUPE=24h ;;
        nodedupe) nginx_start module@nodedupe "${WH_PORT[$who]}" REDIS_TIMEOUT="${REDIS_TIMEOUT_S}s" DEDUPE=off ;;
        *) nginx_start "$who" "${WH_PORT[$who]}" ;;
        esac
        WH_PREFIX[$who]=$NGINX_PREFIX
    done

    # Smoke test and warm-up: one request must be answered 202 (and pushed),
    # then 2 s of load to warm connections, pools and the JIT.
    for who in "${contenders[@]}"; do
        local code
        rcli FLUSHALL >/dev/null
        code=$(curl -s -o "$B/smoke-$who.txt" -w '%{http_code}' \
            -H 'Content-Type: application/json' \
            --data-binary @"$ROOT/t/data/webhook-payload.json" "$(wh_url "$who")")
        if [ "$code" != 202 ]; then
            cat "$B/smoke-$who.txt" >&2
            die "$who answered $code to the sample webhook (see ${WH_PREFIX[$who]}/error.log)"
        fi
        if [ "${WH_PUSHES[$who]}" = 1 ] && [ "$(rcli LLEN "$QUEUE")" != 1 ]; then
            die "$who answered 202 but pushed nothing to $QUEUE"
        fi
        run_wrk "$B/wrk-$who-warmup.txt" -t1 -c64 -d2s -s "$BENCH/wrk/webhook.lua" "$(wh_url "$who")"
    done

    local round conns
    for round in $(seq "$BENCH_ROUNDS"); do
        for conns in 16 64; do
            for who in "${contenders[@]}"; do
                [ "$who" = nodedupe ] && [ "$conns" != 64 ] && continue
                wh_measure "$who" "$conns" "$round"
            done
        done
    done

    # Every contender except the module is done.
    for who in "${contenders[@]}"; do
        [ "$who" = module ] && continue
        nginx_stop "${WH_PREFIX[$who]}"
    done

    if [ -f "$MODULE_SO" ]; then
        case $BENCH_PROFILE in
        always) wh_profile ;;
        auto)
            if ! python3 "$HERE/report.py" --records "$RECORDS" --check-webhook >"$B/targets.txt"; then
                log "module misses a webhook target ($(tr '\n' ';' <"$B/targets.txt")): profiling it"
                wh_profile
            fi
            ;;
        esac
        wh_slow_redis
    fi
}

# perf profile of the module's nginx worker (DWARF call graphs: Debian's
# nginx has no frame pointers) and of redis-server during a c64 run.
wh_profile() {
    if ! command -v perf >/dev/null; then
        note "no profile: perf not installed (linux-perf)"
        return 0
    fi
    local w out pn pr n0 n1 r0 r1
    log "== 1c. profile of the module at 64 connections (perf)"
    rcli FLUSHALL >/dev/null
    w=$(nginx_worker "${WH_PREFIX[module]}")
    out=$B/wrk-module-profile.txt
    n0=$(cpu_us "$w"); r0=$(cpu_us "$REDIS_PID")
    perf record -q -F 499 --call-graph dwarf,16384 -e cpu-clock -p "$w" \
        -o "$B/perf-nginx.data" -- sleep 5 >/dev/null 2>&1 &
    pn=$!
    perf record -q -F 999 -g -e cpu-clock -p "$REDIS_PID" \
        -o "$B/perf-redis.data" -- sleep 5 >/dev/null 2>&1 &
    pr=$!
    run_wrk "$out" -t1 -c64 -d7s --latency -s "$BENCH/wrk/webhook.lua" "$(wh_url module)"
    n1=$(cpu_us "$w"); r1=$(cpu_us "$REDIS_PID")
    wait "$pn" "$pr" 2>/dev/null || true
    if [ ! -s "$B/perf-nginx.data" ]; then
        note "no profile: perf record failed (perf_event_paranoid? see perf's output)"
        return 0
    fi
    {
        echo "## nginx worker: self time by shared object"
        perf report -i "$B/perf-nginx.data" --stdio --no-children --sort dso -g none 2>/dev/null \
            | grep '%' | head -12 || true
        echo "## nginx worker: inclusive time by function"
        perf report -i "$B/perf-nginx.data" --stdio --children --sort symbol -g none 2>/dev/null \
            | grep '%' | grep -v '\[k\]' | grep -v ' 0x0000' \
            | grep -E 'phantombuster|pb_|json_|redis|RAND_bytes|ngx_http_write_filter|writev|recv|ngx_http_read_client_request_body|ngx_http_get_indexed_variable|ngx_http_process_request|malloc|free' \
            | head -40 || true
        echo "## nginx worker: self time by function"
        perf report -i "$B/perf-nginx.data" --stdio --no-children --sort dso,symbol -g none 2>/dev/null \
            | grep '%' | head -25 || true
        echo "## redis-server: self time by function"
        perf report -i "$B/perf-redis.data" --stdio --no-children --sort dso,symbol -g none 2>/dev/null \
            | grep '%' | head -20 || true
    } >"$B/profile.txt"
    rec section=profile requests="$(bench_field "$out" requests)" \
        duration_us="$(bench_field "$out" duration_us)" \
        nginx_cpu_us="$((n1 - n0))" redis_cpu_us="$((r1 - r0))" file="$B/profile.txt"
}

# The module against a slow Redis, then a stopped one: latency must stay
# bounded by phantombuster_redis_timeout.
wh_slow_redis() {
    local out loop_pid
    log "== 1b. module with a slow / stopped Redis (timeout ${REDIS_TIMEOUT_S}s)"

    # Slow: Redis blocks for 0.5 s (DEBUG SLEEP) every second.
    rcli FLUSHALL >/dev/null
    out=$B/wrk-module-slow.txt
    ( while :; do rcli DEBUG SLEEP 0.5 >/dev/null 2>&1; sleep 0.5; done ) &
    loop_pid=$!
    BG_PIDS+=("$loop_pid")
    run_wrk "$out" -t1 -c16 -d6s --latency -s "$BENCH/wrk/webhook.lua" "$(wh_url module)"
    kill "$loop_pid" 2>/dev/null || true; wait "$loop_pid" 2>/dev/null || true
    sleep 0.6
    rec section=slow scenario=debug_sleep conns=16 timeout_us=$((REDIS_TIMEOUT_S * 1000000)) \
        requests="$(bench_field "$out" requests)" non2xx="$(bench_field "$out" non2xx)" \
        issued="$(bench_field "$out" issued)" \
        p50_us="$(bench_field "$out" p50_us)" p99_us="$(bench_field "$out" p99_us)" \
        max_us="$(bench_field "$out" max_us)" llen="$(wh_settled_llen)"

    # Stopped: SIGSTOP for the whole run; every answer must come by the timeout.
    rcli FLUSHALL >/dev/null
    out=$B/wrk-module-stopped.txt
    kill -STOP "$REDIS_PID"
    run_wrk "$out" -t1 -c16 -d6s --latency -s "$BENCH/wrk/webhook.lua" "$(wh_url module)"
    kill -CONT "$REDIS_PID"
    sleep 0.5
    local after=$B/wrk-module-recovered.txt
    rcli FLUSHALL >/dev/null
    run_wrk "$after" -t1 -c16 -d2s --latency -s "$BENCH/wrk/webhook.lua" "$(wh_url module)"
    rec section=slow scenario=sigstop conns=16 timeout_us=$((REDIS_TIMEOUT_S * 1000000)) \
        requests="$(bench_field "$out" requests)" non2xx="$(bench_field "$out" non2xx)" \
        issued="$(bench_field "$out" issued)" \
        p50_us="$(bench_field "$out" p50_us)" p99_us="$(bench_field "$out" p99_us)" \
        max_us="$(bench_field "$out" max_us)" \
        after_requests="$(bench_field "$after" requests)" after_non2xx="$(bench_field "$after" non2xx)"
}
