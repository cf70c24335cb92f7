/*
 * The audit outbox flusher.  See outbox.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "backoff.h"
#include "log.h"
#include "outbox.h"
#include "pb_keys.h"

struct pb_outbox_s {
    char         url[1024];
    pb_audit_t  *audit;
    int64_t      retry_at_ms;       /* database down: not before this */
    unsigned     failures;          /* consecutive, for the backoff */
};

/*
 * KEYS: 1 outbox, 2 where to move the row ("" drops it), 3 metrics.
 * ARGV: 1 the row, 2 the metric to bump.  Only if it is still the oldest:
 * another flusher whose lock expired may have taken it meanwhile.
 */
static pb_script_t  pop_script = { "outbox_pop",
    "if redis.call('LINDEX', KEYS[1], -1) ~= ARGV[1] then return 0 end\n"
    "redis.call('RPOP', KEYS[1])\n"
    "if KEYS[2] ~= '' then redis.call('LPUSH', KEYS[2], ARGV[1]) end\n"
    "redis.call('HINCRBY', KEYS[3], ARGV[2], 1)\n"
    "return 1\n",
    ""
};


pb_outbox_t *
pb_outbox_new(const char *audit_url)
{
    pb_outbox_t  *ob = calloc(1, sizeof(*ob));

    if (ob != NULL) {
        snprintf(ob->url, sizeof(ob->url), "%s", audit_url);
    }

    return ob;
}


void
pb_outbox_free(pb_outbox_t *ob)
{
    if (ob == NULL) {
        return;
    }

    pb_audit_close(ob->audit);
    free(ob);
}


static void
backoff(pb_outbox_t *ob, const char *what, const char *error)
{
    int64_t  delay = 250 + pb_backoff_full_jitter(500, 10000, ob->failures,
                                                  pb_random64());

    if (ob->failures++ == 0) {
        pb_log(PB_LOG_ERROR, "audit database unavailable; rows wait in Redis",
               "{s:s, s:s}", "step", what, "error", error);
    }

    ob->retry_at_ms = pb_now_ms() + delay;
}


static int
open_audit(pb_outbox_t *ob)
{
    char  err[512];

    if (ob->audit == NULL) {
        ob->audit = pb_audit_open(ob->url, err, sizeof(err));
        if (ob->audit == NULL) {
            backoff(ob, "open", err);
            return -1;
        }
    }

    if (pb_audit_migrate(ob->audit, err, sizeof(err)) != PB_AUDIT_OK) {
        backoff(ob, "migrate", err);
        /* reopened next time: a half-open handle helps nobody */
        pb_audit_close(ob->audit);
        ob->audit = NULL;
        return -1;
    }

    return 0;
}


/* Applies one outbox row; PB_AUDIT_* */
static pb_audit_rc_t
apply_row(pb_outbox_t *ob, const char *text, char *err, size_t err_len)
{
    char               *metadata = NULL;
    json_t             *row, *md;
    const char         *op;
    pb_audit_rc_t       rc;
    pb_audit_update_t   u;

    row = json_loads(text, 0, NULL);
    if (!json_is_object(row)) {
        json_decref(row);
        snprintf(err, err_len, "outbox row is not a JSON object");
        return PB_AUDIT_FAIL;
    }

    md = json_object_get(row, "metadata");
    if (json_is_object(md)) {
        metadata = json_dumps(md, JSON_COMPACT | JSON_PRESERVE_ORDER);
    }

    op = json_string_value(json_object_get(row, "op"));

    memset(&u, 0, sizeof(u));
    u.job_id = json_string_value(json_object_get(row, "job_id"));
    u.agent_id = json_string_value(json_object_get(row, "agent_id"));
    u.status = json_string_value(json_object_get(row, "status"));
    u.container_id = json_string_value(json_object_get(row, "container_id"));
    u.webhook_payload = json_string_value(json_object_get(row,
                                                          "webhook_payload"));
    u.metadata = metadata;

    if (op != NULL && strcmp(op, "reset") == 0) {
        rc = pb_audit_reset(ob->audit, u.job_id, metadata, err, err_len);

    } else {
        rc = pb_audit_apply(ob->audit, &u, err, err_len);
    }

    free(metadata);
    json_decref(row);

    return rc;
}


static int
pop(pb_ctx_t *ctx, const char *row, const char *to, const char *metric)
{
    const char  *keys[] = { PB_KEY_OUTBOX, to, PB_KEY_METRICS, NULL };
    const char  *argv[] = { row, metric, NULL };
    redisReply  *reply;

    reply = pb_redis_eval(ctx->redis, &pop_script, keys, argv);
    freeReplyObject(reply);

    return reply ? 0 : -1;
}


int
pb_outbox_flush(pb_outbox_t *ob, pb_ctx_t *ctx, int max)
{
    char           err[512];
    int            written = 0;
    redisReply    *reply = NULL;
    pb_audit_rc_t  rc;

    if (pb_now_ms() < ob->retry_at_ms) {
        return 0;
    }

    if (!pb_redis_lock(ctx->redis, PB_KEY_OUTBOX_LOCK, ctx->cfg->worker_id,
                       30000))
    {
        return pb_redis_connected(ctx->redis) ? 0 : -1;
    }

    while (written < max) {
        reply = pb_redis_cmd(ctx->redis, "LINDEX %s -1", PB_KEY_OUTBOX);
        if (reply == NULL) {
            written = -1;
            break;
        }

        if (reply->type != REDIS_REPLY_STRING) {
            break;      /* empty */
        }

        if (ob->audit == NULL && open_audit(ob) != 0) {
            break;
        }

        rc = apply_row(ob, reply->str, err, sizeof(err));

        if (rc == PB_AUDIT_RETRY) {
            backoff(ob, "write", err);
            break;
        }

        if (rc == PB_AUDIT_FAIL) {
            /* a row the database will never take: keep it for a human */
            pb_log(PB_LOG_ERROR, "audit row rejected; moved aside",
                   "{s:s, s:s}", "error", err, "list", PB_KEY_OUTBOX_FAILED);
            pop(ctx, reply->str, PB_KEY_OUTBOX_FAILED, "audit_rejected");

        } else {
            if (ob->failures > 0) {
                pb_log(PB_LOG_INFO, "audit database back", NULL);
                ob->failures = 0;
            }
            if (pop(ctx, reply->str, "", "audit_written") != 0) {
                written = -1;
                break;
            }
            written++;
        }

        freeReplyObject(reply);
        reply = NULL;
    }

    freeReplyObject(reply);
    pb_redis_unlock(ctx->redis, PB_KEY_OUTBOX_LOCK, ctx->cfg->worker_id);

    return written;
}
