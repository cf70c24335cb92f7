#!/usr/bin/env bash
# The module and the worker built with AddressSanitizer and
# UndefinedBehaviorSanitizer, their suites run against those builds;
# fails on any sanitizer report (or a failing suite).
#
#   scripts/quality/sanitize.sh [module|worker ...]     default: both
#
# Module: the .so is built with gcc -fsanitize=address,undefined into
# build/quality/asan-nginx and loaded into Debian's stock (uninstrumented)
# nginx.  The ASan runtime has to be the first library loaded, so the
# suites get a wrapper as TEST_NGINX_BINARY that runs nginx with
# LD_PRELOAD=libasan.so: only nginx, not perl, curl or redis-cli.  Leak
# checking is on; nginx's own exit-time leaks (memory taken through
# ngx_alloc/ngx_calloc/ngx_memalign and never freed by design) are
# suppressed by lsan-nginx.supp, nothing else.
#
# Worker: pb-worker, pbctl and the worker's tests built with the same
# flags into build/quality/asan-worker.
#
# Every sanitized process writes its reports to build/quality/sanitize/
# (log_path), so reports from nginx workers or daemons that the suites do
# not watch are still seen; any file there fails the run.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$root"

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(module worker)
out=build/quality
logs=$root/$out/sanitize
flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined"
mkdir -p "$logs"

passed=0 failed=0 failed_names=()
result() {
    if [ "$2" -eq 0 ]; then passed=$(( passed + 1 ))
    else failed=$(( failed + 1 )); failed_names+=("$1"); fi
}

# fast_unwind_on_malloc=0: nginx is built without frame pointers; the slow
# unwinder gives leak stacks deep enough for the suppressions to match.
sanitizer_env() {
    local name=$1
    export ASAN_OPTIONS="detect_leaks=1:log_path=$logs/$name-asan"`
        `":fast_unwind_on_malloc=0:malloc_context_size=30"`
        `":strict_string_checks=1:detect_stack_use_after_return=1"
    export UBSAN_OPTIONS="print_stacktrace=1:log_path=$logs/$name-ubsan"
    export LSAN_OPTIONS="suppressions=$root/scripts/quality/lsan-nginx.supp"`
        `":print_suppressions=0"
    [ "$name" = module ] \
        || LSAN_OPTIONS="print_suppressions=0"
}

# reports NAME: prints a summary of each report file; 1 if there are any
reports() {
    local name=$1 files
    files=$(ls "$logs/$name"-* 2>/dev/null)
    [ -n "$files" ] || return 0
    echo "sanitize: $name: reports in $logs:"
    for f in $files; do
        echo "--- $f"
        grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error|^SUMMARY|'`
            `'^    #[0-9] ' "$f" | head -12
    done
    return 1
}

sanitize_module() {
    local dir=$root/$out/asan-nginx rc=0 libasan so
    echo "=== sanitize: building the module with $flags in $dir"
    build_module "$dir" "$flags" || return 1
    so=$dir/ngx_http_phantombuster_module.so

    # the .so must really be instrumented, or a clean run proves nothing
    # (nm's output in a variable: "nm | grep -q" under pipefail fails when
    # grep stops reading early)
    local syms
    syms=$(nm -D "$so")
    if ! grep -q __asan_report <<<"$syms" \
       || ! grep -q __ubsan_handle <<<"$syms"; then
        echo "sanitize: $so is not instrumented" >&2
        return 1
    fi

    libasan=$(gcc -print-file-name=libasan.so)
    [ -f "$libasan" ] || { echo "sanitize: no $libasan" >&2; return 1; }
    cat >"$dir/nginx" <<WRAP
#!/bin/sh
# nginx with the ASan runtime loaded first (scripts/quality/sanitize.sh)
LD_PRELOAD=$libasan exec ${TEST_NGINX_BINARY:-/usr/sbin/nginx} "\$@"
WRAP
    chmod +x "$dir/nginx"

    rm -f "$logs"/module-*
    echo "=== sanitize: module suites"
    (sanitizer_env module
     test_module "$so" "$dir/nginx") >"$out/sanitize-module-tests.log" 2>&1 \
        || { rc=1; echo "sanitize: module suites failed" \
                        "(see $out/sanitize-module-tests.log)"; }
    tail -2 "$out/sanitize-module-tests.log"
    reports module || rc=1
    return $rc
}

sanitize_worker() {
    local dir=$root/$out/asan-worker rc=0
    echo "=== sanitize: building the worker with $flags in $dir"
    build_worker "$dir" "$flags" || return 1

    rm -f "$logs"/worker-*
    echo "=== sanitize: worker suites"
    (sanitizer_env worker
     test_worker "$dir" "$flags") >"$out/sanitize-worker-tests.log" 2>&1 \
        || { rc=1; echo "sanitize: worker suites failed" \
                        "(see $out/sanitize-worker-tests.log)"; }
    tail -2 "$out/sanitize-worker-tests.log"
    reports worker || rc=1
    return $rc
}

for c in "${components[@]}"; do
    case $c in
    module) sanitize_module; result module $? ;;
    worker) sanitize_worker; result worker $? ;;
    *) echo "usage: $0 [module|worker ...]" >&2; exit 2 ;;
    esac
done

[ ${#failed_names[@]} -eq 0 ] || echo "sanitize: failed: ${failed_names[*]}"
echo "sanitize: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
