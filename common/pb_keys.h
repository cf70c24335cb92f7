/*
 * The Redis key schema shared by the module and the worker.  Every key
 * name the product uses is built here, so that docs/redis-layout.md has
 * one place to agree with.  Depends on libc only.
 */

#ifndef PB_KEYS_H
#define PB_KEYS_H

#include <stddef.h>

#define PB_DEFAULT_QUEUE        "phantombuster:webhooks"
#define PB_KEY_PREFIX           "phantombuster:"

/*
 * "<queue>:seen:<containerId>": set (NX, with the dedupe window as TTL) by
 * the module's push; its value is the request id of the first delivery.
 * The worker reads it to drop a redelivery the module could not take
 * back out of the queue (worker/slots.c).
 */
#define PB_SEEN_INFIX           ":seen:"

/* "<queue>:processing:<worker-id>": a consumer's in-flight envelopes. */
#define PB_PROCESSING_INFIX     ":processing:"

/*
 * Formats "<a><infix><b>" into buf.  Returns the length written (without
 * the NUL), or 0 when buf is too small.
 */
size_t pb_key_join(char *buf, size_t cap, const char *a, const char *infix,
    const char *b);

/*
 * The script the module runs for a batch of n accepted webhooks (those of
 * one nginx event loop iteration), atomically:
 *
 *   KEYS[1] queue list, KEYS[1 + i] seen marker of webhook i (1..n)
 *   ARGV[1] dedupe window in ms (0: off), ARGV[2] max queue length (0: off)
 *   ARGV[1 + 2i] envelope of webhook i, ARGV[2 + 2i] its request id
 *
 * Returns an array of n integers, one per webhook: the list length right
 * after its envelope went in (> 0) when pushed, -1 when its containerId
 * was already seen inside the window (nothing pushed), -2 when the list
 * was full (nothing pushed, nothing marked).  The envelopes go in in
 * order, so the worker, which takes from the tail, sees them in order.
 *
 * n is bounded by PB_PUSH_BATCH_MAX: the LPUSH takes them all at once,
 * and Redis's Lua cannot unpack much more than 7,900 values.
 */
extern const char  pb_lua_push_webhooks[];

#define PB_PUSH_BATCH_MAX   256
#define PB_PUSH_DUPLICATE   (-1)
#define PB_PUSH_FULL        (-2)

/* ------------------------------------------------------------------------
 * pb-worker keys (owned by worker/; layout and Lua contracts in
 * docs/redis-layout.md).  Fixed names under PB_KEY_PREFIX; a job's hash is
 * PB_KEY_JOB_PREFIX + job id, a worker's heartbeat PB_KEY_WORKER_PREFIX +
 * worker id.
 */
#define PB_KEY_JOB_PREFIX       "phantombuster:job:"
#define PB_KEY_JOBS_SEQ         "phantombuster:jobs:seq"
#define PB_KEY_JOBS_PENDING     "phantombuster:jobs:pending"
#define PB_KEY_JOBS_RETRY       "phantombuster:jobs:retry"
#define PB_KEY_JOBS_RUNNING     "phantombuster:jobs:running"
#define PB_KEY_JOBS_DONE        "phantombuster:jobs:done"
#define PB_KEY_JOBS_DEAD        "phantombuster:jobs:dead"
#define PB_KEY_CONTAINERS       "phantombuster:containers"
#define PB_KEY_LAUNCHING        "phantombuster:launching"
#define PB_KEY_FENCE            "phantombuster:slots:fence"
#define PB_KEY_LANE_CLOSED      "phantombuster:lane:closed_until"
#define PB_KEY_LANE_STREAK      "phantombuster:lane:streak"
#define PB_KEY_THROTTLE         "phantombuster:throttle"
#define PB_KEY_THROTTLE_SEQ     "phantombuster:throttle:seq"
#define PB_KEY_PAUSED           "phantombuster:control:paused"
#define PB_KEY_DRAINING         "phantombuster:control:draining"
#define PB_KEY_COMMANDS         "phantombuster:control:commands"
#define PB_KEY_RESULT_PREFIX    "phantombuster:control:result:"
#define PB_KEY_OUTBOX           "phantombuster:audit:outbox"
#define PB_KEY_OUTBOX_FAILED    "phantombuster:audit:failed"
#define PB_KEY_OUTBOX_LOCK      "phantombuster:audit:lock"
#define PB_KEY_MONITOR_LOCK     "phantombuster:monitor:lock"
#define PB_KEY_METRICS          "phantombuster:metrics"
#define PB_KEY_RUN_STATS        "phantombuster:run_stats"
#define PB_KEY_WORKERS          "phantombuster:workers"
#define PB_KEY_WORKER_PREFIX    "phantombuster:worker:"

/* "<queue>:invalid": envelopes the worker could not parse, kept for humans. */
#define PB_INVALID_SUFFIX       ":invalid"

#endif /* PB_KEYS_H */
