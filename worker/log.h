/*
 * Logging: one JSON object per line on stderr, so supervisord (or any log
 * shipper) can store and parse the stream without a grammar of its own.
 *
 *   pb_log(PB_LOG_INFO, "launched", "{s:s, s:s}", "job", id, "container", c);
 *
 * The third argument is a jansson json_pack() format for an object of extra
 * fields, or NULL.  Secrets (the API key) must never be passed here.
 */

#ifndef PB_LOG_H
#define PB_LOG_H

#include <stdint.h>

typedef enum {
    PB_LOG_DEBUG = 0,
    PB_LOG_INFO,
    PB_LOG_WARN,
    PB_LOG_ERROR
} pb_log_level_t;

void pb_log_init(const char *program, const char *worker_id,
    pb_log_level_t min_level);

/* Parses "debug", "info", "warn" or "error"; -1 for anything else. */
int pb_log_level_parse(const char *name);

void pb_log(pb_log_level_t level, const char *msg, const char *fields_fmt,
    ...);

/* Milliseconds since the epoch, and ISO 8601 UTC text of one (24 bytes). */
int64_t pb_now_ms(void);
void pb_iso_time(int64_t ms, char out[64]);

#endif /* PB_LOG_H */
