/*
 * pb-worker: launches PhantomBuster agents one run at a time (or up to
 * PB_MAX_RUNNING across every worker), driven by the webhooks the nginx
 * module queues in Redis.  Runs in the foreground under supervisord, logs
 * JSON lines on stderr, and on SIGTERM finishes its current step and exits
 * 0.  docs/worker.md describes the loop.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>

#include "commands.h"
#include "config.h"
#include "ctx.h"
#include "launch.h"
#include "log.h"
#include "monitor.h"
#include "outbox.h"
#include "version.h"
#include "webhooks.h"
#include "workers.h"

/* Longest wait for a webhook in one turn: bounds the SIGTERM latency. */
#define PB_TURN_MS         1000
/* Audit rows written per turn when there is no flusher thread: more than
 * a turn's webhooks (a batch) queue, so the outbox keeps up. */
#define PB_OUTBOX_BATCH    1000

static volatile sig_atomic_t  stopping;


static void
on_signal(int sig)
{
    (void) sig;
    stopping = 1;
}


static void
usage(FILE *out)
{
    fprintf(out,
            "usage: pb-worker [flags]\n"
            "\n"
            "Launches queued PhantomBuster jobs, one run at a time, driven\n"
            "by the webhooks the nginx module queues in Redis.  Every flag\n"
            "has an environment variable; the API key is read from the\n"
            "environment or a file only.\n"
            "\n%s"
            "  --help, --version\n", pb_config_usage);
}


static int
parse_args(pb_config_t *cfg, int argc, char **argv)
{
    char  err[512];
    int   i = 1, rc;

    if (pb_config_from_env(cfg, err, sizeof(err)) != 0) {
        goto bad;
    }

    while (i < argc) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }

        if (strcmp(argv[i], "--version") == 0) {
            printf("pb-worker %s\n", PB_VERSION);
            exit(0);
        }

        rc = pb_config_flag(cfg, argc, argv, &i, err, sizeof(err));
        if (rc < 0) {
            goto bad;
        }
        if (rc == 0) {
            snprintf(err, sizeof(err), "unknown argument \"%s\" (see --help)",
                     argv[i]);
            goto bad;
        }
    }

    if (pb_config_check(cfg, err, sizeof(err)) != 0) {
        goto bad;
    }

    if (cfg->api_key[0] == '\0') {
        snprintf(err, sizeof(err), "no API key: set PHANTOMBUSTER_API_KEY or "
                 "PHANTOMBUSTER_API_KEY_FILE");
        goto bad;
    }

    return 0;

bad:

    fprintf(stderr, "pb-worker: %s\n", err);

    return -1;
}


static void
sleep_ms(int64_t ms)
{
    struct timespec  ts;

    ts.tv_sec = (time_t) (ms / 1000);
    ts.tv_nsec = (long) (ms % 1000) * 1000000L;

    /* a signal cuts it short, which is what SIGTERM wants */
    nanosleep(&ts, NULL);
}


/* One turn of the loop; returns how long the next wait may be (ms). */
static int
turn(pb_ctx_t *ctx, pb_outbox_t *outbox)
{
    int64_t  wait = -1, block = PB_TURN_MS;
    int      rc = 0;

    pb_workers_heartbeat(ctx);

    if (pb_outbox_flush(outbox, ctx, PB_OUTBOX_BATCH) < 0
        || pb_commands_step(ctx) < 0
        || pb_monitor_step(ctx) < 0)
    {
        return -1;
    }

    /* launch while there are free slots and jobs */
    while (!stopping && (rc = pb_launch_step(ctx, &wait)) > 0) {
        pb_workers_heartbeat(ctx);
    }

    if (rc < 0) {
        return -1;
    }

    if (stopping) {
        return 0;
    }

    if (wait >= 0 && wait < block) {
        block = wait > 10 ? wait : 10;
    }

    if (ctx->cfg->poll_mode) {
        sleep_ms(block);
        return 0;
    }

    return pb_webhooks_step(ctx, block) < 0 ? -1 : 0;
}


int
main(int argc, char **argv)
{
    char              err[512];
    int               exit_code = 1;
    pb_ctx_t          ctx;
    pb_config_t       cfg;
    pb_outbox_t      *outbox = NULL;
    struct sigaction  sa;

    if (parse_args(&cfg, argc, argv) != 0) {
        return 2;
    }

    pb_log_init("pb-worker", cfg.worker_id, (pb_log_level_t) cfg.log_level);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    curl_global_init(CURL_GLOBAL_DEFAULT);

    memset(&ctx, 0, sizeof(ctx));
    ctx.cfg = &cfg;
    ctx.stopping = &stopping;

    /* the command timeout must outlast the longest BLMOVE block */
    ctx.redis = pb_redis_open(cfg.redis_url, PB_TURN_MS + 5000, err,
                              sizeof(err));
    if (ctx.redis == NULL) {
        pb_log(PB_LOG_ERROR, "bad configuration", "{s:s}", "error", err);
        goto done;
    }

    ctx.api = pb_api_new(cfg.api_url, cfg.api_key, cfg.http_timeout_ms,
                         cfg.retry_after_cap_ms);
    outbox = pb_outbox_new(cfg.audit_url);
    if (ctx.api == NULL || outbox == NULL) {
        pb_log(PB_LOG_ERROR, "out of memory", NULL);
        goto done;
    }

    /* the database is written from a thread of its own; without one,
     * from the loop (pb_outbox_flush below) */
    if (pb_outbox_start(outbox, &cfg) != 0) {
        pb_log(PB_LOG_WARN, "no audit flusher thread; flushing from the loop",
               NULL);
    }

    pb_log(PB_LOG_INFO, "starting",
           "{s:s, s:s, s:i, s:b, s:I, s:i, s:s}", "version", PB_VERSION,
           "queue", cfg.queue, "max_running", cfg.max_running,
           "poll_mode", cfg.poll_mode,
           "timeout_s", (json_int_t) (cfg.run_timeout_ms / 1000),
           "calls_per_minute", cfg.calls_per_minute, "api_url", cfg.api_url);

    while (!stopping) {
        if (turn(&ctx, outbox) < 0 && !stopping) {
            /* Redis is away: the connection retries, we do not spin */
            sleep_ms(500);
        }
    }

    /*
     * No last flush of the outbox: a slow or absent database could hold us
     * past supervisord's patience, and the rows wait safely in Redis for
     * the next flusher.  The flusher thread ends with its current batch
     * (pb_outbox_free).
     */
    pb_log(PB_LOG_INFO, "stopping", NULL);
    pb_workers_leave(&ctx);
    exit_code = 0;

    pb_log(PB_LOG_INFO, "stopped", NULL);

done:

    pb_outbox_free(outbox);
    pb_api_free(ctx.api);
    pb_redis_close(ctx.redis);
    curl_global_cleanup();

    return exit_code;
}
