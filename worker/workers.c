/*
 * The worker registry.  See workers.h.
 */

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pb_keys.h"
#include "workers.h"

static int64_t  next_beat_ms;

/*
 * KEYS: 1 processing list, 2 queue, 3 registry set.  ARGV: 1 worker id,
 * dropped from the registry once its list is empty.  Newest first onto
 * the consuming end, so the oldest is handled first.
 */
static pb_script_t  recover_script = { "recover_processing",
    "local n = 0\n"
    "while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do\n"
    "  n = n + 1\n"
    "end\n"
    "redis.call('SREM', KEYS[3], ARGV[1])\n"
    "return n\n",
    ""
};


/* KEYS: 1 heartbeat, 2 registry.  ARGV: 1 info, 2 TTL ms, 3 worker id. */
static pb_script_t  beat_script = { "heartbeat",
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "redis.call('SADD', KEYS[2], ARGV[3])\n"
    "return 0\n",
    ""
};


int
pb_processing_key(const pb_config_t *cfg, const char *worker_id, char *buf,
    size_t cap)
{
    return pb_key_join(buf, cap, cfg->queue, PB_PROCESSING_INFIX, worker_id)
           ? 0 : -1;
}


void
pb_workers_heartbeat(pb_ctx_t *ctx)
{
    char         info[256], ttl[24], beat[256];
    const char  *keys[] = { beat, PB_KEY_WORKERS, NULL };
    const char  *argv[] = { info, ttl, ctx->cfg->worker_id, NULL };
    int64_t      now = pb_now_ms();

    if (now < next_beat_ms) {
        return;
    }

    snprintf(beat, sizeof(beat), "%s%s", PB_KEY_WORKER_PREFIX,
             ctx->cfg->worker_id);
    snprintf(info, sizeof(info), "{\"pid\":%ld,\"at\":%lld,\"poll\":%s,"
             "\"max_running\":%d}", (long) getpid(), (long long) now,
             ctx->cfg->poll_mode ? "true" : "false", ctx->cfg->max_running);

    snprintf(ttl, sizeof(ttl), "%lld", (long long) ctx->cfg->heartbeat_ttl_ms);
    freeReplyObject(pb_redis_eval(ctx->redis, &beat_script, keys, argv));

    /* a few beats per TTL, so one slow step does not look like a death */
    next_beat_ms = now + ctx->cfg->heartbeat_ttl_ms / 5;
}


int
pb_workers_alive(pb_ctx_t *ctx, const char *worker_id)
{
    int          alive = -1;
    redisReply  *reply;

    reply = pb_redis_cmd(ctx->redis, "EXISTS %s%s", PB_KEY_WORKER_PREFIX,
                         worker_id);
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        alive = reply->integer == 1;
    }
    freeReplyObject(reply);

    return alive;
}


/* Moves worker_id's processing list back to the queue and forgets it. */
static long long
recover(pb_ctx_t *ctx, const char *worker_id)
{
    char         processing[512];
    const char  *keys[] = { processing, ctx->cfg->queue, PB_KEY_WORKERS, NULL };
    const char  *argv[] = { worker_id, NULL };
    long long    n = -1;
    redisReply  *reply;

    if (pb_processing_key(ctx->cfg, worker_id, processing,
                          sizeof(processing)) != 0)
    {
        return -1;
    }

    reply = pb_redis_eval(ctx->redis, &recover_script, keys, argv);
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        n = reply->integer;
    }
    freeReplyObject(reply);

    if (n > 0) {
        pb_log(PB_LOG_INFO, "recovered in-flight webhooks", "{s:s, s:I}",
               "from", worker_id, "count", (json_int_t) n);
    }

    return n;
}


void
pb_workers_reap(pb_ctx_t *ctx)
{
    size_t       i;
    const char  *id;
    redisReply  *reply;

    reply = pb_redis_cmd(ctx->redis, "SMEMBERS %s", PB_KEY_WORKERS);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(reply);
        return;
    }

    for (i = 0; i < reply->elements; i++) {
        id = reply->element[i]->str;
        if (strcmp(id, ctx->cfg->worker_id) != 0
            && pb_workers_alive(ctx, id) == 0)
        {
            pb_log(PB_LOG_WARN, "worker presumed dead", "{s:s}", "worker", id);
            recover(ctx, id);
        }
    }

    freeReplyObject(reply);
}


void
pb_workers_leave(pb_ctx_t *ctx)
{
    freeReplyObject(pb_redis_cmd(ctx->redis, "DEL %s%s", PB_KEY_WORKER_PREFIX,
                                 ctx->cfg->worker_id));
    /* anything still in flight goes back for the others */
    recover(ctx, ctx->cfg->worker_id);
}
