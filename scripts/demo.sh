#!/usr/bin/env bash
# The local demo (make demo): Redis 6398, nginx + the module on 127.0.0.1:8480, the
# PhantomBuster simulator on 8490 and one pb-worker on SQLite (build/demo/audit.db).
# Enqueues ten companies, shows every state change live with a progress bar, then a
# summary, the audit rows and what the naive launcher does with the same ten jobs.
# Stops everything it started, also on Ctrl-C. See docs/demo.md.
#
# Knobs (environment): DEMO_RUN_SECONDS (3), DEMO_TIMEOUT (SEQUENTIAL_QUEUE_TIMEOUT, 6),
# DEMO_DROP (1: the simulator drops one webhook, the timeout monitor recovers it; 0: off),
# DEMO_FAIL (1: one run exits 87, "LinkedIn session cookie expired"; 0: off),
# DEMO_DEADLINE (240 s for the whole run), DEMO_KEEP (1: keep everything running at the end,
# for the status page, until Ctrl-C).  The status page is at
# http://127.0.0.1:8480/phantombuster/ while the demo runs (docs/status.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=$ROOT/build/demo
MODULE=$ROOT/build/nginx/ngx_http_phantombuster_module.so
WORKER=$ROOT/build/worker/pb-worker
PBCTL=$ROOT/build/worker/pbctl
REDIS_PORT=6398 NGINX_PORT=8480 SIM_PORT=8490
API_KEY=demo-api-key
SECRET=demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
ADMIN_TOKEN=admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
AGENT=4717388215573025
RUN_SECONDS=${DEMO_RUN_SECONDS:-3}
QUEUE_TIMEOUT=${DEMO_TIMEOUT:-6}
DEADLINE=${DEMO_DEADLINE:-240}
COMPANIES=(Acme Globex Initech Umbrella Hooli "Stark Industries" "Wayne Enterprises" Soylent Cyberdyne "Wonka Industries")

if [ -t 1 ]; then B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' Y=$'\e[33m' D=$'\e[2m' N=$'\e[0m' EL=$'\r\e[K'
else B='' G='' R='' Y='' D='' N='' EL=''; fi
say() { printf '%s%s==>%s %s\n' "$EL" "$B" "$N" "$*"; }
die() { printf '%sdemo: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }

for f in "$MODULE" "$WORKER" "$PBCTL"; do
    [ -x "$f" ] || [ -f "$f" ] || die "missing $f: run 'make' first (or 'make demo')"
done
for cmd in nginx redis-server redis-cli sqlite3 curl python3; do
    command -v "$cmd" >/dev/null || [ -x /usr/sbin/$cmd ] || die "missing $cmd: run scripts/setup.sh"
done
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $NGINX_PORT $SIM_PORT $REDIS_PORT; do
    port_busy "$p" && die "port $p is in use (an e2e run or another demo?); stop it first"
done

rm -rf "$DIR"
mkdir -p "$DIR/nginx/conf" "$DIR/nginx/logs"
SIM_PID='' NGINX_PID='' WORKER_PID='' REDIS_STARTED=''
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    printf '%s' "$EL"
    [ -n "$WORKER_PID" ] && kill "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null
    [ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
    [ -n "$REDIS_STARTED" ] && scripts/redis.sh stop "$REDIS_PORT" >/dev/null 2>&1
    echo "demo: stopped everything it started (logs in build/demo/)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- services -----------------------------------------------------------------------
say "Redis on 127.0.0.1:$REDIS_PORT"
scripts/redis.sh start "$REDIS_PORT" >/dev/null
REDIS_STARTED=1
redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null

exit_plan=0:finished
[ "${DEMO_FAIL:-1}" = 1 ] && exit_plan="0:finished,0:finished,0:finished,0:finished,0:finished,0:finished,87:finished,0:finished,0:finished,0:finished"
WEBHOOK_URL="http://127.0.0.1:$NGINX_PORT/webhooks/phantombuster?secret=$SECRET"
say "PhantomBuster simulator on 127.0.0.1:$SIM_PORT (plan.parallelism 1, runs of ${RUN_SECONDS}s)"
python3 scripts/pb-simulator.py --port "$SIM_PORT" --api-key "$API_KEY" --parallelism 1 \
    --run-seconds "$RUN_SECONDS" --start-seconds 0.3 --exit-plan "$exit_plan" \
    --webhook-url "$WEBHOOK_URL" --quiet 2>"$DIR/simulator.log" &
SIM_PID=$!

cat >"$DIR/nginx/conf/nginx.conf" <<EOF
load_module $MODULE;
user root;
master_process on;
daemon off;
worker_processes 2;
pid $DIR/nginx/logs/nginx.pid;
error_log $DIR/nginx/logs/error.log info;
events { worker_connections 256; }
http {
    # no query string in the log: it carries the secret
    log_format pb '\$remote_addr [\$time_iso8601] "\$request_method \$uri" \$status '
                  'result="\$phantombuster_result" container=\$phantombuster_container_id';
    access_log $DIR/nginx/logs/access.log pb;
    client_body_temp_path $DIR/nginx/client_body;
    proxy_temp_path $DIR/nginx/proxy;
    fastcgi_temp_path $DIR/nginx/fastcgi;
    uwsgi_temp_path $DIR/nginx/uwsgi;
    scgi_temp_path $DIR/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /webhooks/phantombuster {
            phantombuster_webhook;
            phantombuster_redis 127.0.0.1:$REDIS_PORT;
            phantombuster_queue phantombuster:webhooks;
            phantombuster_secret $SECRET;
            phantombuster_redis_timeout 2s;
            phantombuster_dedupe 24h;
        }

        # the operator's side (docs/status.md, docs/metrics.md); a real
        # deployment puts these behind auth_basic or allow/deny
        location /phantombuster/ {
            alias $ROOT/html/phantombuster/;
            types { text/html html; text/css css; application/javascript js; }
        }
        location = /phantombuster/status.json {
            phantombuster_status;
            phantombuster_redis 127.0.0.1:$REDIS_PORT;
        }
        location = /phantombuster/admin {
            phantombuster_admin;
            phantombuster_admin_token_file $DIR/admin-token;
            phantombuster_redis 127.0.0.1:$REDIS_PORT;
        }
        location = /phantombuster/metrics {
            phantombuster_metrics;
            phantombuster_redis 127.0.0.1:$REDIS_PORT;
        }
    }
}
EOF
(umask 077; printf '%s\n' "$ADMIN_TOKEN" >"$DIR/admin-token")
say "nginx + ngx_http_phantombuster_module on 127.0.0.1:$NGINX_PORT"
/usr/sbin/nginx -p "$DIR/nginx/" -c "$DIR/nginx/conf/nginx.conf" -e "$DIR/nginx/logs/error.log" &
NGINX_PID=$!

for _ in $(seq 100); do
    port_busy "$SIM_PORT" && port_busy "$NGINX_PORT" && break
    sleep 0.1
done
port_busy "$SIM_PORT" || die "simulator did not start: $(tail -3 "$DIR/simulator.log")"
port_busy "$NGINX_PORT" || die "nginx did not start: $(tail -3 "$DIR/nginx/logs/error.log")"

export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export AUDIT_DATABASE_URL="sqlite:$DIR/audit.db"
export PHANTOMBUSTER_API_KEY=$API_KEY
export PHANTOMBUSTER_API_URL="http://127.0.0.1:$SIM_PORT"
export SEQUENTIAL_QUEUE_TIMEOUT=$QUEUE_TIMEOUT PB_MAX_RUNNING=1
export PB_WEBHOOK_QUEUE=phantombuster:webhooks PB_MONITOR_INTERVAL=1 PB_WORKER_ID=demo-worker
say "pb-worker (SQLite audit log: build/demo/audit.db, SEQUENTIAL_QUEUE_TIMEOUT=${QUEUE_TIMEOUT}s)"
"$WORKER" >"$DIR/worker.log" 2>&1 &
WORKER_PID=$!
sleep 0.5
kill -0 "$WORKER_PID" 2>/dev/null || die "pb-worker exited: $(tail -5 "$DIR/worker.log")"

# ---- jobs -----------------------------------------------------------------------------
sim() { curl -fsS "127.0.0.1:$SIM_PORT/_sim/$1" 2>/dev/null; }
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%6.1fs", b - a }'; }
bar() {  # done total [running job]
    local done=$1 total=$2 width=30 fill
    fill=$((done * width / total))
    printf '%s[%s%s] %d/%d done  %s' "$EL" "$(printf '%*s' "$fill" '' | tr ' ' '#')" \
        "$(printf '%*s' $((width - fill)) '' | tr ' ' '.')" "$done" "$total" "${3:+running: $3}"
}

say "Status page: http://127.0.0.1:$NGINX_PORT/phantombuster/ (admin token: $ADMIN_TOKEN)"
say "Enqueueing ${#COMPANIES[@]} companies with pbctl; then one line per state change"
declare -A NAME LAST
JOBS=()
for i in "${!COMPANIES[@]}"; do
    job=$(printf 'demo-%02d' $((i + 1)))
    company=${COMPANIES[$i]}
    arg=$(python3 -c 'import json,sys; print(json.dumps({"company": sys.argv[1], "job": sys.argv[2]}))' "$company" "$job")
    "$PBCTL" enqueue --agent "$AGENT" --argument "$arg" --job-id "$job" >/dev/null \
        || die "pbctl enqueue failed"
    NAME[$job]=$company
    LAST[$job]=pending
    JOBS+=("$job")
    printf '%s  %-8s %-18s %s%-16s%s %s(pbctl enqueue)%s\n' "$(elapsed)" "$job" "$company" "$Y" pending "$N" "$D" "$N"
done
drop_armed=${DEMO_DROP:-1}

done_count=0
while :; do
    while IFS='|' read -r job status container; do
        [ -n "${NAME[$job]+x}" ] || continue
        [ "${LAST[$job]}" = "$status" ] && continue
        case $status in
            success) color=$G ;; failed|timed_out|dead_lettered) color=$R ;; *) color=$Y ;;
        esac
        extra=''
        [ -n "$container" ] && extra=" ${D}container $container${N}"
        printf '%s%s  %-8s %-18s %s%-16s%s%s\n' "$EL" "$(elapsed)" "$job" "${NAME[$job]}" \
            "$color" "$status" "$N" "$extra"
        LAST[$job]=$status
        # arm the dropped webhook once the 3rd job is running
        if [ "$drop_armed" = 1 ] && [ "$job" = demo-04 ] && [ "$status" = phantom_launched ]; then
            curl -fsS -XPOST "127.0.0.1:$SIM_PORT/_sim/config" -d '{"drop_next":1}' >/dev/null
            printf '%s%s  %s(simulator: the webhook of demo-04 will be dropped; the timeout monitor must notice)%s\n' \
                "$EL" "$(elapsed)" "$D" "$N"
            drop_armed=0
        fi
    done < <(sqlite3 "$DIR/audit.db" "SELECT job_id, status, coalesce(phantom_container_id,'') FROM service_audit_logs ORDER BY id" 2>/dev/null || true)
    done_count=0 running=''
    for job in "${JOBS[@]}"; do
        case ${LAST[$job]} in
            success|failed|timed_out|dead_lettered) done_count=$((done_count + 1)) ;;
            phantom_launched|webhook_received) running="$job (${NAME[$job]})" ;;
        esac
    done
    [ -t 1 ] && bar "$done_count" "${#JOBS[@]}" "$running"
    [ "$done_count" -eq "${#JOBS[@]}" ] && break
    kill -0 "$WORKER_PID" 2>/dev/null || die "pb-worker died: $(tail -5 "$DIR/worker.log")"
    if awk -v a="$t0" -v b="$(date +%s.%N)" -v d="$DEADLINE" 'BEGIN { exit !(b - a > d) }'; then
        printf '%s' "$EL"; say "${R}deadline of ${DEADLINE}s reached; showing what there is${N}"
        break
    fi
    sleep 0.3
done
printf '%s' "$EL"
if [ -t 1 ]; then bar "$done_count" "${#JOBS[@]}"; echo; else echo "   $done_count/${#JOBS[@]} done"; fi

# ---- summary ---------------------------------------------------------------------------
say "Summary"
printf '  %-8s %-18s %-9s %-17s %5s %-9s %-8s\n' job company status container exit message "found by"
while IFS='|' read -r job status container code msg found; do
    printf '  %-8s %-18s %-9s %-17s %5s %-9s %-8s\n' "$job" "${NAME[$job]:-?}" "$status" "$container" "$code" "$msg" "$found"
done < <(sqlite3 "$DIR/audit.db" "SELECT job_id, status, coalesce(phantom_container_id,'-'),
        coalesce(json_extract(metadata,'\$.exit_code'),'-'),
        coalesce(json_extract(metadata,'\$.exit_message'),'-'),
        coalesce(json_extract(metadata,'\$.found_by'),'-')
    FROM service_audit_logs ORDER BY id")
sim stats | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("  simulator: %d launches, max %d running at once, %d HTTP 429, %d refusals, %d API calls,"
      % (s["launches"], s["max_concurrent_observed"], s["http_429_sent"], s["launch_refusals"], s["api_calls"]))
print("             %d containers/fetch polls, webhooks: %d sent, %d dropped"
      % (s["polls"], s["webhooks_sent"], s["webhooks_dropped"]))'

say "The status JSON and the metrics nginx serves (/phantombuster/status.json, /phantombuster/metrics)"
curl -fsS "127.0.0.1:$NGINX_PORT/phantombuster/status.json" | python3 -c '
import json, sys
s = json.load(sys.stdin)
c = s["counts"]
print("  status: lane %s, %d pending, %d running, %d done, %d dead; last webhook %.1fs ago; average run %.1fs"
      % (s["lane"]["state"], c["pending"], c["running"], c["done"], c["dead"],
         (s["webhooks"]["last_age_ms"] or 0) / 1000,
         max([a["avg_run_ms"] for a in s["agents"].values()] or [0]) / 1000))'
curl -fsS "127.0.0.1:$NGINX_PORT/phantombuster/metrics" \
    | grep -E '^phantombuster_(webhook_requests_total\{result="(queued|duplicate)"\}|launches_total|runs_completed_total|run_failures_total|polls_total|redis_push_duration_seconds_count|redis_up)' \
    | sed 's/^/  /'

say "Audit rows (sqlite3 build/demo/audit.db)"
sqlite3 -header -column "$DIR/audit.db" "SELECT id, job_id, status, phantom_container_id,
    substr(webhook_payload, 1, 40) AS webhook_payload, substr(metadata, 1, 40) AS metadata,
    created_at, updated_at
  FROM service_audit_logs ORDER BY id"

# ---- contrast ---------------------------------------------------------------------------
say "Without the worker: the naive launcher fires the same ${#JOBS[@]} jobs at once"
kill "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null || true
WORKER_PID=''
curl -fsS -XPOST "127.0.0.1:$SIM_PORT/_sim/reset" -d '{}' >/dev/null
python3 scripts/naive-launcher.py --api-url "http://127.0.0.1:$SIM_PORT" --api-key "$API_KEY" \
    --agent "$AGENT" --jobs "${#JOBS[@]}" | sed 's/^/  /'

if [ "${DEMO_KEEP:-0}" = 1 ]; then
    say "Still running for the status page: http://127.0.0.1:$NGINX_PORT/phantombuster/ (Ctrl-C stops everything)"
    while :; do sleep 3600; done
fi
