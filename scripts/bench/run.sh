#!/usr/bin/env bash
# `make bench`: side-by-side benchmarks on loopback, ratios printed at the
# end and written to bench/results/<date>.md and bench/results/latest.md,
# with a gnuplot chart.  See docs/benchmarks.md.
#
#   scripts/bench/run.sh                 every section
#   BENCH_SECTIONS="webhook queue" scripts/bench/run.sh
#
# Knobs (environment): BENCH_SECTIONS (webhook queue memory api),
# BENCH_DURATION (10 s per webhook run), BENCH_ROUNDS (2),
# BENCH_QUEUE_N (100000 envelopes), BENCH_MEMORY_N (1000000),
# BENCH_PROFILE (auto|always|never: perf profile of the module).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/webhook.sh"
. "$HERE/queue.sh"
. "$HERE/memory.sh"
. "$HERE/api.sh"

BENCH_SECTIONS=${BENCH_SECTIONS:-webhook queue memory api}
BENCH_DURATION=${BENCH_DURATION:-10}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
BENCH_QUEUE_N=${BENCH_QUEUE_N:-100000}
BENCH_MEMORY_N=${BENCH_MEMORY_N:-1000000}
BENCH_PROFILE=${BENCH_PROFILE:-auto}

for tool in wrk redis-server redis-cli curl python3 taskset; do
    command -v "$tool" >/dev/null || die "$tool not installed (run scripts/setup.sh bench)"
done
[ -x "$NGINX" ] || die "$NGINX not found (run scripts/setup.sh bench)"

mkdir -p "$B" "$BENCH/results"
: >"$RECORDS"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

started=$(date +%s)
loadavg() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/'; }
rec section=meta started="$started" cpu_srv="$CPU_SRV" cpu_cli="$CPU_CLI" \
    duration_s="$BENCH_DURATION" rounds="$BENCH_ROUNDS" load_start="$(loadavg)"

redis_start

for section in $BENCH_SECTIONS; do
    case $section in
    webhook) bench_webhook ;;
    queue) bench_queue ;;
    memory) bench_memory ;;
    api) bench_api ;;
    *) die "unknown section $section" ;;
    esac
done

bench_cleanup
trap - EXIT
rec section=meta finished="$(date +%s)" load_end="$(loadavg)"

stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
python3 "$HERE/report.py" --records "$RECORDS" --out "$BENCH/results/$stamp.md" \
    --chart "$BENCH/results/$stamp.png" --data-dir "$B" --root "$ROOT"
# latest.md is committed without the dated chart: it shows latest.png
sed "s|($stamp.png)|(latest.png)|" "$BENCH/results/$stamp.md" >"$BENCH/results/latest.md"
if [ -f "$BENCH/results/$stamp.png" ]; then
    cp "$BENCH/results/$stamp.png" "$BENCH/results/latest.png"
fi
log "results: bench/results/$stamp.md (also latest.md), total $(( $(date +%s) - started )) s"
