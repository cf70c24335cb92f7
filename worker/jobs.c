/*
 * Jobs: enqueue, listing and the dead-letter set.  See jobs.h.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "jobs.h"
#include "log.h"
#include "lua.h"

/*
 * The enqueue script, also the documented way for other applications to
 * add jobs (docs/redis-layout.md).  ARGV: 2 job id, 3 agent id,
 * 4 argument JSON text ("" for none), 5 priority, 6 source.
 * Returns {1, position} when added, {0, state} when the id exists.
 */
static pb_script_t  enqueue_script = { "enqueue",
    PB_LUA_PRELUDE
    "local id = ARGV[2]\n"
    "if redis.call('EXISTS', P .. id) == 1 then\n"
    "  return {0, jget(id, 'state') or ''}\n"
    "end\n"
    "local now = now_ms()\n"
    "local seq = redis.call('INCR', K.seq)\n"
    "local score = -tonumber(ARGV[5]) * 4294967296 + seq\n"
    "redis.call('HSET', P .. id, 'id', id, 'agent', ARGV[3],\n"
    "  'argument', ARGV[4], 'priority', ARGV[5], 'seq', seq,\n"
    "  'score', int(score), 'state', 'pending', 'status', 'pending',\n"
    "  'attempts', '0', 'enqueued_at', int(now), 'source', ARGV[6])\n"
    "redis.call('ZADD', K.pending, score, id)\n"
    "local pos = position(id)\n"
    "metric('enqueued')\n"
    "audit({job_id = id, agent_id = ARGV[3], status = 'pending',\n"
    "  metadata = {queue_position = pos, attempts = 0,\n"
    "    priority = tonumber(ARGV[5])}})\n"
    "return {1, pos}\n",
    ""
};

/* ARGV: 2 job id */
static pb_script_t  dlq_retry_script = { "dlq_retry",
    PB_LUA_PRELUDE
    "local id = ARGV[2]\n"
    "if not redis.call('ZSCORE', K.dead, id) then return {0} end\n"
    "redis.call('ZREM', K.dead, id)\n"
    "local seq = redis.call('INCR', K.seq)\n"
    "local score = -tonumber(jget(id, 'priority') or '0') * 4294967296 + seq\n"
    /* the old error leaves the job; the audit row keeps it */
    "local old = jget(id, 'error')\n"
    "redis.call('HDEL', P .. id, 'token', 'container', 'error', 'dead_at',\n"
    "  'in_doubt', 'retry_at', 'exit_code', 'exit_message', 'found_by',\n"
    "  'finished_at', 'launched_at', 'last_error')\n"
    "redis.call('HSET', P .. id, 'state', 'pending', 'status', 'pending',\n"
    "  'attempts', '0', 'seq', seq, 'score', int(score),\n"
    "  'retried_at', int(now_ms()))\n"
    "redis.call('HINCRBY', P .. id, 'dlq_retries', 1)\n"
    "redis.call('ZADD', K.pending, score, id)\n"
    "metric('dlq_retried')\n"
    /* the one backward move the audit log allows (pb_audit_reset) */
    "audit({op = 'reset', job_id = id, metadata = {attempts = 0,\n"
    "  queue_position = position(id), retried_from = 'dead_letter',\n"
    "  dead_letter_error = old, error = cjson.null}})\n"
    "return {1}\n",
    ""
};

static pb_script_t  dlq_purge_script = { "dlq_purge",
    PB_LUA_PRELUDE
    "local ids = redis.call('ZRANGE', K.dead, 0, -1)\n"
    "for _, id in ipairs(ids) do forget(id) end\n"
    "redis.call('DEL', K.dead)\n"
    "return {#ids}\n",
    ""
};

/*
 * ARGV: 2 keep ms, 3 most jobs per call.  The oldest finished jobs, done
 * longer ago than the keep time, at most that many (a script blocks
 * Redis while it runs).  A job's audit row is final by then; what goes is
 * its hash, its place in the done set and its container's mapping.
 */
static pb_script_t  forget_finished_script = { "forget_finished",
    PB_LUA_PRELUDE
    "local before = now_ms() - tonumber(ARGV[2])\n"
    "local ids = redis.call('ZRANGEBYSCORE', K.done, '-inf', before,\n"
    "  'LIMIT', 0, tonumber(ARGV[3]))\n"
    "for _, id in ipairs(ids) do forget(id) end\n"
    "if #ids > 0 then redis.call('ZREM', K.done, unpack(ids)) end\n"
    "return {#ids}\n",
    ""
};

static const struct {
    const char  *name;
    const char  *key;
    int          newest_first;
} sets[] = {
    { "pending", PB_KEY_JOBS_PENDING, 0 },
    { "retry", PB_KEY_JOBS_RETRY, 0 },
    { "running", PB_KEY_JOBS_RUNNING, 0 },
    { "dead", PB_KEY_JOBS_DEAD, 1 },
    { "done", PB_KEY_JOBS_DONE, 1 },
};

#define NSETS  (sizeof(sets) / sizeof(sets[0]))


int
pb_job_id_valid(const char *id)
{
    size_t  n;

    for (n = 0; id[n] != '\0'; n++) {
        if (!((id[n] >= 'a' && id[n] <= 'z') || (id[n] >= 'A' && id[n] <= 'Z')
              || (id[n] >= '0' && id[n] <= '9') || strchr("_.:-", id[n])))
        {
            return 0;
        }
    }

    return n > 0 && n <= PB_JOB_ID_MAX;
}


void
pb_job_id_generate(char out[PB_JOB_ID_MAX + 1])
{
    snprintf(out, PB_JOB_ID_MAX + 1, "job-%lld-%08x",
             (long long) pb_now_ms(), (unsigned) (pb_random64() >> 32));
}


static redisReply *
eval(pb_ctx_t *ctx, pb_script_t *script, const char **argv)
{
    const char  *keys[PB_LUA_NKEYS + 3];

    pb_lua_keys(keys, NULL, NULL);

    return pb_redis_eval(ctx->redis, script, keys, argv);
}


int
pb_job_enqueue(pb_ctx_t *ctx, const char *job_id, const char *agent,
    const char *argument, long priority, const char *source,
    pb_enqueue_result_t *res)
{
    char         prio[24];
    const char  *argv[] = { PB_KEY_JOB_PREFIX, job_id, agent,
                            argument ? argument : "", prio, source, NULL };
    const char  *state;
    redisReply  *reply;

    snprintf(prio, sizeof(prio), "%ld", priority);
    memset(res, 0, sizeof(*res));

    reply = eval(ctx, &enqueue_script, argv);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2)
    {
        freeReplyObject(reply);
        return -1;
    }

    res->created = (int) pb_reply_int(reply, 0, 0);
    if (res->created) {
        res->position = pb_reply_int(reply, 1, 0);

    } else {
        state = pb_reply_str(reply, 1);
        snprintf(res->state, sizeof(res->state), "%s", state ? state : "");
    }

    freeReplyObject(reply);

    return 0;
}


json_t *
pb_job_get(pb_ctx_t *ctx, const char *job_id)
{
    size_t       i;
    json_t      *job = NULL;
    redisReply  *reply;

    reply = pb_redis_cmd(ctx->redis, "HGETALL %s%s", PB_KEY_JOB_PREFIX, job_id);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements == 0)
    {
        goto done;
    }

    job = json_object();
    for (i = 0; i + 1 < reply->elements; i += 2) {
        json_object_set_new(job, reply->element[i]->str,
                            json_stringn(reply->element[i + 1]->str,
                                         reply->element[i + 1]->len));
    }

done:

    freeReplyObject(reply);

    return job;
}


int
pb_jobs_set_valid(const char *set)
{
    size_t  i;

    for (i = 0; i < NSETS; i++) {
        if (strcmp(set, sets[i].name) == 0) {
            return 1;
        }
    }

    return 0;
}


json_t *
pb_jobs_list(pb_ctx_t *ctx, const char *set, long limit)
{
    size_t       i, k;
    json_t      *list = NULL, *job;
    redisReply  *reply = NULL;

    for (k = 0; k < NSETS && strcmp(set, sets[k].name) != 0; k++) {
        /* find the set */
    }

    if (k == NSETS || limit <= 0) {
        goto done;
    }

    reply = pb_redis_cmd(ctx->redis, "%s %s 0 %ld WITHSCORES",
                         sets[k].newest_first ? "ZREVRANGE" : "ZRANGE",
                         sets[k].key, limit - 1);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        goto done;
    }

    list = json_array();
    for (i = 0; i + 1 < reply->elements; i += 2) {
        job = pb_job_get(ctx, reply->element[i]->str);
        if (job == NULL) {
            /* gone between the two reads: a concurrent purge */
            continue;
        }
        json_object_set_new(job, "rank_score",
                            json_string(reply->element[i + 1]->str));
        json_array_append_new(list, job);
    }

done:

    freeReplyObject(reply);

    return list;
}


int
pb_dlq_retry(pb_ctx_t *ctx, const char *job_id)
{
    const char  *argv[] = { PB_KEY_JOB_PREFIX, job_id, NULL };
    int          rc;
    redisReply  *reply;

    reply = eval(ctx, &dlq_retry_script, argv);
    rc = reply ? (int) pb_reply_int(reply, 0, -1) : -1;
    freeReplyObject(reply);

    return rc;
}


long long
pb_dlq_purge(pb_ctx_t *ctx)
{
    const char  *argv[] = { PB_KEY_JOB_PREFIX, NULL };
    long long    n;
    redisReply  *reply;

    reply = eval(ctx, &dlq_purge_script, argv);
    n = reply ? pb_reply_int(reply, 0, -1) : -1;
    freeReplyObject(reply);

    return n;
}


long long
pb_jobs_forget_finished(pb_ctx_t *ctx, int64_t keep_ms, long limit)
{
    char         keep[24], most[24];
    const char  *argv[] = { PB_KEY_JOB_PREFIX, keep, most, NULL };
    long long    n;
    redisReply  *reply;

    snprintf(keep, sizeof(keep), "%" PRId64, keep_ms);
    snprintf(most, sizeof(most), "%ld", limit);

    reply = eval(ctx, &forget_finished_script, argv);
    n = reply ? pb_reply_int(reply, 0, -1) : -1;
    freeReplyObject(reply);

    return n;
}
