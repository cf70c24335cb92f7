#!/usr/bin/env bash
# Builds the libFuzzer harnesses in fuzz/ (clang, ASan + UBSan) and runs
# each for a bounded time.
#
#   scripts/quality/fuzz.sh [seconds]     total fuzzing time, split evenly
#                                         between the harnesses (default 60)
#
# First every harness replays its seed corpus (fuzz/corpus/NAME) and the
# saved reproducers of past findings (fuzz/repro/NAME) as a regression
# test, then it fuzzes from a working corpus in build/fuzz/corpus-NAME
# (seeded from the repository's, kept between local runs).  Prints the
# executions and findings per harness; fails on any crash, leak, sanitizer
# report, timeout or broken invariant, leaving the input in
# build/fuzz/artifacts/ with the command that replays it.
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/../.."

total=${1:-60}
harnesses=(payload envelope)
out=build/fuzz
cc=${FUZZ_CC:-clang}
cflags=(-g -O1 -std=gnu99 -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=all -fno-omit-frame-pointer
        -Wall -Wextra -Werror -Icommon)
common_src=(common/pb_payload.c common/pb_envelope.c common/pb_keys.c)

if ! command -v "$cc" >/dev/null; then
    echo "fuzz: $cc not found (scripts/setup.sh installs clang)" >&2
    exit 1
fi

mkdir -p "$out/artifacts"
per=$(( total / ${#harnesses[@]} ))
[ "$per" -ge 1 ] || per=1

passed=0 failed=0 failed_names=()

for h in "${harnesses[@]}"; do
    bin=$out/fuzz_$h
    log=$out/$h.log
    work=$out/corpus-$h

    echo "=== fuzz_$h: build"
    if ! "$cc" "${cflags[@]}" "fuzz/fuzz_$h.c" "${common_src[@]}" -ljansson \
            -o "$bin"; then
        echo "fuzz: fuzz_$h does not build" >&2
        failed=$(( failed + 1 )); failed_names+=("$h"); continue
    fi

    export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

    # regression: seeds and past findings, each must run clean
    seeds=("fuzz/corpus/$h"/*)
    seeds+=("fuzz/repro/$h"/*)
    if ! "$bin" -runs=1 "${seeds[@]}" >"$out/$h-replay.log" 2>&1; then
        echo "fuzz: fuzz_$h fails on a saved input:" >&2
        grep -E 'ERROR|invariant failed|Running:' "$out/$h-replay.log" \
            | tail -5 >&2
        failed=$(( failed + 1 )); failed_names+=("$h"); continue
    fi
    echo "fuzz_$h: ${#seeds[@]} saved inputs replayed clean"

    mkdir -p "$work"
    echo "=== fuzz_$h: ${per}s"
    "$bin" -max_total_time="$per" -timeout=5 -rss_limit_mb=2048 \
        -max_len=8192 -dict=fuzz/pb.dict -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$h-" "$work" "fuzz/corpus/$h" \
        >"$log" 2>&1
    rc=$?

    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" \
            | grep -oE '[0-9]+$')
    added=$(grep -oE 'stat::new_units_added: *[0-9]+' "$log" \
            | grep -oE '[0-9]+$')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
    artifact=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 \
               | sed 's/Test unit written to //')

    if [ "$rc" -ne 0 ] || [ -n "$artifact" ]; then
        echo "fuzz_$h: FINDING after ${execs:-?} executions (exit $rc)"
        grep -E '^==[0-9]+==ERROR|^SUMMARY|invariant failed|runtime error' \
            "$log" | head -5
        [ -n "$artifact" ] && echo "  input: $artifact" \
            && echo "  replay: $bin $artifact"
        echo "  log: $log"
        failed=$(( failed + 1 )); failed_names+=("$h")
    else
        echo "fuzz_$h: ${execs:-0} executions, ${added:-0} new inputs," \
             "${cov:-?} edges covered, no findings"
        passed=$(( passed + 1 ))
    fi
done

[ ${#failed_names[@]} -eq 0 ] || echo "fuzz: findings in: ${failed_names[*]}"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
