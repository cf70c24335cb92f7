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

/*
 * Rows per database transaction.  A commit costs an fsync (SQLite) or a
 * round trip (PostgreSQL) whatever it holds, so rows share it; 500 makes
 * it noise per row while one batch stays a few milliseconds of work, far
 * inside the lock's TTL, and one read of the outbox under a megabyte.
 */
#define PB_OUTBOX_BATCH_ROWS  500

#define PB_OUTBOX_LOCK_MS     30000

struct pb_outbox_s {
    char           url[1024];
    pb_audit_t    *audit;
    int64_t        retry_at_ms;     /* database down: not before this */
    unsigned       failures;        /* consecutive, for the backoff */

    /* the batch being written, oldest row first */
    size_t         n;
    json_t        *rows[PB_OUTBOX_BATCH_ROWS];
    char          *metadata[PB_OUTBOX_BATCH_ROWS];
    pb_audit_op_t  ops[PB_OUTBOX_BATCH_ROWS];
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

/*
 * Removes the n oldest rows once the database holds them.  KEYS: 1 outbox,
 * 2 the flusher lock, 3 metrics.  ARGV: 1 our lock value, 2 n, 3 the
 * oldest row written, 4 the newest.  Only while we still hold the lock
 * (else another flusher may have removed them and the tail is newer rows
 * nobody wrote yet) and both ends are still where we read them, which
 * also catches the list being replaced under us (a DEL, a restore).
 */
static pb_script_t  trim_script = { "outbox_trim",
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "local n = tonumber(ARGV[2])\n"
    "if redis.call('LINDEX', KEYS[1], -1) ~= ARGV[3]\n"
    "   or redis.call('LINDEX', KEYS[1], -n) ~= ARGV[4] then\n"
    "  return 0\n"
    "end\n"
    "redis.call('LTRIM', KEYS[1], 0, -n - 1)\n"
    "redis.call('HINCRBY', KEYS[3], 'audit_written', n)\n"
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


/* Fills ob->ops[i] from one outbox row; -1 when it is not a JSON object. */
static int
parse_row(pb_outbox_t *ob, size_t i, const char *text, size_t len)
{
    json_t         *row, *md;
    const char     *op;
    pb_audit_op_t  *o = &ob->ops[i];

    row = json_loadb(text, len, 0, NULL);
    if (!json_is_object(row)) {
        json_decref(row);
        return -1;
    }

    md = json_object_get(row, "metadata");
    ob->metadata[i] = json_is_object(md)
                      ? json_dumps(md, JSON_COMPACT | JSON_PRESERVE_ORDER)
                      : NULL;

    op = json_string_value(json_object_get(row, "op"));

    memset(o, 0, sizeof(*o));
    o->reset = op != NULL && strcmp(op, "reset") == 0;
    o->u.job_id = json_string_value(json_object_get(row, "job_id"));
    o->u.agent_id = json_string_value(json_object_get(row, "agent_id"));
    o->u.status = json_string_value(json_object_get(row, "status"));
    o->u.container_id = json_string_value(json_object_get(row,
                                                          "container_id"));
    o->u.webhook_payload = json_string_value(json_object_get(row,
                                                     "webhook_payload"));
    o->u.metadata = ob->metadata[i];

    ob->rows[i] = row;

    return 0;
}


/*
 * Parses the rows of an LRANGE reply (newest first, as Redis lists them)
 * oldest first, up to the first one that is not a row: that one goes to
 * the database in no batch, so that the rows before it still do.
 */
static void
parse_batch(pb_outbox_t *ob, const redisReply *reply)
{
    const redisReply  *e;
    size_t             k = reply->elements;

    for (ob->n = 0; ob->n < k; ob->n++) {
        e = reply->element[k - 1 - ob->n];
        if (e->type != REDIS_REPLY_STRING
            || parse_row(ob, ob->n, e->str, e->len) != 0)
        {
            break;
        }
    }
}


static void
free_batch(pb_outbox_t *ob)
{
    size_t  i;

    for (i = 0; i < ob->n; i++) {
        json_decref(ob->rows[i]);
        free(ob->metadata[i]);
    }

    ob->n = 0;
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


/* 1 removed, 0 the outbox changed under us (nothing removed), -1 Redis. */
static int
trim(pb_ctx_t *ctx, const redisReply *reply, size_t n)
{
    char         count[24];
    const char  *keys[] = { PB_KEY_OUTBOX, PB_KEY_OUTBOX_LOCK, PB_KEY_METRICS,
                            NULL };
    const char  *argv[] = { ctx->cfg->worker_id, count, NULL, NULL, NULL };
    redisReply  *r;
    int          done;

    snprintf(count, sizeof(count), "%zu", n);
    argv[2] = reply->element[reply->elements - 1]->str;
    argv[3] = reply->element[reply->elements - n]->str;

    r = pb_redis_eval(ctx->redis, &trim_script, keys, argv);
    if (r == NULL) {
        return -1;
    }

    done = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);

    if (!done) {
        pb_log(PB_LOG_WARN, "outbox changed while writing; rows kept",
               "{s:I}", "rows", (json_int_t) n);
    }

    return done;
}


int
pb_outbox_flush(pb_outbox_t *ob, pb_ctx_t *ctx, int max)
{
    char           err[512], range[24];
    int            written = 0, step;
    size_t         take = PB_OUTBOX_BATCH_ROWS, want, bad;
    redisReply    *reply;
    pb_audit_rc_t  rc;

    if (pb_now_ms() < ob->retry_at_ms) {
        return 0;
    }

    if (!pb_redis_lock(ctx->redis, PB_KEY_OUTBOX_LOCK, ctx->cfg->worker_id,
                       PB_OUTBOX_LOCK_MS))
    {
        return pb_redis_connected(ctx->redis) ? 0 : -1;
    }

    while (written < max) {
        want = (size_t) (max - written) < take ? (size_t) (max - written)
                                               : take;
        snprintf(range, sizeof(range), "-%zu", want);

        /* the oldest rows, one read: they sit at the tail */
        reply = pb_redis_cmd(ctx->redis, "LRANGE %s %s -1", PB_KEY_OUTBOX,
                             range);
        if (reply == NULL) {
            written = -1;
            break;
        }

        if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
            freeReplyObject(reply);
            break;      /* empty */
        }

        if (ob->audit == NULL && open_audit(ob) != 0) {
            freeReplyObject(reply);
            break;
        }

        parse_batch(ob, reply);

        if (ob->n == 0) {
            rc = PB_AUDIT_FAIL;
            bad = 0;
            snprintf(err, sizeof(err), "outbox row is not a JSON object");

        } else {
            rc = pb_audit_apply_batch(ob->audit, ob->ops, ob->n, &bad, err,
                                      sizeof(err));
        }

        step = 0;

        if (rc == PB_AUDIT_OK) {
            if (ob->failures > 0) {
                pb_log(PB_LOG_INFO, "audit database back", NULL);
                ob->failures = 0;
            }

            /* Only now that the database holds them.  A crash before this
             * writes them again on the next flush: idempotent upserts. */
            step = trim(ctx, reply, ob->n);
            if (step == 1) {
                written += (int) ob->n;
            }
            take = PB_OUTBOX_BATCH_ROWS;

        } else if (rc == PB_AUDIT_RETRY) {
            backoff(ob, "write", err);

        } else if (bad == 0 || ob->n == 1) {
            /* a row the database will never take: keep it for a human,
             * and let the rows behind it through */
            pb_log(PB_LOG_ERROR, "audit row rejected; moved aside",
                   "{s:s, s:s}", "error", err, "list", PB_KEY_OUTBOX_FAILED);
            step = pop(ctx, reply->element[reply->elements - 1]->str,
                       PB_KEY_OUTBOX_FAILED, "audit_rejected") == 0 ? 1 : -1;

        } else {
            /*
             * Nothing of the batch went in.  Next, the rows before the
             * refused one as a batch of their own, which leaves it the
             * oldest, alone in the batch after; a refusal that named no
             * row (the commit) is narrowed down one row at a time.
             */
            take = bad < ob->n ? bad : 1;
            step = 1;
        }

        free_batch(ob);
        freeReplyObject(reply);

        if (step != 1) {
            if (step < 0) {
                written = -1;
            }
            break;
        }
    }

    pb_redis_unlock(ctx->redis, PB_KEY_OUTBOX_LOCK, ctx->cfg->worker_id);

    return written;
}
