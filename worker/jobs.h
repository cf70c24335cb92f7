/*
 * Jobs: the pending queue, its ordering, and the dead-letter set.
 *
 * Pending jobs are a sorted set scored -priority * 2^32 + seq (seq from a
 * counter), so ZRANGE order is "highest priority first, then first come".
 * A job's fields live in its own hash.  docs/redis-layout.md describes
 * both for applications that enqueue without pbctl.
 */

#ifndef PB_JOBS_H
#define PB_JOBS_H

#include <stdint.h>

#include <jansson.h>

#include "ctx.h"

#define PB_JOB_ID_MAX        128
#define PB_PRIORITY_MIN      (-1000000L)
#define PB_PRIORITY_MAX      1000000L

/* 1 when id is 1..PB_JOB_ID_MAX characters of [A-Za-z0-9_.:-]. */
int pb_job_id_valid(const char *id);

/* A fresh id: "job-<ms since epoch>-<8 hex digits>". */
void pb_job_id_generate(char out[PB_JOB_ID_MAX + 1]);

typedef struct {
    int        created;             /* 0: the id existed, nothing done */
    long long  position;            /* 1-based place in line, when created */
    char       state[16];           /* the existing job's state otherwise */
} pb_enqueue_result_t;

/*
 * Adds a job (argument: JSON text or NULL), queues its "pending" audit row,
 * atomically.  An existing id is left alone.  0, or -1 when Redis failed.
 */
int pb_job_enqueue(pb_ctx_t *ctx, const char *job_id, const char *agent,
    const char *argument, long priority, const char *source,
    pb_enqueue_result_t *res);

/* The job's hash as an object, NULL when there is no such job. */
json_t *pb_job_get(pb_ctx_t *ctx, const char *job_id);

/*
 * Jobs of one set ("pending", "retry", "running", "dead", "done"), in the
 * set's order (done: newest first), at most limit; each object carries the
 * set's score as "rank_score".  NULL when Redis failed.
 */
json_t *pb_jobs_list(pb_ctx_t *ctx, const char *set, long limit);

/* 1 if the set name is one pb_jobs_list knows. */
int pb_jobs_set_valid(const char *set);

/*
 * Dead letter -> pending at the back of its priority, attempts reset, its
 * audit row reset to pending.  1: done, 0: not in the dead-letter set,
 * -1: Redis failed.
 */
int pb_dlq_retry(pb_ctx_t *ctx, const char *job_id);

/* Forgets every dead-lettered job; the count, or -1. */
long long pb_dlq_purge(pb_ctx_t *ctx);

/*
 * Forgets finished jobs (success, failed, timed_out) that finished more
 * than keep_ms ago, the oldest first, at most limit of them: Redis keeps
 * what the pipeline needs, the audit log keeps the history.  A webhook
 * for a forgotten job's container is then audited as unknown.  The
 * count, or -1 when Redis failed.
 */
long long pb_jobs_forget_finished(pb_ctx_t *ctx, int64_t keep_ms, long limit);

#endif /* PB_JOBS_H */
