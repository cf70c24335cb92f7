#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs what is
# missing, builds, starts the servers the suites need, runs every suite and
# ends with one "N passed, N failed" line summing them all.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh || exit 1
scripts/redis.sh start || exit 1

logs=build/test-logs
mkdir -p "$logs"
total_passed=0 total_failed=0 failed_suites=()

# Reads a suite's log for its closing counts: our C and Python suites print
# "N passed, N failed"; prove prints "Files=..., Tests=N" and "Result:".
count_suite() {
    local log=$1 line passed failed
    line=$(grep -E '([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    if [ -n "$line" ]; then
        passed=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+')
        failed=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')
    else
        # every prove run in the log (the module suites run twice: plain
        # and under valgrind)
        passed=$(grep -oE '^Files=[0-9]+, Tests=[0-9]+' "$log" \
                 | awk -F= '{ n += $NF } END { print n + 0 }')
        failed=$(grep -cE '^not ok' "$log")
        passed=$(( ${passed:-0} - failed ))
    fi
    total_passed=$(( total_passed + ${passed:-0} ))
    total_failed=$(( total_failed + ${failed:-0} ))
}

run_suite() {
    local name=$1; shift
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$logs/$name.log"
    local rc=${PIPESTATUS[0]}
    count_suite "$logs/$name.log"
    if [ "$rc" -ne 0 ]; then
        failed_suites+=("$name")
        # a suite that died before counting anything still counts as failed
        grep -qE '[0-9]+ failed|^not ok' "$logs/$name.log" \
            || total_failed=$(( total_failed + 1 ))
    fi
}

run_suite unit make -s unit
run_suite audit t/worker/test_audit.sh
run_suite sim t/sim/run.sh
run_suite module scripts/test-module.sh
run_suite worker scripts/test-worker.sh
run_suite e2e t/e2e/run.sh
run_suite browser t/browser/run.sh
run_suite deploy scripts/deploy/check.sh
run_suite fuzz scripts/quality/fuzz.sh 20
run_suite lint scripts/quality/lint.sh
run_suite sanitize scripts/quality/sanitize.sh
run_suite coverage scripts/quality/coverage.sh

echo
if [ ${#failed_suites[@]} -gt 0 ]; then
    echo "failed suites: ${failed_suites[*]} (logs in $logs/)"
fi
echo "total: $total_passed passed, $total_failed failed"
[ ${#failed_suites[@]} -eq 0 ]
