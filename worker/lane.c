/*
 * The shared lane.  See lane.h.
 */

#include <stdio.h>

#include "backoff.h"
#include "lane.h"
#include "lua.h"

/* A refusal streak older than this is forgotten. */
#define PB_STREAK_TTL_S  3600

/* Retry-After: 0 would mean "hammer again now"; keep a floor. */
#define PB_RETRY_AFTER_FLOOR_MS  250

/* ARGV: 2 ms to stay closed */
static pb_script_t  close_script = { "lane_close",
    PB_LUA_PRELUDE
    "local now, ms = now_ms(), tonumber(ARGV[2])\n"
    "local current = tonumber(redis.call('GET', K.lane) or '0')\n"
    "if now + ms > current then\n"
    "  redis.call('SET', K.lane, int(now + ms), 'PX', int(ms))\n"
    "end\n"
    "return 0\n",
    ""
};

/* ARGV: 2 calls per minute */
static pb_script_t  acquire_script = { "lane_acquire",
    PB_LUA_PRELUDE PB_LUA_THROTTLE
    "local now = now_ms()\n"
    "local closed = tonumber(redis.call('GET', K.lane) or '0')\n"
    "if closed > now then return closed - now end\n"
    "return throttle(now, tonumber(ARGV[2]))\n",
    ""
};


int64_t
pb_lane_backoff_ms(pb_ctx_t *ctx, const pb_api_result_t *res)
{
    long long    streak = 1;
    redisReply  *reply;

    if (res->retry_after_ms >= 0) {
        return res->retry_after_ms > PB_RETRY_AFTER_FLOOR_MS
               ? res->retry_after_ms : PB_RETRY_AFTER_FLOOR_MS;
    }

    reply = pb_redis_cmd(ctx->redis, "INCR %s", PB_KEY_LANE_STREAK);
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        streak = reply->integer;
    }
    freeReplyObject(reply);
    freeReplyObject(pb_redis_cmd(ctx->redis, "EXPIRE %s %d",
                                 PB_KEY_LANE_STREAK, PB_STREAK_TTL_S));

    /* never 0: a closure that is already over would not pause anyone */
    return 1 + pb_backoff_full_jitter(ctx->cfg->backoff_base_ms,
                                      ctx->cfg->backoff_cap_ms,
                                      (unsigned) (streak - 1), pb_random64());
}


void
pb_lane_close(pb_ctx_t *ctx, int64_t ms)
{
    char         text[24];
    const char  *keys[PB_LUA_NKEYS + 3];
    const char  *argv[] = { PB_KEY_JOB_PREFIX, text, NULL };

    snprintf(text, sizeof(text), "%lld", (long long) ms);
    pb_lua_keys(keys, NULL, NULL);
    freeReplyObject(pb_redis_eval(ctx->redis, &close_script, keys, argv));
}


int64_t
pb_lane_acquire(pb_ctx_t *ctx)
{
    char         cpm[24];
    const char  *keys[PB_LUA_NKEYS + 3];
    const char  *argv[] = { PB_KEY_JOB_PREFIX, cpm, NULL };
    int64_t      wait;
    redisReply  *reply;

    snprintf(cpm, sizeof(cpm), "%d", ctx->cfg->calls_per_minute);
    pb_lua_keys(keys, NULL, NULL);

    reply = pb_redis_eval(ctx->redis, &acquire_script, keys, argv);
    wait = reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    freeReplyObject(reply);

    return wait;
}
