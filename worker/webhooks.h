/*
 * Consuming the module's webhook envelopes, reliably: move a batch from
 * the queue's tail into this worker's processing list (one script; BLMOVE
 * when the queue is empty), apply each, and let its apply script remove
 * it in the same atomic step that records its effect and queues its audit
 * rows.  A crash at any point leaves the envelopes not yet applied in the
 * processing list, from where they are recovered and re-applied;
 * re-applying is a no-op.
 */

#ifndef PB_WEBHOOKS_H
#define PB_WEBHOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

/*
 * Handles the queued envelopes, up to a batch, oldest first (this worker's
 * own leftovers before them); with none queued, waits up to timeout_ms
 * for one.  Returns how many were handled (0: nothing came), -1 when
 * Redis failed.
 */
int pb_webhooks_step(pb_ctx_t *ctx, int64_t timeout_ms);

/* Handles one envelope already in the processing list; 0 or -1. */
int pb_webhooks_handle(pb_ctx_t *ctx, const char *processing,
    const char *envelope, size_t len);

#endif /* PB_WEBHOOKS_H */
