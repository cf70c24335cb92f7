#!/usr/bin/env bash
# pbctl's and pb-worker's command lines: bad input gives one clear line on
# stderr and exit 2, an unreachable Redis exit 1, and the happy paths exit
# 0.  Needs the test Redis (REDIS_URL, default redis://127.0.0.1:6394/14,
# flushed first).  Last line: "N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
pbctl=${PBCTL:-$root/build/worker/pbctl}
worker=$(dirname "$pbctl")/pb-worker
export REDIS_URL=${REDIS_URL_PBCTL:-redis://127.0.0.1:6394/14}
unset PHANTOMBUSTER_API_KEY PHANTOMBUSTER_API_KEY_FILE
redis-cli -u "$REDIS_URL" flushdb >/dev/null

passed=0 failed=0

# expect RC PATTERN -- ARGS...: exit status RC, stderr one line matching
# PATTERN; of pbctl, or of $prog ("prog=$worker expect ...")
expect() {
    local rc=$1 pattern=$2 bin=${prog:-$pbctl}; shift 3
    local err got lines
    err=$("$bin" "$@" 2>&1 >/dev/null </dev/null); got=$?
    lines=$(printf '%s' "$err" | grep -c '')
    if [ "$got" = "$rc" ] && { [ -z "$pattern" ] || { [ "$lines" -le 1 ] \
            && grep -qE -- "$pattern" <<<"$err"; }; }; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $(basename "$bin") $* -> exit $got (want $rc), stderr: $err"
    fi
}

expect 2 'command is required' -- 
expect 2 'unknown command "frobnicate"' -- frobnicate
expect 2 'unknown flag "--frob"' -- --frob status
expect 2 '--agent ID is required' -- enqueue
expect 2 '--agent needs a value' -- enqueue --agent
expect 2 'agent id must be' -- enqueue --agent 'a b'
expect 2 'argument is not valid JSON' -- enqueue --agent 1 --argument '{oops'
expect 2 'priority wants an integer' -- enqueue --agent 1 --priority high
expect 2 'priority wants an integer' -- enqueue --agent 1 --priority 99999999
expect 2 'job id must be' -- enqueue --agent 1 --job-id 'x/y'
expect 2 'unexpected argument "extra"' -- enqueue --agent 1 extra
expect 2 'unexpected argument "now"' -- pause now
expect 2 'unknown job set "bogus"' -- list --state bogus
expect 2 'limit wants an integer' -- list --limit 0
expect 2 'dlq needs' -- dlq
expect 2 'unknown dlq command "explode"' -- dlq explode
expect 2 'dlq retry needs a job id' -- dlq retry
expect 2 'not in the dead-letter set' -- dlq retry nosuchjob
expect 2 '--api-key is not accepted' -- --api-key s3cret status
expect 2 'not a non-negative integer' -- --max-running lots status
expect 2 'PHANTOMBUSTER_API_KEY' -- restart
expect 2 'REDIS_URL' -- --redis-url ftp://x status
expect 1 'Redis' -- --redis-url redis://127.0.0.1:1/0 status
expect 2 'wants a number of seconds' -- drain --wait soon
expect 2 'limit wants an integer' -- dlq list --limit=0
expect 2 'unexpected argument "x"' -- dlq retry j x
PB_HEARTBEAT_TTL=0.5 expect 2 'heartbeat TTL' -- status
PB_LOG_LEVEL=loud expect 2 'PB_LOG_LEVEL: "loud" is not a log level' -- status
PHANTOMBUSTER_API_KEY_FILE=/nonexistent expect 2 'cannot read the API key file' -- status

# configure-agent: its input is checked before PhantomBuster is asked
url='https://hooks.example/webhooks/phantombuster?secret=t0ps3cr3t'
expect 2 '--agent ID and --webhook-url URL are required' -- configure-agent
expect 2 '--agent ID and --webhook-url URL are required' -- configure-agent --agent 1
expect 2 '--agent ID and --webhook-url URL are required' -- configure-agent --webhook-url "$url"
expect 2 '--webhook-url needs a value' -- configure-agent --agent 1 --webhook-url
expect 2 'must start with http:// or https://' -- configure-agent --agent 1 --webhook-url ftp://h/x
expect 2 'carries no \?secret=' -- configure-agent --agent 1 --webhook-url https://h/x
expect 2 'has no host' -- configure-agent --agent 1 --webhook-url 'https://?secret=a'
expect 2 'agent id must be' -- configure-agent --agent 'a/b' --webhook-url "$url"
expect 2 'max-parallelism wants an integer in 1..100' -- configure-agent --agent 1 --webhook-url "$url" --max-parallelism 0
expect 2 'max-parallelism wants an integer in 1..100' -- configure-agent --agent 1 --webhook-url "$url" --max-parallelism many
expect 2 'unexpected argument "--dry-run=yes"' -- configure-agent --agent 1 --webhook-url "$url" --dry-run=yes
expect 2 'no URL on stdin' -- configure-agent --agent 1 --webhook-url -
expect 2 'PHANTOMBUSTER_API_KEY' -- configure-agent --agent 1 --webhook-url "$url" --dry-run
check() {
    if eval "$2"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $1"; fi
}
check "configure-agent errors never show the secret" \
    '! "$pbctl" configure-agent --agent 1 --webhook-url "$url" 2>&1 | grep -q t0ps3cr3t'
PHANTOMBUSTER_API_KEY=k PHANTOMBUSTER_API_URL=http://127.0.0.1:1 \
    expect 1 'agents/fetch failed: agents/fetch: ' -- configure-agent --agent 1 --webhook-url "$url"

# pb-worker: bad input exits 2 before it touches anything
prog=$worker expect 2 'no API key' --
prog=$worker expect 0 '' -- --help
prog=$worker expect 0 '' -- --version
prog=$worker expect 2 'unknown argument "--frob"' -- --frob
prog=$worker expect 2 '--api-key is not accepted' -- --api-key=s3cret
prog=$worker expect 2 '--api-key-file needs a value' -- --api-key-file
prog=$worker expect 2 'cannot read the API key file /nonexistent' -- --api-key-file=/nonexistent
prog=$worker expect 2 '--timeout needs a value' -- --timeout
prog=$worker expect 2 '--poll-interval: "often" is not a number of seconds' -- --poll-interval often
prog=$worker PB_MAX_RUNNING=0 expect 2 'PB_MAX_RUNNING\) must be at least 1' --
prog=$worker SEQUENTIAL_QUEUE_TIMEOUT=0.5 expect 2 'SEQUENTIAL_QUEUE_TIMEOUT must be at least 1 second' --
prog=$worker PB_HTTP_TIMEOUT=0.01 expect 2 'HTTP timeout' --
prog=$worker PB_BACKOFF_BASE=10 PB_BACKOFF_CAP=1 expect 2 'backoff base must be > 0 and not above the cap' --
prog=$worker PB_WORKER_ID='a b' expect 2 'worker id must be non-empty, without spaces' --
prog=$worker PB_MAX_ATTEMPTS=-1 expect 2 'PB_MAX_ATTEMPTS: "-1" is not a non-negative integer' --
prog=$worker PB_WEBHOOK_QUEUE=$(printf 'q%.0s' {1..300}) expect 2 'PB_WEBHOOK_QUEUE: value too long' --
prog=$worker PHANTOMBUSTER_API_KEY=$(printf 'k%.0s' {1..300}) expect 2 'PHANTOMBUSTER_API_KEY: too long' --
printf 'k3y\n' >"${TMPDIR:-/tmp}/pbctl-test-key.$$"
prog=$worker expect 1 'bad configuration.*REDIS_URL' -- \
    --api-key-file "${TMPDIR:-/tmp}/pbctl-test-key.$$" --redis-url ftp://x
rm -f "${TMPDIR:-/tmp}/pbctl-test-key.$$"

expect 0 '' -- enqueue --agent 1 --job-id a --argument '{"x":1}'
expect 0 '' -- enqueue --agent 1 --job-id a
expect 0 '' -- enqueue --agent 1 --priority 3 --job-id b
expect 0 '' -- list
expect 0 '' -- status
expect 0 '' -- status --json
expect 0 '' -- pause
expect 0 '' -- resume
expect 0 '' -- drain --no-wait
expect 0 '' -- resume
expect 0 '' -- dlq list
expect 0 '' -- dlq retry-all
expect 0 '' -- dlq purge
expect 0 '' -- --help
expect 0 '' -- --version

# the outputs say what happened
check "enqueue repeat says nothing done" \
    '"$pbctl" enqueue --agent 1 --job-id a | grep -q "already exists (state pending); nothing done"'
check "list shows priority order" \
    '[ "$("$pbctl" list | awk "NR>1 {print \$2}" | tr "\n" " ")" = "b a " ]'
check "status --json is JSON with counts" \
    '"$pbctl" status --json | python3 -c "import json,sys; d=json.load(sys.stdin); assert d[\"counts\"][\"pending\"] == 2"'
check "enqueue --json gives the position" \
    '"$pbctl" --json enqueue --agent 1 --job-id c | python3 -c "import json,sys; assert json.load(sys.stdin)[\"position\"] == 3"'
check "the API key never shows" \
    '! PHANTOMBUSTER_API_KEY=topsecret123 "$pbctl" --json status 2>&1 | grep -q topsecret123'
check "--verbose adds the JSON log lines" \
    '"$pbctl" --verbose --redis-url redis://127.0.0.1:1/0 status 2>&1 \
        | grep -q "\"msg\":\"redis connect failed\""'
"$pbctl" pause >/dev/null
check "status names who paused" \
    '"$pbctl" status | grep -qE "^lane +paused \(by pbctl:"'
"$pbctl" resume >/dev/null
# a run that never ends: drain gives up after its wait, exit 1
redis-cli -u "$REDIS_URL" ZADD phantombuster:jobs:running 99999999999999 stuck >/dev/null
expect 1 'drain: 1 runs still going after the wait' -- drain --wait 1
check "drain says the lane is draining" '"$pbctl" status | grep -qE "^lane +draining"'
redis-cli -u "$REDIS_URL" ZREM phantombuster:jobs:running stuck >/dev/null
check "drain with nothing running returns at once" \
    '"$pbctl" drain | grep -q "drained: nothing running"'
"$pbctl" resume >/dev/null

# the enqueue script in docs/redis-layout.md does what pbctl enqueue does
fields() {  # a job's hash without the fields that differ by nature
    redis-cli -u "$REDIS_URL" --no-raw HGETALL "phantombuster:job:$1" | paste - - \
        | grep -vE '"(id|seq|score|enqueued_at|source)"' | sort
}
doc_script=$(awk '/<!-- enqueue-script -->/ {f = 1; next}
                  f && /^```lua/ {g = 1; next}
                  g && /^```/ {exit}
                  g' "$root/docs/redis-layout.md")
check "the documented enqueue script runs" \
    '[ "$(redis-cli -u "$REDIS_URL" EVAL "$doc_script" 5 phantombuster:job:docjob \
        phantombuster:jobs:seq phantombuster:jobs:pending phantombuster:audit:outbox \
        phantombuster:metrics docjob 7 "{\"a\":1}" 2 rails | head -1)" = 1 ]'
"$pbctl" enqueue --agent 7 --argument '{"a":1}' --priority 2 --job-id clijob >/dev/null
check "and leaves the same job as pbctl enqueue" '[ "$(fields docjob)" = "$(fields clijob)" ]'
check "and the same audit row" \
    'redis-cli -u "$REDIS_URL" LRANGE phantombuster:audit:outbox 0 1 | python3 -c "
import json, sys
rows = [json.loads(line) for line in sys.stdin]
for r in rows:
    r.pop(\"job_id\"); r[\"metadata\"].pop(\"queue_position\")
assert len(rows) == 2 and rows[0] == rows[1], rows"'
check "documented enqueue of an existing id is a no-op" \
    '[ "$(redis-cli -u "$REDIS_URL" EVAL "$doc_script" 5 phantombuster:job:docjob \
        phantombuster:jobs:seq phantombuster:jobs:pending phantombuster:audit:outbox \
        phantombuster:metrics docjob 7 "{}" 2 rails | head -1)" = 0 ]'

echo "test_pbctl: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
