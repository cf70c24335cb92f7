# Shared by coverage.sh and sanitize.sh: how to build and test the two
# components with extra compiler flags, each in its own build directory.
# Sourced, not run.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ngx_src=${PB_NGINX_SRC:-/usr/share/nginx/src}

# build_module DIR CFLAGS: the module .so into DIR (scripts/build-module.sh
# honours PB_BUILD_DIR and PB_MODULE_CFLAGS, and links with the same flags
# when they hold --coverage or -fsanitize).
build_module() {
    PB_BUILD_DIR=$1 PB_MODULE_CFLAGS=$2 "$root/scripts/build-module.sh"
}

# test_module SO NGINX: the module's Test::Nginx suites (t/0*.t) against
# that .so, with that nginx binary (a wrapper for the sanitizer run).  The
# fallback runner in t/lib only when Test::Nginx is not installed, as in
# scripts/test.sh.
test_module() {
    local so=$1 nginx=$2 lib=.
    perl -MTest::Nginx::Socket -e1 2>/dev/null || lib=t/lib:.
    (cd "$root" && PB_MODULE_SO=$so TEST_NGINX_BINARY=$nginx \
        PERL5LIB=$lib${PERL5LIB:+:$PERL5LIB} prove t/0*.t)
}

# build_worker DIR CFLAGS: pb-worker, pbctl and the unit test programs of
# t/worker/ into DIR (worker/Makefile takes BUILD and CFLAGS, and links
# with CFLAGS too).
build_worker() {
    make -s -C "$root/worker" BUILD="$1" CFLAGS="-g $2" all tests
}

# test_worker DIR: the worker's suites against the binaries in DIR, through
# scripts/test-worker.sh once it takes PB_WORKER_BUILD (the build to test;
# CFLAGS in the environment reach worker/Makefile's "CFLAGS ?=").  Until
# then: the unit test programs and pbctl's tests (PBCTL) only, on the Redis
# port and databases test-worker.sh uses.
test_worker() {
    local dir=$1 rc=0 t port=${PB_WORKER_TEST_REDIS_PORT:-6394}
    if grep -q PB_WORKER_BUILD "$root/scripts/test-worker.sh" 2>/dev/null
    then
        (cd "$root" && PB_WORKER_BUILD=$dir CFLAGS="-g $2" \
            scripts/test-worker.sh)
        return
    fi
    echo "(scripts/test-worker.sh cannot test another build yet:" \
         "unit and pbctl tests only, no integration tests)"
    "$root/scripts/redis.sh" start "$port" || return 1
    export REDIS_URL=redis://127.0.0.1:$port/15
    export REDIS_URL_PBCTL=redis://127.0.0.1:$port/14
    for t in "$dir"/t/test_*; do
        [ -x "$t" ] || continue
        echo "=== $t"
        "$t" || rc=1
    done
    if [ -x "$root/t/worker/test_pbctl.sh" ]; then
        echo "=== t/worker/test_pbctl.sh"
        PBCTL=$dir/pbctl "$root/t/worker/test_pbctl.sh" || rc=1
    fi
    return $rc
}
