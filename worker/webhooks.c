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

/* KEYS: 1 processing list, 2 invalid list.  ARGV: 1 envelope. */
static pb_script_t  invalid_script = { "park_invalid",
    "if redis.call('LREM', KEYS[1], -1, ARGV[1]) > 0 then\n"
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


/* The longest id and queue name an envelope's head takes the fast path
 * with (the module's ids are 32 characters). */
#define PB_WEBHOOK_NAME_MAX  255

/* One envelope of a batch, parsed, and what its webhook points into. */
typedef struct {
    pb_envelope_t  env;
    char          *payload;
    char          *row;         /* its unknown_row (slots.h) */
    char           code[24];
    char           when[64];
    char           id[PB_WEBHOOK_NAME_MAX + 1];
    char           queue[PB_WEBHOOK_NAME_MAX + 1];

    /* its dedupe marker's key, "<queue>:seen:<containerId>" (slots.h) */
    char           seen[PB_WEBHOOK_NAME_MAX + sizeof(PB_SEEN_INFIX)
                        + PB_ID_MAX_LEN];
} item_t;


/*
 * A JSON string of plain characters (printable ASCII but quote and
 * backslash: what the module writes) at *p, up to its closing quote,
 * copied into out; 0, or -1 for anything else.
 */
static int
plain_string(const char **p, const char *end, char *out)
{
    size_t  n = 0;

    while (*p < end && **p != '"') {
        if (**p < 0x20 || **p > 0x7e || **p == '\\'
            || n == PB_WEBHOOK_NAME_MAX)
        {
            return -1;
        }
        out[n++] = *(*p)++;
    }
    out[n] = '\0';

    return *p < end ? 0 : -1;
}


/*
 * The module's envelope, read without a JSON tree: its head as
 * pb_envelope_head writes it (id, received_at, queue: plain strings and a
 * number without leading zeros, which it writes back as they are), the
 * payload verbatim, validated by pb_payload_parse, the
 * scanner the module validated it with, and "}".  Parsing the whole
 * envelope with jansson was most of the worker's time per webhook.  The
 * rules are the same (pb_payload.h); anything else, or an exit message
 * longer than the scanner keeps, is left to pb_envelope_parse.  0 when
 * done (env and payload filled), -1 to take the slow path.
 */
static int
parse_module_envelope(item_t *it, const char *data, size_t len)
{
    const char  *p = data, *end = data + len, *digits, *reason;
    int64_t      at = 0;
    size_t       n;

    if (len < 9 || memcmp(p, "{\"id\":\"", 7) != 0) {
        return -1;
    }
    p += 7;

    if (plain_string(&p, end, it->id) != 0
        || end - p < 16 || memcmp(p, "\",\"received_at\":", 16) != 0)
    {
        return -1;
    }

    for (p += 16, digits = p;
         p < end && *p >= '0' && *p <= '9' && at < INT64_MAX / 10; p++)
    {
        at = at * 10 + (*p - '0');
    }

    /* the number as PRId64 writes it: no leading zero */
    if (p == digits || (*digits == '0' && p - digits > 1)
        || end - p < 10 || memcmp(p, ",\"queue\":\"", 10) != 0)
    {
        return -1;
    }
    p += 10;

    if (plain_string(&p, end, it->queue) != 0
        || end - p < 12 || memcmp(p, "\",\"payload\":", 12) != 0)
    {
        return -1;
    }

    /* the head is exactly what pb_envelope_head writes for these (plain
     * strings are quoted as they are) */
    n = (size_t) (p + 12 - data);
    if (len <= n + PB_ENVELOPE_TAIL_LEN
        || memcmp(end - PB_ENVELOPE_TAIL_LEN, PB_ENVELOPE_TAIL,
                  PB_ENVELOPE_TAIL_LEN) != 0)
    {
        return -1;
    }

    len -= n + PB_ENVELOPE_TAIL_LEN;
    if (pb_payload_parse(data + n, len, &it->env.payload, &reason) != 0) {
        return -1;      /* the slow path says why, the same way */
    }

    if (it->env.payload.exit_message_len > PB_EXIT_MESSAGE_MAX) {
        pb_payload_free(&it->env.payload);
        return -1;
    }

    it->payload = strndup(data + n, len);
    it->env.root = NULL;
    it->env.id = it->id;
    it->env.queue = it->queue;
    it->env.received_at_ms = at;

    return 0;
}


/* s JSON-escaped (no quotes) at out; returns the end. */
static char *
json_escape(char *out, const char *s)
{
    static const char  hex[] = "0123456789abcdef";
    unsigned char      c;

    for ( ; (c = (unsigned char) *s) != '\0'; s++) {
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = (char) c;
        } else if (c < 0x20) {
            memcpy(out, "\\u00", 4);
            out[4] = hex[c >> 4];
            out[5] = hex[c & 0xf];
            out += 6;
        } else {
            *out++ = (char) c;
        }
    }

    return out;
}


/*
 * The audit row of a webhook should no job own its container: the row the
 * webhooks script's audit_unknown writes (lua.h), built here so that the
 * payload need not enter Lua (pb_slot_webhooks), and with the payload as
 * its JSON value rather than a string holding its text: nothing to escape
 * here, nothing to unescape in the flusher.  NULL out of memory.
 */
static char *
unknown_row(const pb_webhook_t *w)
{
    const pb_outcome_t  *o = &w->outcome;
    char                *row, *p;

    /* escaping makes a byte 6 at most; 256 for the constant text */
    row = malloc(6 * (3 * strlen(o->container) + strlen(w->agent)
                      + strlen(o->received_at))
                 + strlen(o->payload) + 256);
    if (row == NULL) {
        return NULL;
    }

    p = stpcpy(row, "{\"job_id\":\"container:");
    p = json_escape(p, o->container);
    p = stpcpy(p, "\",\"agent_id\":\"");
    p = json_escape(p, w->agent);
    p = stpcpy(p, "\",\"status\":\"webhook_received\",\"container_id\":\"");
    p = json_escape(p, o->container);
    p = stpcpy(p, "\",\"metadata\":{\"error\":\"unknown container\","
                  "\"webhook_received_at\":\"");
    p = json_escape(p, o->received_at);
    p = stpcpy(p, "\",\"phantom_container_id\":\"");
    p = json_escape(p, o->container);
    p = stpcpy(p, "\"},\"webhook_payload\":");
    p = stpcpy(p, o->payload);
    stpcpy(p, "}");

    return row;
}


/* The webhook of a parsed envelope, its strings in it (and in item). */
static void
prepare(item_t *it, pb_webhook_t *w, const char *data)
{
    pb_outcome_t  *o = &w->outcome;

    snprintf(it->code, sizeof(it->code), "%" PRId64,
             (int64_t) it->env.payload.exit_code);
    pb_iso_time(it->env.received_at_ms, it->when);

    memset(w, 0, sizeof(*w));
    w->envelope = data;
    w->agent = it->env.payload.agent_id;
    o->status = pb_payload_succeeded(&it->env.payload) ? "success" : "failed";
    o->container = it->env.payload.container_id;
    o->exit_code = it->code;
    o->exit_message = it->env.payload.exit_message;
    o->payload = it->payload;
    o->received_at = it->when;
    o->found_by = "webhook";

    /* without it (out of memory), the webhook goes the full way */
    it->row = it->payload != NULL ? unknown_row(w) : NULL;
    w->unknown_row = it->row;

    /*
     * The module's marker, named by the queue the envelope names (the one
     * it was pushed to) and the same key schema (common/pb_keys.h).  An
     * envelope without an id, or one from elsewhere whose queue name is
     * longer than the module's fast path takes, is not checked: as if the
     * marker were missing.
     */
    if (it->env.id[0] != '\0'
        && pb_key_join(it->seen, sizeof(it->seen), it->env.queue,
                       PB_SEEN_INFIX, o->container) > 0)
    {
        w->seen_key = it->seen;
        w->request_id = it->env.id;
    }
}


/*
 * Handles envelopes data[0..n), oldest first, all in the processing list:
 * those that do not parse are parked, the others applied in one script.
 * 0, or -1 when Redis failed (what was not applied stays in the list).
 */
static int
handle(pb_ctx_t *ctx, const char *processing, const char *const *data,
    const size_t *len, size_t n)
{
    const char        *reason;
    item_t            *items;
    pb_webhook_t      *w;
    pb_slot_result_t  *res;
    size_t             i, k = 0, applied = 0;
    int                rc = -1;

    items = calloc(n, sizeof(*items));
    w = calloc(n, sizeof(*w));
    res = calloc(n, sizeof(*res));
    if (items == NULL || w == NULL || res == NULL) {
        goto done;
    }

    rc = 0;
    for (i = 0; i < n && rc == 0; i++) {
        if (parse_module_envelope(&items[k], data[i], len[i]) != 0) {
            if (pb_envelope_parse(data[i], len[i], &items[k].env, &reason)
                != 0)
            {
                rc = park_invalid(ctx, processing, data[i], reason);
                continue;
            }
            items[k].payload = raw_payload(&items[k].env, data[i], len[i]);
        }
        prepare(&items[k], &w[k], data[i]);
        k++;
    }

    if (rc == 0 && k > 0) {
        rc = pb_slot_webhooks(ctx, processing, w, k, res);
    }

    for (i = 0; i < k; i++) {
        if (res[i].kind[0] == '\0') {
            continue;       /* not applied */
        }
        applied++;
        pb_log(PB_LOG_INFO, "webhook", "{s:s, s:s, s:s, s:s, s:s, s:s}",
               "request", items[i].env.id,
               "container", w[i].outcome.container, "agent", w[i].agent,
               "exit", w[i].outcome.exit_message, "result", res[i].kind,
               "job", res[i].job_id);
    }

    if (rc == 1) {
        /*
         * The list changed under us: someone took us for dead and requeued
         * them (theirs now), or a container we saw nobody's was claimed
         * meanwhile (they are still ours: the next step takes them again).
         */
        pb_log(PB_LOG_WARN, "in-flight webhooks not applied; left for the "
               "next step or to the worker that requeued them", "{s:I}",
               "count", (json_int_t) (k - applied));
        rc = 0;
    }

done:

    for (i = 0; i < k; i++) {
        free(items[i].payload);
        free(items[i].row);
        pb_envelope_free(&items[i].env);
    }
    free(items);
    free(w);
    free(res);

    return rc;
}


int
pb_webhooks_handle(pb_ctx_t *ctx, const char *processing, const char *envelope,
    size_t len)
{
    return handle(ctx, processing, &envelope, &len, 1);
}


/* Frees replies[0..n). */
static void
free_replies(redisReply **replies, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        freeReplyObject(replies[i]);
    }
}


int
pb_webhooks_step(pb_ctx_t *ctx, int64_t timeout_ms)
{
    char          processing[512], timeout[32], range[24];
    const char   *data[PB_WEBHOOK_BATCH];
    size_t        len[PB_WEBHOOK_BATCH], n = 0, i;
    redisReply   *replies[2] = { NULL, NULL }, *batch, *one = NULL;
    pb_resp_t     b;
    int           rc;

    if (pb_processing_key(ctx->cfg, ctx->cfg->worker_id, processing,
                          sizeof(processing)) != 0)
    {
        return -1;
    }

    /*
     * One round trip: the oldest queued, each moved into the processing
     * list until its apply takes it out, then the oldest of that list,
     * our own leftovers (envelopes a previous run of this worker id, or a
     * failed step of this one, took but did not finish) first.  LMOVEs
     * pipelined rather than in a script, which would copy and hash every
     * envelope once more, and without their replies (CLIENT REPLY OFF):
     * one LRANGE brings the batch back in one reply instead of a hundred
     * (hiredis moves its buffer down after each reply it takes).  On a
     * short queue the rest of the LMOVEs move nothing.
     */
    snprintf(range, sizeof(range), "-%d", PB_WEBHOOK_BATCH);
    pb_resp_init(&b, (size_t) 128 * (PB_WEBHOOK_BATCH + 4));
    pb_resp_cmd(&b, 3);
    pb_resp_str(&b, "CLIENT");
    pb_resp_str(&b, "REPLY");
    pb_resp_str(&b, "OFF");
    for (i = 0; i < PB_WEBHOOK_BATCH; i++) {
        pb_resp_cmd(&b, 5);
        pb_resp_str(&b, "LMOVE");
        pb_resp_str(&b, ctx->cfg->queue);
        pb_resp_str(&b, processing);
        pb_resp_str(&b, "RIGHT");
        pb_resp_str(&b, "LEFT");
    }
    pb_resp_cmd(&b, 3);
    pb_resp_str(&b, "CLIENT");
    pb_resp_str(&b, "REPLY");
    pb_resp_str(&b, "ON");
    pb_resp_cmd(&b, 4);
    pb_resp_str(&b, "LRANGE");
    pb_resp_str(&b, processing);
    pb_resp_str(&b, range);
    pb_resp_str(&b, "-1");

    /* only CLIENT REPLY ON and LRANGE answer */
    rc = pb_redis_send(ctx->redis, &b, 2, "LMOVE", replies);
    pb_resp_free(&b);
    if (rc != 0) {
        return -1;
    }

    /* the batch, oldest first: LRANGE lists the oldest last */
    batch = replies[1];
    for (i = batch->type == REDIS_REPLY_ARRAY ? batch->elements : 0;
         i > 0 && n < PB_WEBHOOK_BATCH; i--)
    {
        data[n] = batch->element[i - 1]->str;
        len[n++] = batch->element[i - 1]->len;
    }

    if (n == 0) {
        /* BLMOVE takes seconds with decimals; 0 would block forever */
        snprintf(timeout, sizeof(timeout), "%.3f",
                 (double) (timeout_ms > 10 ? timeout_ms : 10) / 1000.0);

        one = pb_redis_cmd(ctx->redis, "BLMOVE %s %s RIGHT LEFT %s",
                           ctx->cfg->queue, processing, timeout);
        if (one == NULL) {
            free_replies(replies, 2);
            return -1;
        }

        if (one->type == REDIS_REPLY_STRING) {
            data[0] = one->str;
            len[0] = one->len;
            n = 1;
        }
    }

    rc = n > 0 ? handle(ctx, processing, data, len, n) : 0;

    free_replies(replies, 2);
    freeReplyObject(one);

    return rc == 0 ? (int) n : -1;
}
