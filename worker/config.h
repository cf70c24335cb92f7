/*
 * Configuration shared by pb-worker and pbctl: the environment first, then
 * command-line flags on top.  The API key is read from the environment or
 * a file only, never from the command line, and is never logged.
 */

#ifndef PB_CONFIG_H
#define PB_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char     redis_url[512];
    char     audit_url[1024];
    char     api_url[512];
    char     api_key[256];          /* secret: never log, never print */
    char     queue[256];            /* the module's phantombuster_queue */
    char     worker_id[128];
    int      max_running;           /* launch slots across all workers */
    int      calls_per_minute;      /* shared outbound throttle, 0 = off */
    int      max_attempts;          /* launch tries on 5xx/network errors */
    int      poll_mode;             /* no webhooks: poll running containers */
    int      log_level;
    int64_t  run_timeout_ms;        /* SEQUENTIAL_QUEUE_TIMEOUT */
    int64_t  poll_interval_ms;
    int64_t  monitor_interval_ms;
    int64_t  http_timeout_ms;
    int64_t  backoff_base_ms;
    int64_t  backoff_cap_ms;
    int64_t  retry_after_cap_ms;
    int64_t  heartbeat_ttl_ms;
    int64_t  keep_finished_ms;      /* finished jobs in Redis, 0 = forever */
} pb_config_t;

/*
 * Fills cfg with the defaults and the environment.  Returns 0, or -1 with
 * a one-line message in err (a malformed number, an unreadable key file).
 */
int pb_config_from_env(pb_config_t *cfg, char *err, size_t err_len);

/*
 * Tries argv[*i] as one of the shared flags ("--redis-url URL",
 * "--max-running N", ...; "--flag=value" works too).  Returns 1 when it
 * was one (advancing *i past its value), 0 when it is not a shared flag,
 * -1 with err filled when it was one with a bad or missing value.
 */
int pb_config_flag(pb_config_t *cfg, int argc, char **argv, int *i,
    char *err, size_t err_len);

/* Checks cross-field rules after all flags; -1 with err on failure. */
int pb_config_check(const pb_config_t *cfg, char *err, size_t err_len);

/* The "--flag VALUE  help (ENV)" lines for usage texts. */
extern const char  pb_config_usage[];

#endif /* PB_CONFIG_H */
