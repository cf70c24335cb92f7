/*
 * The audit outbox flusher.  See outbox.h.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* pthread_timedjoin_np */
#endif

#include <ctype.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "backoff.h"
#include "log.h"
#include "outbox.h"
#include "pb_keys.h"
#include "pb_payload.h"

/*
 * Rows per database transaction.  A commit costs an fsync (SQLite) or a
 * round trip (PostgreSQL) whatever it holds, so rows share it; 500 makes
 * it noise per row while one batch stays a few milliseconds of work, far
 * inside the lock's TTL, and one read of the outbox under a megabyte.
 */
#define PB_OUTBOX_BATCH_ROWS  500

#define PB_OUTBOX_LOCK_MS     30000

/*
 * The flusher thread: rows per call (then it looks whether it should
 * stop), how long it rests when the outbox is empty (the rows' latency to
 * the database when idle), and after Redis failed.
 */
#define PB_OUTBOX_THREAD_MAX  5000
#define PB_OUTBOX_IDLE_MS     50
#define PB_OUTBOX_DOWN_MS     500
#define PB_OUTBOX_STOP_S      5
/* none of its commands blocks */
#define PB_OUTBOX_REDIS_MS    5000

struct pb_outbox_s {
    char           url[1024];
    pb_audit_t    *audit;
    int64_t        retry_at_ms;     /* database down: not before this */
    unsigned       failures;        /* consecutive, for the backoff */

    /* the batch being written, oldest row first; its strings in arena */
    size_t         n;
    pb_audit_op_t  ops[PB_OUTBOX_BATCH_ROWS];
    char          *arena;
    size_t         arena_cap;

    /* the flusher thread, when pb_outbox_start started it */
    int              threaded;
    int              stop;          /* under mutex */
    pthread_t        thread;
    pthread_mutex_t  mutex;
    pthread_cond_t   wake;
    pb_ctx_t         ctx;           /* its own Redis connection */
};

/* A cursor over one row's text; decoded strings go to out. */
typedef struct {
    const char  *p;
    const char  *end;
    char        *out;
} row_scan_t;

/*
 * How deep a value nested in a row may go: a payload the worker wrote as
 * its value (webhooks.c) nests as deep as the payload rules allow, and
 * sits one level inside the row; the rest of a row is at most 2 deep.
 */
#define PB_OUTBOX_ROW_DEPTH  (PB_PAYLOAD_MAX_DEPTH + 1)

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
 * The flusher lock, for a read of the outbox.  KEYS: 1 outbox, 2 the lock.
 * ARGV: 1 our lock value, 2 its TTL (ms).  -1 when another flusher holds
 * the lock; else how many rows wait, the lock ours (taken or extended)
 * when there are any, let go at once when there are none.  The rows are
 * read after it with a plain LRANGE, not in the script: every string that
 * enters Lua is hashed byte by byte, and 500 rows are half a megabyte.
 * Nobody else trims the outbox while we hold the lock (pushes go to the
 * other end), so the rows at its tail stay there for the read.
 */
static pb_script_t  lock_script = { "outbox_lock",
    "local holder = redis.call('GET', KEYS[2])\n"
    "if holder and holder ~= ARGV[1] then return -1 end\n"
    "local n = redis.call('LLEN', KEYS[1])\n"
    "if n == 0 then\n"
    "  if holder then redis.call('DEL', KEYS[2]) end\n"
    "else\n"
    "  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])\n"
    "end\n"
    "return n\n",
    ""
};

/* KEYS: 1 the lock.  ARGV: 1 our lock value.  Lets it go if ours. */
static pb_script_t  release_script = { "outbox_release",
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n",
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
    /* a thread that would not stop still uses it: left to the exit */
    if (ob == NULL || pb_outbox_stop(ob) != 0) {
        return;
    }

    pb_audit_close(ob->audit);
    free(ob->arena);
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


/*
 * Outbox rows are flat JSON objects cjson wrote (lua.h), or the worker
 * (webhooks.c, the rows of webhooks of containers nobody owns): string
 * fields, one object (metadata), maybe null or a number, and the payload
 * as a string holding its JSON text (cjson) or as its JSON value (the
 * worker).  jansson took longer to decode one (a tree, an allocation per
 * value, metadata serialised again) than the database took to write it,
 * so the few fields are read straight from the text: strings unescaped
 * into the arena (never longer than their JSON), metadata and a payload
 * value passed on as their own JSON text (the database parses them
 * anyway).  Anything not well-formed enough to read is not a row.
 */
static void
scan_ws(row_scan_t *s)
{
    while (s->p < s->end
           && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n'
               || *s->p == '\r'))
    {
        s->p++;
    }
}


static int
scan_char(row_scan_t *s, char c)
{
    scan_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }

    return 0;
}


/* Four hex digits at s->p, or -1. */
static long
scan_hex4(row_scan_t *s)
{
    char  hex[5];
    int   i;

    if (s->end - s->p < 4) {
        return -1;
    }

    for (i = 0; i < 4; i++) {
        if (!isxdigit((unsigned char) s->p[i])) {
            return -1;
        }
        hex[i] = s->p[i];
    }
    hex[4] = '\0';
    s->p += 4;

    return strtol(hex, NULL, 16);
}


/* \uXXXX (and its low surrogate) after the "\u", as UTF-8 into s->out. */
static int
scan_unicode(row_scan_t *s)
{
    long            cp, lo;
    unsigned char  *o = (unsigned char *) s->out;

    cp = scan_hex4(s);
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u') {
            return -1;
        }
        s->p += 2;
        lo = scan_hex4(s);
        if (lo < 0xdc00 || lo > 0xdfff) {
            return -1;
        }
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);

    } else if (cp <= 0 || (cp >= 0xdc00 && cp <= 0xdfff)) {
        return -1;      /* malformed, a lone low half, or a NUL */
    }

    if (cp < 0x80) {
        *o++ = (unsigned char) cp;
    } else if (cp < 0x800) {
        *o++ = (unsigned char) (0xc0 | (cp >> 6));
        *o++ = (unsigned char) (0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (unsigned char) (0xe0 | (cp >> 12));
        *o++ = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        *o++ = (unsigned char) (0x80 | (cp & 0x3f));
    } else {
        *o++ = (unsigned char) (0xf0 | (cp >> 18));
        *o++ = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
        *o++ = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        *o++ = (unsigned char) (0x80 | (cp & 0x3f));
    }

    s->out = (char *) o;
    return 0;
}


/*
 * The string at s->p unescaped into s->out (NUL-terminated), or NULL.  The
 * cursor is kept in locals while copying: a store through a char pointer
 * may alias anything, the cursor's own fields included, which made every
 * byte reload them.
 */
static const char *
scan_string(row_scan_t *s)
{
    char           *start = s->out, *out = s->out;
    const char     *p, *end = s->end;
    unsigned char   c;

    if (!scan_char(s, '"')) {
        return NULL;
    }

    for (p = s->p; p < end; ) {
        c = (unsigned char) *p++;

        if (c != '"' && c != '\\' && c >= 0x20) {
            *out++ = (char) c;
            continue;
        }

        if (c == '"') {
            *out++ = '\0';
            s->p = p;
            s->out = out;
            return start;
        }

        if (c < 0x20 || p == end) {
            break;
        }

        switch (c = (unsigned char) *p++) {
        case '"':
        case '\\':
        case '/':
            *out++ = (char) c;
            continue;
        case 'b':
            *out++ = '\b';
            continue;
        case 'f':
            *out++ = '\f';
            continue;
        case 'n':
            *out++ = '\n';
            continue;
        case 'r':
            *out++ = '\r';
            continue;
        case 't':
            *out++ = '\t';
            continue;
        case 'u':
            s->p = p;
            s->out = out;
            if (scan_unicode(s) != 0) {
                return NULL;
            }
            p = s->p;
            out = s->out;
            continue;
        default:
            return NULL;
        }
    }

    return NULL;
}


/*
 * Steps over a string, a number or a literal; -1 when it is none.  A
 * string is unescaped (and dropped) to check it, or with lax only stepped
 * over: inside a payload, whose strings are most of a row and whose text
 * the database checks anyway (json(), jsonb), as it always did for the
 * payloads of the scripts' rows.
 */
static int
scan_scalar(row_scan_t *s, int lax)
{
    char        *out = s->out;
    const char  *p, *q, *e;
    int          bad;

    if (*s->p == '"' && lax) {
        /* its closing quote: the first one after an even number of
         * backslashes (an odd number escapes it) */
        for (p = s->p + 1;
             (q = memchr(p, '"', (size_t) (s->end - p))) != NULL;
             p = q + 1)
        {
            for (e = q; e > s->p + 1 && e[-1] == '\\'; e--) {
                /* count them */
            }
            if ((q - e) % 2 == 0) {
                s->p = q + 1;
                return 0;
            }
        }
        return -1;
    }

    if (*s->p == '"') {
        bad = scan_string(s) == NULL;
        s->out = out;       /* read, not kept */
        return bad ? -1 : 0;
    }

    /* a number or a literal: the database checks what it is */
    for (bad = 1; s->p < s->end; s->p++, bad = 0) {
        if (*s->p == '\0' || strchr("+-.0123456789eEfalsnrtu", *s->p) == NULL)
        {
            break;
        }
    }

    return bad ? -1 : 0;
}


/* In an object (close is '}'), the key and colon before a value. */
static int
scan_key(row_scan_t *s, char close, int lax)
{
    if (close != '}') {
        return 0;
    }

    scan_ws(s);
    if (s->p == s->end || *s->p != '"' || scan_scalar(s, lax) != 0) {
        return -1;
    }

    return scan_char(s, ':') ? 0 : -1;
}


/*
 * Steps over one value of any kind, objects and arrays on a stack of
 * their closing brackets (no recursion: a row is not trusted to be
 * shallow); -1 when it is not one.
 */
static int
scan_skip(row_scan_t *s, int lax)
{
    char  close[PB_OUTBOX_ROW_DEPTH];
    int   depth = 0;

    for ( ;; ) {
        scan_ws(s);
        if (s->p == s->end) {
            return -1;
        }

        if (*s->p == '{' || *s->p == '[') {
            if (depth == PB_OUTBOX_ROW_DEPTH) {
                return -1;
            }
            close[depth++] = *s->p++ == '{' ? '}' : ']';
            if (!scan_char(s, close[depth - 1])) {
                /* its first member or element next */
                if (scan_key(s, close[depth - 1], lax) != 0) {
                    return -1;
                }
                continue;
            }
            depth--;        /* empty */

        } else if (scan_scalar(s, lax) != 0) {
            return -1;
        }

        /* after a value: what it closed, then the next one or the end */
        while (depth > 0 && scan_char(s, close[depth - 1])) {
            depth--;
        }

        if (depth == 0) {
            return 0;
        }

        if (!scan_char(s, ',') || scan_key(s, close[depth - 1], lax) != 0) {
            return -1;
        }
    }
}


/* One member of a row: its value into the field the key names, if any. */
static int
scan_member(row_scan_t *s, pb_audit_op_t *o, const char **op)
{
    static const char  *names[] = { "job_id", "agent_id", "status",
                                    "container_id", "webhook_payload",
                                    "op", "metadata" };
    const char        **fields[7];
    const char         *key, *start;
    char               *mark = s->out;
    size_t              f;

    fields[0] = &o->u.job_id;
    fields[1] = &o->u.agent_id;
    fields[2] = &o->u.status;
    fields[3] = &o->u.container_id;
    fields[4] = &o->u.webhook_payload;
    fields[5] = op;
    fields[6] = &o->u.metadata;

    key = scan_string(s);
    if (key == NULL || !scan_char(s, ':')) {
        return -1;
    }

    for (f = 0; f < 7 && strcmp(key, names[f]) != 0; f++) {
        /* which field */
    }
    s->out = mark;          /* the key is not kept */

    scan_ws(s);
    start = s->p;

    if (f < 6 && s->p < s->end && *s->p == '"') {
        *fields[f] = scan_string(s);
        return *fields[f] != NULL ? 0 : -1;
    }

    /* f 4: a payload */
    if (scan_skip(s, f == 4) != 0) {
        return -1;
    }

    if ((f == 6 && *start == '{')
        || (f == 4 && (*start == '{' || *start == '[')))
    {
        /*
         * metadata, or a payload the worker wrote as its JSON value
         * (webhooks.c) rather than as a string holding its text (the
         * scripts' cjson): its JSON text as it stands
         */
        *fields[f] = s->out;
        memcpy(s->out, start, (size_t) (s->p - start));
        s->out += s->p - start;
        *s->out++ = '\0';

    } else if (f < 7) {
        *fields[f] = NULL;      /* not a string (an object): as if absent */
    }

    return 0;
}


/* Fills ob->ops[i] from one outbox row; -1 when it is not a JSON object. */
static int
parse_row(pb_outbox_t *ob, size_t i, const char *text, size_t len,
    char **out)
{
    const char     *op = NULL;
    pb_audit_op_t  *o = &ob->ops[i];
    row_scan_t      s;

    memset(o, 0, sizeof(*o));
    s.p = text;
    s.end = text + len;
    s.out = *out;

    if (!scan_char(&s, '{')) {
        return -1;
    }

    if (!scan_char(&s, '}')) {
        do {
            if (scan_member(&s, o, &op) != 0) {
                return -1;
            }
        } while (scan_char(&s, ','));

        if (!scan_char(&s, '}')) {
            return -1;
        }
    }

    scan_ws(&s);
    if (s.p != s.end) {
        return -1;
    }

    o->reset = op != NULL && strcmp(op, "reset") == 0;
    *out = s.out;

    return 0;
}


/*
 * Parses the rows of an LRANGE reply (newest first, as Redis lists them)
 * oldest first, up to the first one that is not a row: that one goes to
 * the database in no batch, so that the rows before it still do.  0, or
 * -1 out of memory.
 */
static int
parse_batch(pb_outbox_t *ob, const redisReply *reply)
{
    const redisReply  *e;
    size_t             k = reply->elements, need = 0, i;
    char              *out, *grown;

    /* unescaping never lengthens: a byte of arena per byte of row, plus
     * a NUL per row (its strings' NULs take the place of quotes) */
    for (i = 0; i < k; i++) {
        need += reply->element[i]->len + 1;
    }

    if (need > ob->arena_cap) {
        grown = realloc(ob->arena, need);
        if (grown == NULL) {
            ob->n = 0;
            return -1;
        }
        ob->arena = grown;
        ob->arena_cap = need;
    }

    out = ob->arena;

    for (ob->n = 0; ob->n < k; ob->n++) {
        e = reply->element[k - 1 - ob->n];
        if (e->type != REDIS_REPLY_STRING
            || parse_row(ob, ob->n, e->str, e->len, &out) != 0)
        {
            break;
        }
    }

    return 0;
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


/*
 * Writes the batch of one read (reply) and removes it.  Returns 1 to go
 * on, 0 to stop (database away, outbox changed), -1 when Redis failed;
 * adds the rows written to *written and sets *take, the size of the next
 * read.
 */
static int
write_batch(pb_outbox_t *ob, pb_ctx_t *ctx, const redisReply *reply,
    int *written, size_t *take)
{
    char           err[512];
    size_t         bad;
    int            step = 0;
    pb_audit_rc_t  rc;

    if (parse_batch(ob, reply) != 0) {
        return 0;       /* out of memory: the rows wait */
    }

    if (ob->n == 0) {
        rc = PB_AUDIT_FAIL;
        bad = 0;
        snprintf(err, sizeof(err), "outbox row is not a JSON object");

    } else {
        rc = pb_audit_apply_batch(ob->audit, ob->ops, ob->n, &bad, err,
                                  sizeof(err));
    }

    if (rc == PB_AUDIT_OK) {
        if (ob->failures > 0) {
            pb_log(PB_LOG_INFO, "audit database back", NULL);
            ob->failures = 0;
        }

        /* Only now that the database holds them.  A crash before this
         * writes them again on the next flush: idempotent upserts. */
        step = trim(ctx, reply, ob->n);
        if (step == 1) {
            *written += (int) ob->n;
        }
        *take = PB_OUTBOX_BATCH_ROWS;

    } else if (rc == PB_AUDIT_RETRY) {
        backoff(ob, "write", err);

    } else if (bad == 0 || ob->n == 1) {
        /* a row the database will never take: keep it for a human, and
         * let the rows behind it through */
        pb_log(PB_LOG_ERROR, "audit row rejected; moved aside",
               "{s:s, s:s}", "error", err, "list", PB_KEY_OUTBOX_FAILED);
        step = pop(ctx, reply->element[reply->elements - 1]->str,
                   PB_KEY_OUTBOX_FAILED, "audit_rejected") == 0 ? 1 : -1;

    } else {
        /*
         * Nothing of the batch went in.  Next, the rows before the refused
         * one as a batch of their own, which leaves it the oldest, alone
         * in the batch after; a refusal that named no row (the commit) is
         * narrowed down one row at a time.
         */
        *take = bad < ob->n ? bad : 1;
        step = 1;
    }

    return step;
}


static int
flush_rows(pb_outbox_t *ob, pb_ctx_t *ctx, int max)
{
    char          ttl[24], from[24];
    const char   *keys[] = { PB_KEY_OUTBOX, PB_KEY_OUTBOX_LOCK, NULL };
    const char   *lock_keys[] = { PB_KEY_OUTBOX_LOCK, NULL };
    const char   *argv[] = { ctx->cfg->worker_id, ttl, NULL };
    int           written = 0, step = 1, held = 0;
    size_t        take = PB_OUTBOX_BATCH_ROWS, want;
    redisReply   *reply;
    long long     waiting;

    if (pb_now_ms() < ob->retry_at_ms) {
        return 0;
    }

    snprintf(ttl, sizeof(ttl), "%d", PB_OUTBOX_LOCK_MS);

    while (step == 1 && written < max) {
        want = (size_t) (max - written) < take ? (size_t) (max - written)
                                               : take;

        /* the lock, then the oldest rows: they sit at the tail */
        reply = pb_redis_eval(ctx->redis, &lock_script, keys, argv);
        if (reply == NULL) {
            return -1;
        }
        waiting = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
        freeReplyObject(reply);

        held = waiting > 0;
        step = 0;

        if (!held || (ob->audit == NULL && open_audit(ob) != 0)) {
            break;
        }

        snprintf(from, sizeof(from), "-%zu", want);
        reply = pb_redis_cmd(ctx->redis, "LRANGE %s %s -1", PB_KEY_OUTBOX,
                             from);
        if (reply == NULL) {
            return -1;
        }

        if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
            step = write_batch(ob, ctx, reply, &written, &take);
        }

        freeReplyObject(reply);
    }

    if (held) {
        freeReplyObject(pb_redis_eval(ctx->redis, &release_script, lock_keys,
                                      argv));
    }

    return step < 0 ? -1 : written;
}


int
pb_outbox_flush(pb_outbox_t *ob, pb_ctx_t *ctx, int max)
{
    /* the flusher thread does it, with its own connection and buffers */
    return ob->threaded ? 0 : flush_rows(ob, ctx, max);
}


/* Rests up to ms, or less when told to stop; 1 when it should stop. */
static int
rest(pb_outbox_t *ob, long ms)
{
    struct timespec  until;
    int              stop;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&ob->mutex);
    if (!ob->stop && ms > 0) {
        pthread_cond_timedwait(&ob->wake, &ob->mutex, &until);
    }
    stop = ob->stop;
    pthread_mutex_unlock(&ob->mutex);

    return stop;
}


static void *
flusher(void *arg)
{
    pb_outbox_t  *ob = arg;
    int           n;

    do {
        n = flush_rows(ob, &ob->ctx, PB_OUTBOX_THREAD_MAX);
    } while (!rest(ob, n < 0 ? PB_OUTBOX_DOWN_MS
                       : n == 0 ? PB_OUTBOX_IDLE_MS : 0));

    return NULL;
}


int
pb_outbox_start(pb_outbox_t *ob, const pb_config_t *cfg)
{
    char      err[512];
    sigset_t  all, old;
    int       rc;

    ob->ctx.cfg = cfg;
    ob->ctx.redis = pb_redis_open(cfg->redis_url, PB_OUTBOX_REDIS_MS, err,
                                  sizeof(err));
    if (ob->ctx.redis == NULL) {
        return -1;
    }

    /* the loop's connection reports Redis outages, once */
    pb_redis_quiet(ob->ctx.redis);

    pthread_mutex_init(&ob->mutex, NULL);
    pthread_cond_init(&ob->wake, NULL);

    /* SIGTERM and SIGINT are the loop's to see, not this thread's */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&ob->thread, NULL, flusher, ob);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        pthread_cond_destroy(&ob->wake);
        pthread_mutex_destroy(&ob->mutex);
        pb_redis_close(ob->ctx.redis);
        ob->ctx.redis = NULL;
        return -1;
    }

    ob->threaded = 1;
    return 0;
}


int
pb_outbox_stop(pb_outbox_t *ob)
{
    struct timespec  until;

    if (ob == NULL || !ob->threaded) {
        return 0;
    }

    pthread_mutex_lock(&ob->mutex);
    ob->stop = 1;
    pthread_cond_signal(&ob->wake);
    pthread_mutex_unlock(&ob->mutex);

    /* its batch is bounded (busy timeout, connect timeout), but an exit
     * must be: the rows it did not write wait in Redis anyway */
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PB_OUTBOX_STOP_S;
    if (pthread_timedjoin_np(ob->thread, NULL, &until) != 0) {
        return -1;
    }

    ob->threaded = 0;
    pthread_cond_destroy(&ob->wake);
    pthread_mutex_destroy(&ob->mutex);
    pb_redis_close(ob->ctx.redis);
    ob->ctx.redis = NULL;

    return 0;
}
