/*
 * Launch slots and the life of a run, all as atomic Lua scripts.
 *
 * A slot is a lease: a member of the running set (job id, scored by its
 * deadline) plus the fencing token the claim drew from a counter and wrote
 * into the job.  Every later step names the token; a holder whose lease was
 * reclaimed (its token no longer matches, or the job left the running set)
 * is refused ("fenced") and cannot free or reuse the slot someone else now
 * holds.  At most max_running jobs are in the running set at any moment,
 * whichever workers claimed them.
 *
 * Job states: pending -> claimed -> launching -> running -> done, with
 * retry (5xx/network backoff) and dead (the dead-letter set) on the side;
 * a launching job whose launch outcome is unknown is "in doubt".
 */

#ifndef PB_SLOTS_H
#define PB_SLOTS_H

#include <stdint.h>

#include "ctx.h"
#include "jobs.h"
#include "pb_payload.h"

typedef enum {
    PB_CLAIM_CLAIMED = 0,
    PB_CLAIM_PAUSED,
    PB_CLAIM_DRAINING,
    PB_CLAIM_LANE_CLOSED,       /* a 429/refusal closed the lane: wait_ms */
    PB_CLAIM_THROTTLED,         /* the calls-per-minute budget: wait_ms */
    PB_CLAIM_FULL,              /* every slot is taken */
    PB_CLAIM_EMPTY,             /* nothing pending (wait_ms: next retry) */
    PB_CLAIM_BUSY               /* pending jobs' agents are all launching */
} pb_claim_kind_t;

typedef struct {
    pb_claim_kind_t  kind;
    int64_t          wait_ms;   /* -1 when there is nothing to wait for */
    char             job_id[PB_JOB_ID_MAX + 1];
    char             agent[PB_ID_MAX_LEN + 1];
    char             token[32];
    char            *argument;  /* JSON text (malloc) or NULL */
    int              attempts;
} pb_claim_t;

/* How a run ended.  NULL fields are absent. */
typedef struct {
    const char  *status;        /* success, failed or timed_out */
    const char  *container;
    const char  *exit_code;
    const char  *exit_message;
    const char  *payload;       /* JSON text stored as webhook_payload */
    const char  *received_at;   /* ISO 8601 */
    const char  *found_by;      /* webhook, polling, timeout, restart */
    const char  *error;
} pb_outcome_t;

/* What a script did: kind ("recorded", "completed", "fenced", ...). */
typedef struct {
    char  kind[16];
    char  job_id[PB_JOB_ID_MAX + 1];
    char  detail[32];           /* e.g. the final status, or attempts */
} pb_slot_result_t;

/*
 * Takes a slot and the best pending job (highest priority, then oldest)
 * whose agent has no launch in flight, consuming one call of the
 * throttle.  lease_ms bounds the time to the launch being recorded.
 * Returns 0 (see claim->kind) or -1 when Redis failed.
 */
int pb_slot_claim(pb_ctx_t *ctx, int64_t lease_ms, pb_claim_t *claim);
void pb_claim_free(pb_claim_t *claim);

/*
 * claimed -> launching, right before the HTTP request leaves: from here a
 * dead worker's launch has an unknown outcome.  kind "ok" or "fenced".
 */
int pb_slot_mark_launching(pb_ctx_t *ctx, const char *job_id,
    const char *token, pb_slot_result_t *res);

/*
 * launching -> running with the container id.  When the run's webhook came
 * first (held as "early"), completes it now: kind "completed".
 * found_by: "launch" or "reconcile".
 */
int pb_slot_record(pb_ctx_t *ctx, const char *job_id, const char *token,
    const char *container, const char *found_by, pb_slot_result_t *res);

/*
 * Back to pending, no attempt used (429, refusal, auth trouble, shutdown).
 * close_ms > 0 closes the lane for every worker that long; metric names
 * the counter to bump ("" for none).
 */
int pb_slot_requeue(pb_ctx_t *ctx, const char *job_id, const char *token,
    int64_t close_ms, const char *metric, const char *reason,
    pb_slot_result_t *res);

/*
 * A failed launch: counts an attempt, then retry after delay_ms or, once
 * attempts reach max_attempts (0: at once), dead-letter.  kind "retry",
 * "dead" or "fenced".
 */
int pb_slot_fail(pb_ctx_t *ctx, const char *job_id, const char *token,
    int64_t delay_ms, int max_attempts, const char *error,
    pb_slot_result_t *res);

/*
 * A launch whose outcome is unknown (its answer was lost, or its launcher
 * died or overran its lease in the call): the job stays "launching", in
 * doubt, keeping its slot and its agent's launching mark, so a webhook of
 * the agent completes it at once.  Nobody relaunches it before
 * launching_at + grace_ms (its slot's new deadline), and then only on
 * evidence (docs/worker.md).  kind "in_doubt" or "fenced".
 */
int pb_slot_doubt(pb_ctx_t *ctx, const char *job_id, const char *token,
    int64_t grace_ms, const char *reason, pb_slot_result_t *res);

/* Completes a run found by polling/timeout/restart; kind "completed" or
 * "fenced" when someone else completed it first. */
int pb_slot_finish(pb_ctx_t *ctx, const char *job_id, const char *token,
    const pb_outcome_t *o, pb_slot_result_t *res);

/*
 * Applies one webhook and removes its envelope, the oldest of the
 * processing list, in the same step.  kind: "completed", "early" (its
 * launch is not recorded yet: held until it is), "duplicate" or
 * "unknown".  0, 1 when the envelope is not the oldest (nothing done),
 * -1 Redis failed.  (No dedupe marker check: see pb_webhook_t.)
 */
int pb_slot_webhook(pb_ctx_t *ctx, const char *processing,
    const char *envelope, const char *agent, const pb_outcome_t *o,
    pb_slot_result_t *res);

/* One webhook of a batch. */
typedef struct {
    const char    *envelope;
    const char    *agent;
    pb_outcome_t   outcome;

    /*
     * The audit row of the webhook should no job own its container (the
     * row audit_unknown writes, built by the worker: webhooks.c), or NULL.
     * With it, the webhook may take the way that keeps its payload out of
     * Lua (pb_slot_webhooks).
     */
    const char    *unknown_row;

    /*
     * The module's dedupe marker of the webhook's container,
     * "<queue>:seen:<containerId>" (the queue its envelope names), and the
     * request id its envelope carries; or both NULL, which is as if the
     * marker were missing.  A webhook whose container no job owns while
     * the marker holds another request id is a redelivery whose first
     * delivery was queued: one the module pushed, answered "duplicate" and
     * did not take back out (nginx died before its LREM, or the worker took
     * it first).  It is dropped with kind "duplicate", detail "seen": no
     * audit row.
     */
    const char    *seen_key;
    const char    *request_id;
} pb_webhook_t;

/*
 * pb_slot_webhook for n webhooks at once, in order, res[i] the result of
 * each.  Their envelopes must be the oldest of the processing list, oldest
 * first (a batch as taken, less those parked as invalid), and leave it
 * with their effects, atomically.
 *
 * Those with an unknown_row whose container no job owns, whose agent has
 * no launch in flight and whose dedupe marker is missing or holds their
 * own request id (one look, HMGETs and an MGET in one round trip, before)
 * go in runs the cheap way: their rows pushed to the outbox as the worker
 * built them, and a script that checks the look still holds, counts them
 * and removes their envelopes; the others in runs through the full script
 * (payloads in its arguments), which alone drops a webhook as a duplicate
 * by its marker.  All runs in one MULTI/EXEC: one round trip, each run
 * atomic and applied only after the runs before it.
 *
 * 0 when all were applied.  1 when not all were (res[i].kind "" for those
 * not): the list no longer ends with them (a worker that took us for dead
 * put them back on the queue), or a container turned out to be owned after
 * all; they stay where they are, for the next step.  -1 when Redis failed:
 * those not applied are still in the processing list.
 */
int pb_slot_webhooks(pb_ctx_t *ctx, const char *processing,
    const pb_webhook_t *w, size_t n, pb_slot_result_t *res);

/*
 * pb_slot_webhooks with the look already taken: unknown[i] 1 for each
 * webhook (with an unknown_row) whose container was seen nobody's (and
 * its marker missing or its own).  For the tests, which give it a look
 * that no longer holds.
 */
int pb_slot_webhooks_seen(pb_ctx_t *ctx, const char *processing,
    const pb_webhook_t *w, size_t n, const char *unknown,
    pb_slot_result_t *res);

#endif /* PB_SLOTS_H */
