#!/usr/bin/env bash
# Builds the module, makes sure the test Redis runs, then runs the module's
# Test::Nginx suites (t/0*.t) twice: once normally, once with every nginx
# under valgrind (memcheck, leak check), where any valgrind report fails.
#
# Environment:
#   PB_TEST_REDIS_PORT   Redis for the suites (default 6399)
#   PB_MODULE_SUITES     suites to run (default: t/0*.t)
#   PB_SKIP_VALGRIND=1   only the normal run
#   PB_ONLY_VALGRIND=1   only the valgrind run
#   TEST_NGINX_BINARY    nginx to test (default /usr/sbin/nginx)
#
# The real Test::Nginx is used when `perl -MTest::Nginx::Socket -e1` works;
# otherwise the minimal runner in t/lib.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

port=${PB_TEST_REDIS_PORT:-6399}
export PB_TEST_REDIS_PORT=$port
export TEST_NGINX_BINARY=${TEST_NGINX_BINARY:-/usr/sbin/nginx}

scripts/build-module.sh

if [ -x scripts/redis.sh ]; then
    scripts/redis.sh start "$port"
elif ! redis-cli -p "$port" ping >/dev/null 2>&1; then
    redis-server --port "$port" --bind 127.0.0.1 --save '' --daemonize yes
    sleep 0.5
fi

if perl -MTest::Nginx::Socket -e1 2>/dev/null; then
    export PERL5LIB="$root${PERL5LIB:+:$PERL5LIB}"
    echo "test-module.sh: using the installed Test::Nginx"
else
    export PERL5LIB="$root/t/lib:$root${PERL5LIB:+:$PERL5LIB}"
    echo "test-module.sh: Test::Nginx not installed, using t/lib"
fi

# shellcheck disable=SC2206
suites=(${PB_MODULE_SUITES:-t/0*.t})
logdir=$root/build/test-module
mkdir -p "$logdir"
rc=0

if [ -z "${PB_ONLY_VALGRIND:-}" ]; then
    echo "== module suites"
    prove "${suites[@]}" || rc=1
fi

if [ -z "${PB_SKIP_VALGRIND:-}" ]; then
    echo "== module suites under valgrind"
    vlog=$logdir/valgrind.log
    # prove from the repository root: Test::Nginx picks ./valgrind.suppress
    TEST_NGINX_USE_VALGRIND=1 prove "${suites[@]}" > "$vlog" 2>&1 \
        || { rc=1; echo "test-module.sh: suites failed under valgrind"; }
    tail -n 5 "$vlog"

    if grep -qE '^==[0-9]+== ' "$vlog"; then
        echo "test-module.sh: valgrind reported errors or leaks" \
             "(full log: $vlog):"
        grep -E -A30 '^==[0-9]+== ' "$vlog" | head -n 200
        rc=1
    else
        echo "valgrind: no report"
    fi
fi

exit $rc
