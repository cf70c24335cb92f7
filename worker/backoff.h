/*
 * Backoff arithmetic, kept free of I/O so it can be tested exactly.
 */

#ifndef PB_BACKOFF_H
#define PB_BACKOFF_H

#include <stdint.h>

/* min(cap, base * 2^level), without overflowing for any level. */
int64_t pb_backoff_ceiling(int64_t base_ms, int64_t cap_ms, unsigned level);

/*
 * "Full jitter": uniform in [0, ceiling] using the random value r, so
 * workers that were refused together do not come back together.
 */
int64_t pb_backoff_full_jitter(int64_t base_ms, int64_t cap_ms,
    unsigned level, uint64_t r);

/*
 * A Retry-After header value (delta-seconds or an HTTP-date) as
 * milliseconds from now_ms, capped at cap_ms; -1 when absent or invalid.
 * A date in the past gives 0.
 */
int64_t pb_retry_after_ms(const char *value, int64_t now_ms, int64_t cap_ms);

/* 64 random bits from the kernel (a counter-mixed fallback if that fails). */
uint64_t pb_random64(void);

#endif /* PB_BACKOFF_H */
