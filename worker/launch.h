/*
 * One launch: claim a slot and a job, call agents/launch, and record what
 * came of it.  429 and parallelism refusals close the shared lane and put
 * the job back where it was, at no cost to its retry budget; 5xx and
 * network failures use the budget with backoff; other 4xx dead-letter at
 * once; an answer that never came leaves the job in doubt until evidence
 * (its webhook, or PhantomBuster's word on its agent's runs) settles it.
 */

#ifndef PB_LAUNCH_H
#define PB_LAUNCH_H

#include <stdint.h>

#include "ctx.h"

/*
 * Launches at most one job (ctx->api must be set).  Returns 1 when it did
 * something (call again), 0 when there is nothing to launch now
 * (*wait_ms: how long until there may be, -1 when only an event can
 * tell), -1 when Redis failed.
 */
int pb_launch_step(pb_ctx_t *ctx, int64_t *wait_ms);

/* How long a claim may take to be recorded before the monitor steps in. */
int64_t pb_launch_lease_ms(const pb_config_t *cfg);

#endif /* PB_LAUNCH_H */
