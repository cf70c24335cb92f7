/*
 * Configuration: one table binds each setting to its environment variable
 * and its flag, so the two can never drift apart.  See config.h.
 */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "pb_keys.h"

typedef enum {
    OPT_STR,
    OPT_INT,        /* a non-negative integer */
    OPT_SECONDS,    /* seconds, fractions allowed; stored as int64 ms */
    OPT_BOOL,       /* flag without a value; env "1"/"true"/"yes" */
    OPT_LEVEL       /* a log level name */
} opt_type_t;

typedef struct {
    const char  *flag;
    const char  *env;
    opt_type_t   type;
    size_t       offset;
    size_t       size;          /* OPT_STR: capacity */
    const char  *def;
} opt_t;

#define STR(field)  OPT_STR, offsetof(pb_config_t, field),                    \
                    sizeof(((pb_config_t *) 0)->field)
#define NUM(t, field)  t, offsetof(pb_config_t, field), 0

static const opt_t  options[] = {
    { "--redis-url", "REDIS_URL", STR(redis_url), "redis://127.0.0.1:6379/0" },
    { "--audit-url", "AUDIT_DATABASE_URL", STR(audit_url),
      "sqlite:./pb_audit.db" },
    { "--api-url", "PHANTOMBUSTER_API_URL", STR(api_url),
      "https://api.phantombuster.com" },
    { "--queue", "PB_WEBHOOK_QUEUE", STR(queue), PB_DEFAULT_QUEUE },
    { "--worker-id", "PB_WORKER_ID", STR(worker_id), NULL },
    { "--max-running", "PB_MAX_RUNNING", NUM(OPT_INT, max_running), "1" },
    { "--calls-per-minute", "PB_API_CALLS_PER_MINUTE",
      NUM(OPT_INT, calls_per_minute), "60" },
    { "--max-attempts", "PB_MAX_ATTEMPTS", NUM(OPT_INT, max_attempts), "5" },
    { "--poll", "PB_POLL_MODE", NUM(OPT_BOOL, poll_mode), "0" },
    { "--log-level", "PB_LOG_LEVEL", NUM(OPT_LEVEL, log_level), "info" },
    { "--timeout", "SEQUENTIAL_QUEUE_TIMEOUT",
      NUM(OPT_SECONDS, run_timeout_ms), "1800" },
    { "--poll-interval", "PB_POLL_INTERVAL",
      NUM(OPT_SECONDS, poll_interval_ms), "60" },
    { "--monitor-interval", "PB_MONITOR_INTERVAL",
      NUM(OPT_SECONDS, monitor_interval_ms), "5" },
    { "--http-timeout", "PB_HTTP_TIMEOUT",
      NUM(OPT_SECONDS, http_timeout_ms), "8" },
    { "--backoff-base", "PB_BACKOFF_BASE",
      NUM(OPT_SECONDS, backoff_base_ms), "1" },
    { "--backoff-cap", "PB_BACKOFF_CAP",
      NUM(OPT_SECONDS, backoff_cap_ms), "300" },
    { "--retry-after-cap", "PB_RETRY_AFTER_CAP",
      NUM(OPT_SECONDS, retry_after_cap_ms), "3600" },
    { "--heartbeat-ttl", "PB_HEARTBEAT_TTL",
      NUM(OPT_SECONDS, heartbeat_ttl_ms), "30" },
    { "--keep-finished", "PB_KEEP_FINISHED",
      NUM(OPT_SECONDS, keep_finished_ms), "604800" },
};

#define NOPTIONS  (sizeof(options) / sizeof(options[0]))

const char  pb_config_usage[] =
    "  --redis-url URL        REDIS_URL (redis://host:port/db, unix:///path)\n"
    "  --audit-url URL        AUDIT_DATABASE_URL (sqlite:PATH, postgresql://)\n"
    "  --api-url URL          PHANTOMBUSTER_API_URL\n"
    "  --api-key-file PATH    PHANTOMBUSTER_API_KEY_FILE (or ..._API_KEY)\n"
    "  --queue NAME           PB_WEBHOOK_QUEUE (the module's queue)\n"
    "  --worker-id ID         PB_WORKER_ID (default host:pid)\n"
    "  --max-running N        PB_MAX_RUNNING, runs in flight, all workers\n"
    "  --calls-per-minute N   PB_API_CALLS_PER_MINUTE, shared (0 = off)\n"
    "  --max-attempts N       PB_MAX_ATTEMPTS, launch tries on 5xx/network\n"
    "  --poll                 PB_POLL_MODE=1: no webhooks, poll the runs\n"
    "  --poll-interval S      PB_POLL_INTERVAL\n"
    "  --timeout S            SEQUENTIAL_QUEUE_TIMEOUT, webhook deadline\n"
    "  --monitor-interval S   PB_MONITOR_INTERVAL\n"
    "  --http-timeout S       PB_HTTP_TIMEOUT, per API call\n"
    "  --backoff-base S       PB_BACKOFF_BASE\n"
    "  --backoff-cap S        PB_BACKOFF_CAP\n"
    "  --retry-after-cap S    PB_RETRY_AFTER_CAP, longest Retry-After obeyed\n"
    "  --heartbeat-ttl S      PB_HEARTBEAT_TTL, silence that means dead\n"
    "  --keep-finished S      PB_KEEP_FINISHED, finished jobs kept in Redis\n"
    "                         (default 7 days, 0 = forever)\n"
    "  --log-level LEVEL      PB_LOG_LEVEL (debug, info, warn, error)\n";


static int
fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);

    return -1;
}


static int
set_option(pb_config_t *cfg, const opt_t *o, const char *value,
    const char *origin, char *err, size_t err_len)
{
    char       *end;
    char       *field = (char *) cfg + o->offset;
    long long   n;
    double      seconds;

    switch (o->type) {

    case OPT_STR:
        if (strlen(value) >= o->size) {
            return fail(err, err_len, "%s: value too long", origin);
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;

    case OPT_INT:
        errno = 0;
        n = strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || n < 0
            || n > 1000000000)
        {
            return fail(err, err_len, "%s: \"%s\" is not a non-negative "
                        "integer", origin, value);
        }
        *(int *) field = (int) n;
        return 0;

    case OPT_SECONDS:
        errno = 0;
        seconds = strtod(value, &end);
        if (errno != 0 || end == value || *end != '\0' || !isfinite(seconds)
            || seconds < 0 || seconds > 1e9)
        {
            return fail(err, err_len, "%s: \"%s\" is not a number of "
                        "seconds", origin, value);
        }
        *(int64_t *) field = (int64_t) llround(seconds * 1000);
        return 0;

    case OPT_BOOL:
        *(int *) field = strcmp(value, "1") == 0 || strcmp(value, "true") == 0
                         || strcmp(value, "yes") == 0;
        return 0;

    case OPT_LEVEL:
        break;
    }

    n = pb_log_level_parse(value);
    if (n < 0) {
        return fail(err, err_len, "%s: \"%s\" is not a log level "
                    "(debug, info, warn, error)", origin, value);
    }
    *(int *) field = (int) n;

    return 0;
}


static int
read_key_file(pb_config_t *cfg, const char *path, char *err, size_t err_len)
{
    FILE    *f;
    size_t   n;

    f = fopen(path, "r");
    if (f == NULL) {
        return fail(err, err_len, "cannot read the API key file %s: %s",
                    path, strerror(errno));
    }

    n = fread(cfg->api_key, 1, sizeof(cfg->api_key) - 1, f);
    fclose(f);
    cfg->api_key[n] = '\0';

    /* key files usually end with a newline */
    while (n > 0 && (cfg->api_key[n - 1] == '\n' || cfg->api_key[n - 1] == '\r'
                     || cfg->api_key[n - 1] == ' '))
    {
        cfg->api_key[--n] = '\0';
    }

    return 0;
}


int
pb_config_from_env(pb_config_t *cfg, char *err, size_t err_len)
{
    size_t       i;
    const char  *value;
    char         host[64];

    memset(cfg, 0, sizeof(*cfg));

    for (i = 0; i < NOPTIONS; i++) {
        value = getenv(options[i].env);
        if (value == NULL || value[0] == '\0') {
            value = options[i].def;
        }
        if (value != NULL
            && set_option(cfg, &options[i], value, options[i].env, err,
                          err_len) != 0)
        {
            return -1;
        }
    }

    if (cfg->worker_id[0] == '\0') {
        if (gethostname(host, sizeof(host)) != 0) {
            strcpy(host, "localhost");
        }
        host[sizeof(host) - 1] = '\0';
        snprintf(cfg->worker_id, sizeof(cfg->worker_id), "%s:%ld", host,
                 (long) getpid());
    }

    value = getenv("PHANTOMBUSTER_API_KEY");
    if (value != NULL && value[0] != '\0') {
        if (strlen(value) >= sizeof(cfg->api_key)) {
            return fail(err, err_len, "PHANTOMBUSTER_API_KEY: too long");
        }
        memcpy(cfg->api_key, value, strlen(value) + 1);

    } else {
        value = getenv("PHANTOMBUSTER_API_KEY_FILE");
        if (value != NULL && value[0] != '\0'
            && read_key_file(cfg, value, err, err_len) != 0)
        {
            return -1;
        }
    }

    return 0;
}


int
pb_config_flag(pb_config_t *cfg, int argc, char **argv, int *i, char *err,
    size_t err_len)
{
    size_t       k, len;
    const char  *arg = argv[*i], *value, *eq;

    if (strncmp(arg, "--api-key=", 10) == 0 || strcmp(arg, "--api-key") == 0) {
        return fail(err, err_len, "--api-key is not accepted: the key would "
                    "show in ps; use PHANTOMBUSTER_API_KEY or "
                    "--api-key-file");
    }

    eq = strchr(arg, '=');
    len = eq ? (size_t) (eq - arg) : strlen(arg);

    if (len == strlen("--api-key-file")
        && strncmp(arg, "--api-key-file", len) == 0)
    {
        value = eq ? eq + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
        if (value == NULL) {
            return fail(err, err_len, "--api-key-file needs a value");
        }
        (*i)++;
        return read_key_file(cfg, value, err, err_len) == 0 ? 1 : -1;
    }

    for (k = 0; k < NOPTIONS; k++) {
        if (strlen(options[k].flag) != len
            || strncmp(arg, options[k].flag, len) != 0)
        {
            continue;
        }

        if (options[k].type == OPT_BOOL && eq == NULL) {
            value = "1";

        } else if (eq != NULL) {
            value = eq + 1;

        } else if (*i + 1 < argc) {
            value = argv[++*i];

        } else {
            return fail(err, err_len, "%s needs a value", options[k].flag);
        }

        (*i)++;
        return set_option(cfg, &options[k], value, options[k].flag, err,
                          err_len) == 0 ? 1 : -1;
    }

    return 0;
}


int
pb_config_check(const pb_config_t *cfg, char *err, size_t err_len)
{
    if (cfg->max_running < 1) {
        return fail(err, err_len, "max running (PB_MAX_RUNNING) must be at "
                    "least 1");
    }

    if (cfg->run_timeout_ms < 1000) {
        return fail(err, err_len, "SEQUENTIAL_QUEUE_TIMEOUT must be at least "
                    "1 second");
    }

    if (cfg->http_timeout_ms < 100 || cfg->poll_interval_ms < 100
        || cfg->monitor_interval_ms < 100 || cfg->heartbeat_ttl_ms < 1000)
    {
        return fail(err, err_len, "HTTP timeout, poll and monitor intervals "
                    "must be at least 0.1 s, the heartbeat TTL at least 1 s");
    }

    if (cfg->backoff_base_ms < 1 || cfg->backoff_cap_ms < cfg->backoff_base_ms)
    {
        return fail(err, err_len, "backoff base must be > 0 and not above "
                    "the cap");
    }

    if (strchr(cfg->worker_id, ' ') != NULL || cfg->worker_id[0] == '\0') {
        return fail(err, err_len, "worker id must be non-empty, without "
                    "spaces");
    }

    return 0;
}
