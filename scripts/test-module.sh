#!/usr/bin/env bash
# Builds the module, makes sure the test Redis runs, then runs the module's
# Test::Nginx suites (t/0*.t) twice: once normally, once with every nginx
# under valgrind (memcheck, leak check), where any valgrind report fails.
#
# Environment:
#   PB_TEST_REDIS_PORT   Redis for the suites (default 6399)
#   PB_MODULE_SUITES     suites to run (default: t/0*.t)
#   PB_MEMCHECK          valgrind (default), asan, both or none: the second
#                        run(s).  asan builds the module with
#                        -fsanitize=address into build/nginx-asan and runs
#                        nginx with libasan preloaded; any ASan error, or a
#                        leak whose stack goes through the module, hiredis
#                        or jansson, fails (nginx core's own exit-time
#                        leaks are ignored).
#   PB_SKIP_VALGRIND=1   same as PB_MEMCHECK=none
#   PB_ONLY_VALGRIND=1   skip the normal run
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

memcheck=${PB_MEMCHECK:-valgrind}
[ -n "${PB_SKIP_VALGRIND:-}" ] && memcheck=none

if [ "$memcheck" = valgrind ] || [ "$memcheck" = both ]; then
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

if [ "$memcheck" = asan ] || [ "$memcheck" = both ]; then
    echo "== module suites under AddressSanitizer"
    asan_build=$root/build/nginx-asan
    PB_BUILD_DIR=$asan_build \
    PB_MODULE_CFLAGS="-O1 -fsanitize=address -fno-omit-frame-pointer" \
        scripts/build-module.sh

    asan_dir=$logdir/asan
    rm -rf "$asan_dir"
    mkdir -p "$asan_dir"

    # only nginx gets libasan: preloading it into perl, curl or redis-cli
    # is neither needed nor safe
    wrapper=$logdir/nginx-asan
    cat > "$wrapper" <<WRAP
#!/bin/sh
LD_PRELOAD=$(gcc -print-file-name=libasan.so) \\
ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:log_path=$asan_dir/asan \\
exec $TEST_NGINX_BINARY "\$@"
WRAP
    chmod +x "$wrapper"

    TEST_NGINX_BINARY=$wrapper \
    PB_MODULE_SO=$asan_build/ngx_http_phantombuster_module.so \
        prove "${suites[@]}" > "$logdir/asan.log" 2>&1 \
        || { rc=1; echo "test-module.sh: suites failed under ASan"; }
    tail -n 3 "$logdir/asan.log"

    # a leak record runs from its "leak of" line to the next blank line;
    # nginx core's exit-time leaks are indirect (the event arrays) or come
    # from ngx_set_environment, PCRE2 or the init cycle's pool (nginx -V,
    # a configuration that fails); anything else direct, or anything
    # through the module, hiredis or jansson (the module's frames show as
    # <unknown module> once nginx has unloaded it at exit), is reported
    bad=$(cat "$asan_dir"/asan.* 2>/dev/null | awk '
        function flush() {
            if (rec != "" && (mod || (direct && !core))) print head
            rec = ""; head = ""; mod = 0; direct = 0; core = 0
        }
        /ERROR: AddressSanitizer/ { flush(); print; next }
        /^(Direct|Indirect) leak/ {
            flush(); rec = $0; head = $0; direct = /^Direct/; next
        }
        /^$/ { flush(); next }
        rec != "" {
            if (/phantombuster|hiredis|jansson|pb_|unknown module/) mod = 1
            if (/pcre2_compile_context_create|ngx_set_environment|ngx_create_pool \(/) core = 1
        }
        END { flush() }')
    if [ -n "$bad" ]; then
        echo "test-module.sh: AddressSanitizer reports" \
             "(logs in $asan_dir):"
        echo "$bad" | head -n 50
        rc=1
    else
        echo "asan: no report about the module"
    fi
fi

exit $rc
