#!/usr/bin/env bash
# Line coverage of the module and of the worker, each measured by its own
# test suites, each gated at 90 %.
#
#   scripts/quality/coverage.sh [module|worker ...]     default: both
#
# Builds each component with --coverage into its own directory
# (build/quality/cov-nginx, build/quality/cov-worker), so the normal build
# is untouched; runs its suites; prints gcovr's per-file table:
#   module: ngx_http_phantombuster_module/ (common/ is linked into the .so
#           too, but whole files of it are the worker's alone, e.g. the
#           envelope parser; common/ is gated with the worker, where its
#           own unit tests run)
#   worker: worker/ + common/ as linked into pb-worker and pbctl (the
#           worker's suites, and common's own unit tests for common/)
# and fails when a component is under PB_COVERAGE_MIN (default 90) percent
# of lines.  nginx writes its .gcda files when its processes exit, which
# the Test::Nginx runner causes with SIGQUIT (a graceful exit).  Needs
# Redis (and PostgreSQL for the worker) as scripts/test.sh starts them.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$root"

min=${PB_COVERAGE_MIN:-90}
# Atomic counters: pb-worker's audit flusher thread runs code the main
# thread runs too, and racing plain counters can leave an arc negative,
# which gcov prints as "taken -1" and gcovr refuses to parse.
cov="--coverage -fprofile-update=atomic"
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(module worker)
out=build/quality
mkdir -p "$out"

passed=0 failed=0 failed_names=()
result() {
    if [ "$2" -eq 0 ]; then passed=$(( passed + 1 ))
    else failed=$(( failed + 1 )); failed_names+=("$1"); fi
}

# gcov_report NAME FILTERS -- CWD:DIR...: the table and the gate over the
# .gcda files under each DIR, gcov run in CWD (where the compiler ran, so
# that the relative paths recorded at compile time resolve: nginx compiles
# from its source tree, worker/Makefile from worker/, the audit tests from
# the root); one gcovr JSON tracefile per pair, merged.
gcov_report() {
    local name=$1 rc pair i=0 filters=() traces=()
    shift
    while [ "$1" != -- ]; do filters+=(--filter "$1"); shift; done
    shift
    for pair in "$@"; do
        i=$(( i + 1 ))
        gcovr --root . --object-directory "${pair%%:*}" "${filters[@]}" \
            --exclude '.*_modules\.c$' --json "$out/coverage-$name-$i.json" \
            "${pair#*:}" 2>>"$out/gcovr-$name.err"
        traces+=(--add-tracefile "$out/coverage-$name-$i.json")
    done

    echo "=== coverage: $name"
    gcovr --root . "${traces[@]}" "${filters[@]}" --print-summary \
        --fail-under-line "$min" 2>>"$out/gcovr-$name.err" \
        | tee "$out/coverage-$name.txt"
    rc=${PIPESTATUS[0]}
    grep -v '^$' "$out/gcovr-$name.err" | grep -v 'Cannot open source' \
        | head -5
    local pct
    pct=$(grep -oE '^lines: [0-9.]+%' "$out/coverage-$name.txt" \
          | grep -oE '[0-9.]+')
    if [ "$rc" -eq 0 ]; then
        echo "coverage: $name ${pct:-?}% of lines (gate $min%): ok"
    else
        echo "coverage: $name ${pct:-?}% of lines (gate $min%): FAILED"
    fi
    return "$rc"
}

coverage_module() {
    local dir=$root/$out/cov-nginx rc=0
    echo "=== coverage: building the module with --coverage in $dir"
    build_module "$dir" "-O0 $cov" || return 1
    find "$dir" -name '*.gcda' -delete

    echo "=== coverage: module suites"
    test_module "$dir/ngx_http_phantombuster_module.so" \
        "${TEST_NGINX_BINARY:-/usr/sbin/nginx}" \
        >"$out/coverage-module-tests.log" 2>&1 || rc=1
    tail -3 "$out/coverage-module-tests.log"
    if [ $rc -ne 0 ]; then
        echo "coverage: module suites failed" \
             "(see $out/coverage-module-tests.log)"
    fi

    rm -f "$out"/gcovr-module.err
    gcov_report module 'ngx_http_phantombuster_module/' -- \
        "$ngx_src:$dir" || rc=1
    return $rc
}

coverage_worker() {
    local dir=$root/$out/cov-worker rc=0
    echo "=== coverage: building the worker with --coverage in $dir"
    build_worker "$dir" "-O0 $cov" || return 1
    find "$dir" -name '*.gcda' -delete

    echo "=== coverage: worker suites"
    test_worker "$dir" "-O0 $cov" >"$out/coverage-worker-tests.log" 2>&1 || rc=1
    # the audit-log tests build their own binary (t/worker/test_audit.sh
    # compiles worker/audit*.c from the root with $CC, into build/t/worker)
    find "$root/build/t/worker" -name '*.gcda' -delete 2>/dev/null
    CC="${CC:-cc} $cov" "$root/t/worker/test_audit.sh" \
        >>"$out/coverage-worker-tests.log" 2>&1 || rc=1
    # common/ is linked into both binaries; its own unit tests (t/unit:
    # the payload validator and the envelope, built from the root by the
    # top Makefile's "unit" target) count for it here too
    # (outside $dir: gcov reads each directory from its own working dir)
    find "$root/$out/cov-common" -name '*.gcda' -delete 2>/dev/null
    make -s -C "$root" BUILD="$root/$out/cov-common" \
        CC="${CC:-cc} $cov" CFLAGS="-O0 -g" unit \
        >>"$out/coverage-worker-tests.log" 2>&1 || rc=1
    grep -E '[0-9]+ passed, [0-9]+ failed' "$out/coverage-worker-tests.log" \
        | tail -3
    if [ $rc -ne 0 ]; then
        echo "coverage: worker suites failed" \
             "(see $out/coverage-worker-tests.log)"
    fi

    rm -f "$out"/gcovr-worker.err
    gcov_report worker 'worker/' 'common/' -- \
        "$root/worker:$dir" "$root:$root/build/t/worker" \
        "$root:$root/$out/cov-common" || rc=1
    return $rc
}

if ! command -v gcovr >/dev/null; then
    echo "coverage: gcovr not found (scripts/setup.sh installs it)" >&2
    exit 1
fi

for c in "${components[@]}"; do
    case $c in
    module) coverage_module; result module $? ;;
    worker) coverage_worker; result worker $? ;;
    *) echo "usage: $0 [module|worker ...]" >&2; exit 2 ;;
    esac
done

[ ${#failed_names[@]} -eq 0 ] || echo "coverage: failed: ${failed_names[*]}"
echo "coverage: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
