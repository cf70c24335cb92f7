#!/usr/bin/env bash
# A loopback rehearsal of a production install, built from the files in
# scripts/deploy/ as shipped (paths and ports rewritten, nothing else):
#
#   Redis          127.0.0.1:6391 (AOF, appendfsync everysec)
#   simulator      127.0.0.1:8496 (scripts/pb-simulator.py, PhantomBuster)
#   nginx          127.0.0.1:8497 with phantombuster-http.conf and the
#                  location snippet; access log without the query string
#   pb-worker      under supervisord with supervisor/pb-worker.conf
#
#   scripts/deploy/staging.sh start     starts everything (idempotent;
#                                       STAGING_POLL=1: pb-worker with
#                                       PB_POLL_MODE=1, the rollout's phase 1)
#   scripts/deploy/staging.sh env       prints the exports pbctl needs
#   scripts/deploy/staging.sh stop      stops everything it started
#
# Everything lives in /tmp/pb-staging; docs/deployment.md and
# docs/troubleshooting.md show commands run against it.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
dir=/tmp/pb-staging
redis_port=6391 sim_port=8496 nginx_port=8497
api_key=staging-api-key
agent=4717388215573025

env_lines() {
    cat <<ENV
export REDIS_URL=redis://127.0.0.1:$redis_port/0
export PB_WEBHOOK_QUEUE=phantombuster:webhooks
export AUDIT_DATABASE_URL=sqlite:$dir/audit.db
export PHANTOMBUSTER_API_URL=http://127.0.0.1:$sim_port
export PHANTOMBUSTER_API_KEY_FILE=$dir/api-key
ENV
}

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
    mkdir -p "$dir/nginx/logs" "$dir/nginx/conf" "$dir/log"
    [ -f "$dir/webhook-secret" ] \
        || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/webhook-secret"
    chmod 600 "$dir/webhook-secret"
    printf '%s\n' "$api_key" >"$dir/api-key"
    chmod 600 "$dir/api-key"
    secret=$(cat "$dir/webhook-secret")

    scripts/redis.sh start "$redis_port" >/dev/null

    if ! up "$sim_port"; then
        python3 scripts/pb-simulator.py --port "$sim_port" \
            --api-key "$api_key" --parallelism 1 --run-seconds 2 \
            --state-file "$dir/simulator.json" \
            --webhook-url "http://127.0.0.1:$nginx_port/phantombuster/webhook?secret=$secret" \
            --quiet 2>>"$dir/log/simulator.log" &
        echo $! >"$dir/simulator.pid"
    fi

    sed -e "s|/etc/nginx/phantombuster-allow.conf|$dir/nginx/conf/phantombuster-allow.conf|" \
        scripts/deploy/nginx/phantombuster-http.conf \
        >"$dir/nginx/conf/phantombuster-http.conf"
    cp scripts/deploy/nginx/phantombuster-allow.conf "$dir/nginx/conf/"
    sed -e "s|/var/log/nginx/|$dir/nginx/logs/|" \
        -e "s|/etc/phantombuster/webhook-secret|$dir/webhook-secret|" \
        -e "s|127.0.0.1:6379|127.0.0.1:$redis_port|" \
        scripts/deploy/nginx/phantombuster-location.conf \
        >"$dir/nginx/conf/phantombuster-webhook.conf"
    cat >"$dir/nginx/conf/nginx.conf" <<CONF
load_module $root/build/nginx/ngx_http_phantombuster_module.so;
user root;
worker_processes 2;
pid $dir/nginx/logs/nginx.pid;
error_log $dir/nginx/logs/error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir/nginx/body;
    include $dir/nginx/conf/phantombuster-http.conf;
    server {
        listen 127.0.0.1:$nginx_port;
        include $dir/nginx/conf/phantombuster-webhook.conf;
    }
}
CONF
    if [ -f "$dir/nginx/logs/nginx.pid" ] \
       && kill -0 "$(cat "$dir/nginx/logs/nginx.pid")" 2>/dev/null; then
        nginx -p "$dir/nginx" -c "$dir/nginx/conf/nginx.conf" \
            -e "$dir/nginx/logs/error.log" -s reload
    else
        nginx -p "$dir/nginx" -c "$dir/nginx/conf/nginx.conf" \
            -e "$dir/nginx/logs/error.log"
    fi

    sed -e 's/^user=pb-worker/user=root/' \
        -e "s|/usr/local/bin/pb-worker|$root/build/worker/pb-worker|" \
        -e "s|/var/log/pb-worker/|$dir/log/|" \
        -e "s|^directory=.*|directory=$dir|" \
        -e "s|redis://127.0.0.1:6379/0|redis://127.0.0.1:$redis_port/0|" \
        -e "s|sqlite:/var/lib/pb-worker/audit.db|sqlite:$dir/audit.db|" \
        -e "s|/etc/phantombuster/api-key|$dir/api-key|" \
        -e "s|PB_LOG_LEVEL=\"info\"|PB_LOG_LEVEL=\"info\",\n    PHANTOMBUSTER_API_URL=\"http://127.0.0.1:$sim_port\",\n    SEQUENTIAL_QUEUE_TIMEOUT=\"20\", PB_MONITOR_INTERVAL=\"1\",\n    PB_POLL_MODE=\"${STAGING_POLL:-0}\", PB_POLL_INTERVAL=\"2\"|" \
        scripts/deploy/supervisor/pb-worker.conf >"$dir/pb-worker.conf"
    cat >"$dir/supervisord.conf" <<CONF
[unix_http_server]
file=$dir/supervisor.sock
[supervisord]
logfile=$dir/log/supervisord.log
pidfile=$dir/supervisord.pid
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://$dir/supervisor.sock
[include]
files = $dir/pb-worker.conf
CONF
    if [ -S "$dir/supervisor.sock" ] \
       && supervisorctl -c "$dir/supervisord.conf" pid >/dev/null 2>&1; then
        supervisorctl -c "$dir/supervisord.conf" update >/dev/null
    else
        supervisord -c "$dir/supervisord.conf"
    fi

    for _ in $(seq 100); do
        up "$sim_port" && up "$nginx_port" && break
        sleep 0.1
    done
    # the simulator's agent sends to the staging webhook URL
    curl -fsS -X POST -H "X-Phantombuster-Key: $api_key" \
        -d "{\"id\":\"$agent\",\"notifications\":{\"webhook\":\"http://127.0.0.1:$nginx_port/phantombuster/webhook?secret=$secret\"}}" \
        "http://127.0.0.1:$sim_port/api/v2/agents/save" >/dev/null
    echo "staging: up in $dir (agent $agent); for pbctl: eval \"\$($0 env)\""
}

stop() {
    if [ -f "$dir/supervisord.pid" ]; then
        supervisorctl -c "$dir/supervisord.conf" shutdown >/dev/null 2>&1 || true
    fi
    if [ -f "$dir/nginx/logs/nginx.pid" ]; then
        kill -QUIT "$(cat "$dir/nginx/logs/nginx.pid")" 2>/dev/null || true
    fi
    if [ -f "$dir/simulator.pid" ]; then
        kill "$(cat "$dir/simulator.pid")" 2>/dev/null || true
        rm -f "$dir/simulator.pid"
    fi
    scripts/redis.sh stop "$redis_port" >/dev/null || true
    echo "staging: stopped (files kept in $dir)"
}

case ${1:-} in
start) start ;;
stop) stop ;;
env) env_lines ;;
*) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
