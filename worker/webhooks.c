/*
 * Webhook envelopes.  See webhooks.h.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pb_envelope.h"
#include "pb_keys.h"
#include "slots.h"
#include "webhooks.h"
#include "workers.h"

/*
 * Envelopes per step.  Amortises the loop's fixed Redis calls (heartbeat,
 * commands, monitor, claim, the outbox's lock) over many envelopes, and
 * lets the outbox write their audit rows in one transaction.  Bounded
 * because each apply removes its envelope from the processing list with
 * an LREM that scans it, and because the launches wait for the step.
 */
#define PB_WEBHOOK_BATCH  100

/*
 * KEYS: 1 queue, 2 processing list.  ARGV: 1 batch size.  Tops the
 * processing list up to the batch size from the queue's tail (our own
 * leftovers, older, stay in front), and returns its oldest that many,
 * oldest last.  Each envelope sits in the processing list until its apply
 * removes it, so a crash anywhere leaves nothing lost.
 */
static pb_script_t  take_script = { "webhooks_take",
    "local max = tonumber(ARGV[1])\n"
    "for i = redis.call('LLEN', KEYS[2]) + 1, max do\n"
    "  if not redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') then\n"
    "    break\n"
    "  end\n"
    "end\n"
    "return redis.call('LRANGE', KEYS[2], -max, -1)\n",
    ""
};

/* KEYS: 1 processing list, 2 invalid list.  ARGV: 1 envelope. */
static pb_script_t  invalid_script = { "park_invalid",
    "if redis.call('LREM', KEYS[1], 1, ARGV[1]) > 0 then\n"
    "  redis.call('LPUSH', KEYS[2], ARGV[1])\n"
    "  redis.call('HINCRBY', KEYS[3], 'webhooks_invalid', 1)\n"
    "end\n"
    "return 0\n",
    ""
};


/*
 * The payload exactly as PhantomBuster sent it: the module embeds it
 * verbatim after a head we can rebuild from the parsed fields.  If the head
 * does not match (an envelope from elsewhere), the parsed payload is
 * re-serialised instead, keys in order.
 */
static char *
raw_payload(const pb_envelope_t *env, const char *data, size_t len)
{
    char    *head, *payload = NULL;
    size_t   cap, n;

    cap = PB_ENVELOPE_HEAD_MAX(strlen(env->id), strlen(env->queue));
    head = malloc(cap);
    if (head == NULL) {
        return NULL;
    }

    n = pb_envelope_head(head, cap, env->id, strlen(env->id),
                         env->received_at_ms, env->queue, strlen(env->queue));

    if (n > 0 && len > n + PB_ENVELOPE_TAIL_LEN
        && memcmp(head, data, n) == 0
        && memcmp(data + len - PB_ENVELOPE_TAIL_LEN, PB_ENVELOPE_TAIL,
                  PB_ENVELOPE_TAIL_LEN) == 0)
    {
        payload = strndup(data + n, len - n - PB_ENVELOPE_TAIL_LEN);

    } else {
        payload = json_dumps(env->payload.root,
                             JSON_COMPACT | JSON_PRESERVE_ORDER);
    }

    free(head);

    return payload;
}


static int
park_invalid(pb_ctx_t *ctx, const char *processing, const char *envelope,
    const char *reason)
{
    char         invalid[512];
    const char  *keys[] = { processing, invalid, PB_KEY_METRICS, NULL };
    const char  *argv[] = { envelope, NULL };
    redisReply  *reply;

    snprintf(invalid, sizeof(invalid), "%s%s", ctx->cfg->queue,
             PB_INVALID_SUFFIX);

    pb_log(PB_LOG_WARN, "invalid envelope parked", "{s:s, s:s}", "reason",
           reason, "list", invalid);

    reply = pb_redis_eval(ctx->redis, &invalid_script, keys, argv);
    freeReplyObject(reply);

    return reply ? 0 : -1;
}


int
pb_webhooks_handle(pb_ctx_t *ctx, const char *processing, const char *envelope,
    size_t len)
{
    char              code[24], when[64];
    char             *payload;
    const char       *reason;
    pb_outcome_t      o;
    pb_envelope_t     env;
    pb_slot_result_t  sr;
    int               rc;

    if (pb_envelope_parse(envelope, len, &env, &reason) != 0) {
        return park_invalid(ctx, processing, envelope, reason);
    }

    payload = raw_payload(&env, envelope, len);
    snprintf(code, sizeof(code), "%" PRId64, (int64_t) env.payload.exit_code);
    pb_iso_time(env.received_at_ms, when);

    memset(&o, 0, sizeof(o));
    o.status = pb_payload_succeeded(&env.payload) ? "success" : "failed";
    o.container = env.payload.container_id;
    o.exit_code = code;
    o.exit_message = env.payload.exit_message;
    o.payload = payload;
    o.received_at = when;
    o.found_by = "webhook";

    rc = pb_slot_webhook(ctx, processing, envelope, env.payload.agent_id, &o,
                         &sr);
    if (rc == 0) {
        pb_log(PB_LOG_INFO, "webhook", "{s:s, s:s, s:s, s:s, s:s, s:s}",
               "request", env.id, "container", env.payload.container_id,
               "agent", env.payload.agent_id, "exit", o.exit_message,
               "result", sr.kind, "job", sr.job_id);
    }

    free(payload);
    pb_envelope_free(&env);

    return rc;
}


int
pb_webhooks_step(pb_ctx_t *ctx, int64_t timeout_ms)
{
    char         processing[512], timeout[32], batch[16];
    const char  *keys[] = { ctx->cfg->queue, processing, NULL };
    const char  *argv[] = { batch, NULL };
    redisReply  *reply, *e;
    size_t       i;
    int          handled = 0;

    if (pb_processing_key(ctx->cfg, ctx->cfg->worker_id, processing,
                          sizeof(processing)) != 0)
    {
        return -1;
    }

    snprintf(batch, sizeof(batch), "%d", PB_WEBHOOK_BATCH);

    /*
     * Our own leftovers first (envelopes a previous run of this worker id,
     * or a failed step of this one, took but did not finish), then what
     * is queued, without waiting; only an empty queue is waited on.
     */
    reply = pb_redis_eval(ctx->redis, &take_script, keys, argv);
    if (reply != NULL
        && (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0))
    {
        freeReplyObject(reply);

        /* BLMOVE takes seconds with decimals; 0 would block forever */
        snprintf(timeout, sizeof(timeout), "%.3f",
                 (double) (timeout_ms > 10 ? timeout_ms : 10) / 1000.0);

        reply = pb_redis_cmd(ctx->redis, "BLMOVE %s %s RIGHT LEFT %s",
                             ctx->cfg->queue, processing, timeout);
    }

    if (reply == NULL) {
        return -1;
    }

    if (reply->type == REDIS_REPLY_STRING) {
        handled = pb_webhooks_handle(ctx, processing, reply->str, reply->len)
                  == 0 ? 1 : -1;
    }

    /* oldest (last) first; on SIGTERM the rest go back to the queue with
     * the processing list (pb_workers_leave) */
    for (i = reply->type == REDIS_REPLY_ARRAY ? reply->elements : 0;
         i > 0 && handled >= 0 && !PB_STOPPING(ctx); i--)
    {
        e = reply->element[i - 1];
        if (pb_webhooks_handle(ctx, processing, e->str, e->len) != 0) {
            handled = -1;
        } else {
            handled++;
        }
    }

    freeReplyObject(reply);

    return handled;
}
