#!/usr/bin/env bash
# Starts, stops or restarts a throwaway redis-server on 127.0.0.1.
#
#   scripts/redis.sh start|stop|restart|cli [port] [cli args...]
#
# Data lives in /tmp/pb/redis-PORT.  AOF with fsync every second, so that a
# graceful restart (tests restart Redis mid-run) loses nothing.
set -euo pipefail

cmd=${1:-start}
port=${2:-${PB_TEST_REDIS_PORT:-6399}}
dir=/tmp/pb/redis-$port

ping() { redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; }

start() {
    ping && return 0
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" --save '' \
        --appendonly yes --appendfsync everysec
    for _ in $(seq 100); do ping && return 0; sleep 0.05; done
    echo "redis.sh: redis-server on port $port did not start" \
         "(see $dir/redis.log)" >&2
    exit 1
}

stop() {
    ping || return 0
    redis-cli -p "$port" shutdown >/dev/null 2>&1 || true
    for _ in $(seq 100); do ping || return 0; sleep 0.05; done
    echo "redis.sh: redis-server on port $port did not stop" >&2
    exit 1
}

case $cmd in
start) start ;;
stop) stop ;;
restart) stop; start ;;
cli) shift 2; exec redis-cli -p "$port" "$@" ;;
*) echo "usage: $0 start|stop|restart|cli [port]" >&2; exit 2 ;;
esac
