#!/usr/bin/env bash
# The worker's test suite: builds pb-worker, pbctl and the unit tests,
# starts a Redis of its own (scripts/redis.sh on a free port, stopped and
# removed at the end, so concurrent runs and other suites' FLUSHes never
# meet; PB_WORKER_TEST_REDIS_PORT=N uses, and keeps, that one instead),
# runs the unit tests of each module, pbctl's command-line tests and the
# integration tests of pb-worker against the PhantomBuster simulator.  The last line is "N passed, N failed"; the exit status is
# non-zero on any failure.
#
#   scripts/test-worker.sh              everything
#   scripts/test-worker.sh unit         unit and pbctl tests only
#   PB_WORKER_TEST_ONLY=name scripts/test-worker.sh integration   one scenario
#   PB_WORKER_BUILD=DIR CFLAGS=... scripts/test-worker.sh   test another build
#       (sanitizers, coverage): built into DIR with those CFLAGS
set -uo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
port=${PB_WORKER_TEST_REDIS_PORT:-}
build=${PB_WORKER_BUILD:-$PWD/build/worker}
passed=0 failed=0

count() {   # adds the "N passed, N failed" of a suite's output
    local line
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
    if [ -z "$line" ]; then
        failed=$((failed + 1))      # died before it could count
        return
    fi
    passed=$((passed + $(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+')))
    failed=$((failed + $(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')))
}

run() {
    local log
    log=$(mktemp /tmp/pb-worker-test.XXXXXX)
    echo "--- $*"
    "$@" 2>&1 | tee "$log"
    count "$log"
    rm -f "$log"
}

if ! make -s -C worker BUILD="$build" tests; then
    echo "0 passed, 1 failed"
    exit 1
fi

if [ -z "$port" ]; then
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    trap 'scripts/redis.sh stop "$port" >/dev/null; rm -rf "/tmp/pb/redis-$port"' EXIT
fi
scripts/redis.sh start "$port" || { echo "0 passed, 1 failed"; exit 1; }

export REDIS_URL=redis://127.0.0.1:$port/15
export REDIS_URL_PBCTL=redis://127.0.0.1:$port/14
export PBCTL=$build/pbctl PB_WORKER_BUILD=$build

if [ "$what" = all ] || [ "$what" = unit ]; then
    for t in "$build"/t/test_*; do
        run "$t"
    done
    run t/worker/test_pbctl.sh
    run python3 t/worker/test_status_http.py --redis-port "$port"
fi

if [ "$what" = all ] || [ "$what" = integration ]; then
    run python3 t/worker/test_integration.py --redis-port "$port"
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
