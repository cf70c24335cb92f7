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

# test_worker DIR CFLAGS: the worker's suites against the binaries in DIR
# (scripts/test-worker.sh takes the build to test as PB_WORKER_BUILD;
# CFLAGS in the environment reach worker/Makefile's "CFLAGS ?=").
test_worker() {
    (cd "$root" && PB_WORKER_BUILD=$1 CFLAGS="-g $2" scripts/test-worker.sh)
}
