/*
 * The lane to PhantomBuster, shared by every worker through Redis: closed
 * for everyone when any worker gets a 429 or a parallelism refusal, and
 * metered by the calls-per-minute throttle.  Launches check both inside the
 * claim script; the other calls (fetch, stop) go through pb_lane_acquire.
 */

#ifndef PB_LANE_H
#define PB_LANE_H

#include <stdint.h>

#include "api.h"
#include "ctx.h"

/*
 * How long to close the lane after a 429/refusal: the Retry-After when
 * the answer had one, otherwise full-jitter exponential backoff on the
 * shared streak of refusals (reset by the next successful launch).
 */
int64_t pb_lane_backoff_ms(pb_ctx_t *ctx, const pb_api_result_t *res);

/* Closes the lane for ms (never shortens a longer closure). */
void pb_lane_close(pb_ctx_t *ctx, int64_t ms);

/*
 * One API call's permission: 0 when granted (and counted), otherwise the
 * ms to wait (lane closed or throttle spent); -1 when Redis failed.
 */
int64_t pb_lane_acquire(pb_ctx_t *ctx);

#endif /* PB_LANE_H */
