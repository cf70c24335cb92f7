/*
 * Reconnecting hiredis connection and script runner.  See redis_util.h.
 */

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis_util.h"

#define PB_REDIS_MAX_ARGS  64

struct pb_redis_s {
    redisContext  *ctx;
    char           host[256];
    char           path[256];       /* unix socket path, or "" */
    int            port;
    int            db;
    char           user[128];       /* a Redis 6 ACL user, or "" */
    char           password[256];
    int64_t        timeout_ms;
    int64_t        next_attempt_ms; /* reconnect no faster than this */
    int            down_logged;
    int            quiet;           /* outages not logged */
};


static int
url_fail(char *err, size_t err_len, const char *what)
{
    snprintf(err, err_len, "REDIS_URL: %s (want redis://[[user]:password@]"
             "host[:port][/db] or unix:///path[?db=N])", what);
    return -1;
}


/* A decimal in [0, max] ending at one of the stop characters, or -1. */
static long
number(const char *s, const char *stops, long max)
{
    char  *end;
    long   n;

    if (*s < '0' || *s > '9') {
        return -1;
    }

    n = strtol(s, &end, 10);

    return n <= max && (*end == '\0' || strchr(stops, *end)) ? n : -1;
}


/*
 * s[0..n) with its %XX escapes decoded into out (of size cap), as Redis
 * URLs carry a user or password holding ':', '@' or '/'; -1 for a bad
 * escape, a NUL or too long.
 */
static int
url_decode(const char *s, size_t n, char *out, size_t cap)
{
    char    hex[3] = { 0, 0, 0 };
    char   *end;
    size_t  i, k = 0;

    for (i = 0; i < n; i++) {
        if (k + 1 >= cap) {
            return -1;
        }

        if (s[i] != '%') {
            out[k++] = s[i];
            continue;
        }

        /* strtol alone would take a sign or a space: "%+1", "% 1" */
        if (n - i < 3 || !isxdigit((unsigned char) s[i + 1])
            || !isxdigit((unsigned char) s[i + 2]))
        {
            return -1;
        }

        hex[0] = s[i + 1];
        hex[1] = s[i + 2];
        out[k] = (char) strtol(hex, &end, 16);
        if (end != hex + 2 || out[k] == '\0') {
            return -1;
        }
        k++;
        i += 2;
    }

    out[k] = '\0';

    return 0;
}


static int
parse_url(pb_redis_t *r, const char *url, char *err, size_t err_len)
{
    const char  *p, *at, *slash, *colon, *q;
    size_t       n;

    r->port = 6379;

    if (url[0] == '/' || strncmp(url, "unix://", 7) == 0) {
        p = url[0] == '/' ? url : url + 7;
        q = strstr(p, "?db=");
        n = q ? (size_t) (q - p) : strlen(p);
        if (n == 0 || n >= sizeof(r->path)) {
            return url_fail(err, err_len, "bad socket path");
        }
        memcpy(r->path, p, n);
        r->path[n] = '\0';
        r->db = q ? (int) number(q + 4, "", 1000000) : 0;
        return r->db < 0 ? url_fail(err, err_len, "bad db number") : 0;
    }

    if (strncmp(url, "redis://", 8) != 0) {
        return url_fail(err, err_len, "unknown scheme");
    }

    p = url + 8;
    at = strchr(p, '@');
    if (at != NULL) {
        /* "[[user]:]password@": with a user, AUTH as that ACL user */
        colon = memchr(p, ':', (size_t) (at - p));
        q = colon ? colon + 1 : p;
        if (url_decode(p, colon ? (size_t) (colon - p) : 0, r->user,
                       sizeof(r->user)) != 0
            || url_decode(q, (size_t) (at - q), r->password,
                          sizeof(r->password)) != 0)
        {
            return url_fail(err, err_len, "bad user or password (too long, "
                            "or a bad %-escape)");
        }
        p = at + 1;
    }

    slash = strchr(p, '/');
    n = slash ? (size_t) (slash - p) : strlen(p);
    colon = memchr(p, ':', n);
    if (colon != NULL) {
        r->port = (int) number(colon + 1, "/", 65535);
        n = (size_t) (colon - p);
    }

    if (n == 0 || n >= sizeof(r->host) || r->port <= 0 || r->port > 65535) {
        return url_fail(err, err_len, "bad host or port");
    }

    memcpy(r->host, p, n);
    r->host[n] = '\0';
    r->db = slash && slash[1] ? (int) number(slash + 1, "", 1000000) : 0;

    return r->db < 0 ? url_fail(err, err_len, "bad db number") : 0;
}


pb_redis_t *
pb_redis_open(const char *url, int64_t command_timeout_ms, char *err,
    size_t err_len)
{
    pb_redis_t  *r;

    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }

    if (parse_url(r, url, err, err_len) != 0) {
        free(r);
        return NULL;
    }

    r->timeout_ms = command_timeout_ms;

    return r;
}


void
pb_redis_close(pb_redis_t *r)
{
    if (r == NULL) {
        return;
    }

    if (r->ctx != NULL) {
        redisFree(r->ctx);
    }

    free(r);
}


void
pb_redis_quiet(pb_redis_t *r)
{
    r->quiet = 1;
}


int
pb_redis_connected(const pb_redis_t *r)
{
    return r->ctx != NULL;
}


static void
drop(pb_redis_t *r, const char *why)
{
    if (!r->down_logged && !r->quiet) {
        pb_log(PB_LOG_ERROR, "redis connection lost", "{s:s}", "error", why);
    }
    r->down_logged = 1;

    redisFree(r->ctx);
    r->ctx = NULL;
    r->next_attempt_ms = pb_now_ms() + 500;
}


static int
ensure(pb_redis_t *r)
{
    struct timeval   tv;
    redisReply      *reply;
    int64_t          now;

    if (r->ctx != NULL) {
        return 0;
    }

    now = pb_now_ms();
    if (now < r->next_attempt_ms) {
        return -1;
    }
    r->next_attempt_ms = now + 500;

    tv.tv_sec = 2;
    tv.tv_usec = 0;

    r->ctx = r->path[0] ? redisConnectUnixWithTimeout(r->path, tv)
                        : redisConnectWithTimeout(r->host, r->port, tv);

    if (r->ctx == NULL || r->ctx->err) {
        if (!r->down_logged && !r->quiet) {
            pb_log(PB_LOG_ERROR, "redis connect failed", "{s:s}", "error",
                   r->ctx ? r->ctx->errstr : "out of memory");
        }
        r->down_logged = 1;
        if (r->ctx != NULL) {
            redisFree(r->ctx);
            r->ctx = NULL;
        }
        return -1;
    }

    tv.tv_sec = (time_t) (r->timeout_ms / 1000);
    tv.tv_usec = (suseconds_t) (r->timeout_ms % 1000) * 1000;
    redisSetTimeout(r->ctx, tv);

    if (r->user[0] || r->password[0]) {
        reply = r->user[0]
                ? redisCommand(r->ctx, "AUTH %s %s", r->user, r->password)
                : redisCommand(r->ctx, "AUTH %s", r->password);
        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            pb_log(PB_LOG_ERROR, "redis AUTH failed", NULL);
            freeReplyObject(reply);
            drop(r, "auth failed");
            return -1;
        }
        freeReplyObject(reply);
    }

    if (r->db != 0) {
        reply = redisCommand(r->ctx, "SELECT %d", r->db);
        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            freeReplyObject(reply);
            drop(r, "SELECT failed");
            return -1;
        }
        freeReplyObject(reply);
    }

    if (r->down_logged && !r->quiet) {
        pb_log(PB_LOG_INFO, "redis connected", NULL);
    }
    r->down_logged = 0;

    return 0;
}


/* Turns a raw hiredis result into the contract: NULL on any failure. */
static redisReply *
checked(pb_redis_t *r, redisReply *reply, const char *what)
{
    if (reply == NULL) {
        drop(r, r->ctx->errstr);
        return NULL;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        pb_log(PB_LOG_ERROR, "redis error", "{s:s, s:s}", "command", what,
               "error", reply->str);
        freeReplyObject(reply);
        return NULL;
    }

    return reply;
}


redisReply *
pb_redis_cmd(pb_redis_t *r, const char *fmt, ...)
{
    va_list      ap;
    redisReply  *reply;

    if (ensure(r) != 0) {
        return NULL;
    }

    va_start(ap, fmt);
    reply = redisvCommand(r->ctx, fmt, ap);
    va_end(ap);

    return checked(r, reply, fmt);
}


/*
 * Reads n replies of commands already sent; argvs[i][0], or else what,
 * names command i in the log.  0, or -1 (nothing in replies) as
 * pb_redis_pipeline says.
 */
static int
read_replies(pb_redis_t *r, size_t n, redisReply **replies,
    const char *const *const *argvs, const char *what)
{
    size_t   i, got;
    void    *reply;
    int      failed = 0;

    for (got = 0; got < n; got++) {
        if (redisGetReply(r->ctx, &reply) != REDIS_OK) {
            drop(r, r->ctx->errstr);
            failed = 1;
            break;
        }
        replies[got] = reply;
        if (replies[got]->type == REDIS_REPLY_ERROR) {
            pb_log(PB_LOG_ERROR, "redis error", "{s:s, s:s}", "command",
                   argvs != NULL ? argvs[got][0] : what, "error",
                   replies[got]->str);
            failed = 1;
        }
    }

    if (failed) {
        for (i = 0; i < got; i++) {
            freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
        return -1;
    }

    return 0;
}


int
pb_redis_pipeline(pb_redis_t *r, size_t n, const char **const *argvs,
    redisReply **replies)
{
    size_t   i, argc;

    if (ensure(r) != 0) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        for (argc = 0; argvs[i][argc] != NULL; argc++) {
            /* count */
        }
        if (redisAppendCommandArgv(r->ctx, (int) argc, argvs[i], NULL)
            != REDIS_OK)
        {
            /* half a pipeline is in the buffer: start afresh */
            drop(r, "out of memory");
            return -1;
        }
    }

    return read_replies(r, n, replies, (const char *const *const *) argvs,
                        NULL);
}


void
pb_resp_init(pb_resp_t *b, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->buf = malloc(cap);
    b->cap = cap;
    b->failed = b->buf == NULL;
}


void
pb_resp_free(pb_resp_t *b)
{
    free(b->buf);
    memset(b, 0, sizeof(*b));
}


/* Room for n more bytes; 0, or -1 (remembered) out of memory. */
static int
resp_room(pb_resp_t *b, size_t n)
{
    char    *grown;
    size_t   cap;

    if (b->failed) {
        return -1;
    }

    if (b->len + n <= b->cap) {
        return 0;
    }

    for (cap = b->cap ? b->cap : 256; cap < b->len + n; cap *= 2) {
        /* doubling */
    }

    grown = realloc(b->buf, cap);
    if (grown == NULL) {
        b->failed = 1;
        return -1;
    }

    b->buf = grown;
    b->cap = cap;

    return 0;
}


/* c (a '*' or a '$'), the number n and CRLF (no snprintf: one per word) */
static void
resp_head(pb_resp_t *b, char c, size_t n)
{
    char    digits[24];
    size_t  k = 0;

    do {
        digits[k++] = (char) ('0' + n % 10);
        n /= 10;
    } while (n > 0);

    if (resp_room(b, k + 3) == 0) {
        b->buf[b->len++] = c;
        while (k > 0) {
            b->buf[b->len++] = digits[--k];
        }
        b->buf[b->len++] = '\r';
        b->buf[b->len++] = '\n';
    }
}


void
pb_resp_cmd(pb_resp_t *b, size_t argc)
{
    resp_head(b, '*', argc);
    b->cmds++;
}


void
pb_resp_arg(pb_resp_t *b, const char *s, size_t len)
{
    resp_head(b, '$', len);

    if (resp_room(b, len + 2) == 0) {
        memcpy(b->buf + b->len, s, len);
        memcpy(b->buf + b->len + len, "\r\n", 2);
        b->len += len + 2;
    }
}


void
pb_resp_str(pb_resp_t *b, const char *s)
{
    pb_resp_arg(b, s, strlen(s));
}


int
pb_redis_send(pb_redis_t *r, const pb_resp_t *b, size_t n, const char *what,
    redisReply **replies)
{
    if (b->failed) {
        pb_log(PB_LOG_ERROR, "out of memory", "{s:s}", "command", what);
        return -1;
    }

    if (ensure(r) != 0) {
        return -1;
    }

    if (redisAppendFormattedCommand(r->ctx, b->buf, b->len) != REDIS_OK) {
        drop(r, "out of memory");
        return -1;
    }

    return read_replies(r, n, replies, NULL, what);
}


static int
load_script(pb_redis_t *r, pb_script_t *script)
{
    redisReply  *reply;

    reply = pb_redis_cmd(r, "SCRIPT LOAD %s", script->body);
    if (reply == NULL || reply->type != REDIS_REPLY_STRING
        || reply->len != 40)
    {
        freeReplyObject(reply);
        return -1;
    }

    memcpy(script->sha, reply->str, 41);
    freeReplyObject(reply);

    return 0;
}


redisReply *
pb_redis_eval(pb_redis_t *r, pb_script_t *script, const char **keys,
    const char **args)
{
    const char  *stack[PB_REDIS_MAX_ARGS], **argv = stack;
    char         nkeys_text[16];
    int          argc, nkeys, nargs, attempt;
    redisReply  *reply = NULL;

    if (ensure(r) != 0) {
        return NULL;
    }

    for (nkeys = 0; keys != NULL && keys[nkeys] != NULL; nkeys++) {
        /* count */
    }
    for (nargs = 0; args != NULL && args[nargs] != NULL; nargs++) {
        /* count */
    }

    /* a batch script may take hundreds of arguments: never cut them */
    argc = 3 + nkeys + nargs;
    if (argc > PB_REDIS_MAX_ARGS) {
        argv = malloc(argc * sizeof(*argv));
        if (argv == NULL) {
            return NULL;
        }
    }

    snprintf(nkeys_text, sizeof(nkeys_text), "%d", nkeys);
    argv[0] = "EVALSHA";
    argv[2] = nkeys_text;
    if (nkeys > 0) {
        memcpy(&argv[3], keys, nkeys * sizeof(*argv));
    }
    if (nargs > 0) {
        memcpy(&argv[3 + nkeys], args, nargs * sizeof(*argv));
    }

    /* twice at most: the second after (re)loading a script Redis forgot */
    for (attempt = 0; attempt < 2; attempt++) {
        if (script->sha[0] == '\0' && load_script(r, script) != 0) {
            break;
        }

        argv[1] = script->sha;
        reply = redisCommandArgv(r->ctx, argc, argv, NULL);

        if (reply != NULL && reply->type == REDIS_REPLY_ERROR
            && strncmp(reply->str, "NOSCRIPT", 8) == 0)
        {
            freeReplyObject(reply);
            reply = NULL;
            script->sha[0] = '\0';
            continue;
        }

        reply = checked(r, reply, script->name);
        break;
    }

    if (argv != stack) {
        free(argv);
    }

    return reply;
}


/*
 * Ours if free, or already ours: a worker restarted under the same id
 * takes back the lock its previous life died holding, instead of waiting
 * out the TTL.
 */
static pb_script_t  lock_script = {
    "lock",
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return 1\n"
    "end\n"
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "return 0\n",
    ""
};


int
pb_redis_lock(pb_redis_t *r, const char *key, const char *owner,
    int64_t ttl_ms)
{
    char         ttl[24];
    const char  *keys[] = { key, NULL };
    const char  *args[] = { owner, ttl, NULL };
    int          got;
    redisReply  *reply;

    snprintf(ttl, sizeof(ttl), "%lld", (long long) ttl_ms);
    reply = pb_redis_eval(r, &lock_script, keys, args);
    got = reply != NULL && reply->type == REDIS_REPLY_INTEGER
          && reply->integer == 1;
    freeReplyObject(reply);

    return got;
}


static pb_script_t  unlock_script = {
    "unlock",
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n",
    ""
};


void
pb_redis_unlock(pb_redis_t *r, const char *key, const char *owner)
{
    const char  *keys[] = { key, NULL };
    const char  *args[] = { owner, NULL };

    freeReplyObject(pb_redis_eval(r, &unlock_script, keys, args));
}


int64_t
pb_redis_time_ms(pb_redis_t *r)
{
    int64_t      ms = -1;
    redisReply  *reply;

    reply = pb_redis_cmd(r, "TIME");
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 2)
    {
        ms = pb_reply_int(reply, 0, 0) * 1000
             + pb_reply_int(reply, 1, 0) / 1000;
    }

    freeReplyObject(reply);

    return ms;
}


const char *
pb_reply_str(const redisReply *reply, size_t i)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || i >= reply->elements)
    {
        return NULL;
    }

    reply = reply->element[i];

    return reply->type == REDIS_REPLY_STRING
           || reply->type == REDIS_REPLY_STATUS ? reply->str : NULL;
}


long long
pb_reply_int(const redisReply *reply, size_t i, long long def)
{
    const char  *s;

    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY
        && i < reply->elements
        && reply->element[i]->type == REDIS_REPLY_INTEGER)
    {
        return reply->element[i]->integer;
    }

    s = pb_reply_str(reply, i);

    return s ? strtoll(s, NULL, 10) : def;
}
