/*
 * The worker registry: a heartbeat key per live worker (with a TTL), a set
 * of every worker id seen, and the recovery of a dead worker's in-flight
 * envelopes.  A worker that stops cleanly leaves; one that is killed is
 * found by the others once its heartbeat expires, and its processing list
 * goes back to the webhook queue.
 */

#ifndef PB_WORKERS_H
#define PB_WORKERS_H

#include "ctx.h"

/* Refreshes this worker's heartbeat when due (cheap to call often). */
void pb_workers_heartbeat(pb_ctx_t *ctx);

/* 1 alive, 0 dead (no heartbeat), -1 Redis failed. */
int pb_workers_alive(pb_ctx_t *ctx, const char *worker_id);

/* Recovers every dead worker's processing list and forgets the worker. */
void pb_workers_reap(pb_ctx_t *ctx);

/* Clean exit: drops the heartbeat and the registry entry. */
void pb_workers_leave(pb_ctx_t *ctx);

/* The processing list name of worker_id into buf; 0 or -1 (too long). */
int pb_processing_key(const pb_config_t *cfg, const char *worker_id,
    char *buf, size_t cap);

#endif /* PB_WORKERS_H */
