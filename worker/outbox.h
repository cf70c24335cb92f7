/*
 * The audit outbox.  Every script that changes a job pushes the audit
 * rows of that change onto one Redis list in the same atomic step; the
 * flusher writes them to the database oldest first, in batches (one read,
 * one transaction, one removal each), and removes a batch only after the
 * database committed it.  So a database outage stops nothing and loses
 * nothing (rows wait in Redis), and a crash between the commit and the
 * removal replays idempotent upserts.  A row the database refuses is
 * moved to the failed list without holding up the rows around it.  One
 * flusher at a time (a Redis lock) keeps the rows in order.
 */

#ifndef PB_OUTBOX_H
#define PB_OUTBOX_H

#include "ctx.h"

typedef struct pb_outbox_s  pb_outbox_t;

/* Nothing is opened yet: the database is reached lazily by the flusher. */
pb_outbox_t *pb_outbox_new(const char *audit_url);
void pb_outbox_free(pb_outbox_t *ob);

/*
 * Writes up to max rows.  Returns the number written, -1 when Redis
 * failed; a database that is down is logged once and retried later (with
 * backoff: until then this returns 0 at once).  0 at once while the
 * flusher thread runs: it does the writing.
 */
int pb_outbox_flush(pb_outbox_t *ob, pb_ctx_t *ctx, int max);

/*
 * Flushes from a thread of its own, with its own Redis connection, until
 * pb_outbox_stop: the worker's loop then never waits on the database (a
 * commit's fsync, a PostgreSQL that takes its connect timeout to fail),
 * and writing overlaps Redis applying the next webhooks.  The thread
 * shares nothing with the loop but cfg (read only) and the log.  0, or -1
 * (then flush from the loop).
 */
int pb_outbox_start(pb_outbox_t *ob, const pb_config_t *cfg);

/*
 * Stops the thread once its batch is done.  -1 when it did not stop in
 * time (a database call hung): then the outbox must not be freed.
 */
int pb_outbox_stop(pb_outbox_t *ob);

#endif /* PB_OUTBOX_H */
