/*
 * Consuming the module's webhook envelopes, reliably: BLMOVE from the
 * queue's tail into this worker's processing list, apply, and let the
 * apply script remove the envelope in the same atomic step that records
 * its effect and queues its audit rows.  A crash at any point leaves the
 * envelope in the processing list, from where it is recovered and
 * re-applied; re-applying is a no-op.
 */

#ifndef PB_WEBHOOKS_H
#define PB_WEBHOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

/*
 * Waits up to timeout_ms for one envelope and handles it.  1 handled,
 * 0 nothing came, -1 Redis failed.
 */
int pb_webhooks_step(pb_ctx_t *ctx, int64_t timeout_ms);

/* Handles one envelope already in the processing list; 0 or -1. */
int pb_webhooks_handle(pb_ctx_t *ctx, const char *processing,
    const char *envelope, size_t len);

#endif /* PB_WEBHOOKS_H */
