/*
 * Shared set-up for the worker's unit tests: a context on the test Redis
 * (REDIS_URL, default redis://127.0.0.1:6394/15, flushed first) and the
 * CHECK harness of t/unit/check.h.  Header-only: each test is one program.
 */

#ifndef PB_TESTLIB_H
#define PB_TESTLIB_H

#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "../unit/check.h"
#include "config.h"
#include "ctx.h"
#include "log.h"
#include "redis_util.h"

static pb_config_t  test_cfg;
static pb_ctx_t     test_ctx;


static inline pb_ctx_t *
test_setup(const char *name)
{
    char         err[256];
    const char  *url = getenv("REDIS_URL");

    if (url == NULL) {
        setenv("REDIS_URL", "redis://127.0.0.1:6394/15", 1);
    }

    if (pb_config_from_env(&test_cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        exit(2);
    }

    snprintf(test_cfg.worker_id, sizeof(test_cfg.worker_id), "test-%s", name);
    pb_log_init(name, test_cfg.worker_id,
                getenv("PB_TEST_LOG") ? PB_LOG_DEBUG : PB_LOG_ERROR + 1);

    test_ctx.cfg = &test_cfg;
    test_ctx.redis = pb_redis_open(test_cfg.redis_url, 5000, err, sizeof(err));
    if (test_ctx.redis == NULL) {
        fprintf(stderr, "%s: %s\n", name, err);
        exit(2);
    }

    return &test_ctx;
}


static inline void
test_flush(pb_ctx_t *ctx)
{
    freeReplyObject(pb_redis_cmd(ctx->redis, "FLUSHDB"));
}


/* An integer reply of a one-key command ("ZCARD %s"), or -1. */
static inline long long
test_int(pb_ctx_t *ctx, const char *fmt, const char *key)
{
    long long    n = -1;
    redisReply  *r = pb_redis_cmd(ctx->redis, fmt, key);

    if (r != NULL && r->type == REDIS_REPLY_INTEGER) {
        n = r->integer;
    }
    freeReplyObject(r);

    return n;
}


/* HGET key field into a static buffer ("" when absent). */
static inline const char *
test_hget(pb_ctx_t *ctx, const char *key, const char *field)
{
    static char  buf[4096];
    redisReply  *r = pb_redis_cmd(ctx->redis, "HGET %s %s", key, field);

    buf[0] = '\0';
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        snprintf(buf, sizeof(buf), "%s", r->str);
    }
    freeReplyObject(r);

    return buf;
}

/* The string reply of a one-key command ("GET %s") parsed, or NULL. */
static inline json_t *
test_json(pb_ctx_t *ctx, const char *fmt, const char *key)
{
    json_t      *v = NULL;
    redisReply  *r = pb_redis_cmd(ctx->redis, fmt, key);

    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        v = json_loads(r->str, JSON_DECODE_ANY, NULL);
    }
    freeReplyObject(r);

    return v;
}

#endif /* PB_TESTLIB_H */
