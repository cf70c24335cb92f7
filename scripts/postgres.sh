#!/bin/sh
# A throwaway PostgreSQL cluster for the tests, on loopback only.
#
#   scripts/postgres.sh start|stop|restart|status [port]
#
# Port: the argument, else $PB_TEST_PG_PORT, else 5499.  Data, socket and
# log live under /tmp/pb/pg-PORT; the cluster uses trust auth, user
# postgres, and has a database pb_test.  "start" on a running cluster and
# "stop" on a stopped one succeed (idempotent).  Installs nothing: the
# setup script installs postgresql; PG_BIN overrides the binary directory.

set -eu

cmd=${1:-}
port=${2:-${PB_TEST_PG_PORT:-5499}}
base=/tmp/pb/pg-$port
data=$base/data
log=$base/postgres.log

die() { echo "postgres.sh: $*" >&2; exit 1; }

case $port in
    ''|*[!0-9]*) die "bad port: $port" ;;
esac

# The newest installed server, unless told otherwise.  15 is what the
# project targets; any version with the same tools works.
if [ -z "${PG_BIN:-}" ]; then
    for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        if [ -x "$d/pg_ctl" ]; then PG_BIN=$d; break; fi
    done
fi
[ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/pg_ctl" ] \
    || die "no PostgreSQL server found (run scripts/setup.sh to install postgresql)"

# PostgreSQL refuses to run as root: drop to the postgres user when we are
# root, run as ourselves otherwise.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() {
    [ -f "$data/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1
}

ensure_db() {
    # Wait for connections (pg_ctl -w returns when ready, but an already
    # running cluster may still be starting up), then create pb_test once.
    i=0
    until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; do
        i=$((i + 1))
        [ $i -lt 100 ] || die "server on port $port not accepting connections (see $log)"
        sleep 0.1
    done
    exists=$("$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'pb_test'")
    if [ "$exists" != 1 ]; then
        "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres pb_test 2>/dev/null \
            || [ "$("$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
                   "SELECT 1 FROM pg_database WHERE datname = 'pb_test'")" = 1 ] \
            || die "cannot create database pb_test"
    fi
}

start() {
    if running; then
        ensure_db
        echo "postgres.sh: already running on 127.0.0.1:$port"
        return 0
    fi
    mkdir -p /tmp/pb
    mkdir -p "$base"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$base"; fi
    if [ ! -f "$data/PG_VERSION" ]; then
        rm -rf "$data"
        as_pg "$PG_BIN/initdb" -D "$data" --auth=trust -U postgres -E UTF8 \
            --locale=C >"$base/initdb.log" 2>&1 \
            || die "initdb failed (see $base/initdb.log)"
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 \
        -o "-p $port -k $base -c listen_addresses=127.0.0.1" start >/dev/null \
        || die "pg_ctl start failed (see $log)"
    ensure_db
    echo "postgres.sh: started on 127.0.0.1:$port (data $data)"
}

stop() {
    if ! running; then
        echo "postgres.sh: not running on port $port"
        return 0
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null \
        || die "pg_ctl stop failed (see $log)"
    echo "postgres.sh: stopped (port $port)"
}

case $cmd in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status)
        if running; then
            echo "postgres.sh: running on 127.0.0.1:$port"
        else
            echo "postgres.sh: not running on port $port"
            exit 3
        fi
        ;;
    *) echo "usage: $0 start|stop|restart|status [port]" >&2; exit 2 ;;
esac
