/*
 * Launch slots and the life of a run.  See slots.h; the key layout and the
 * state diagram are in docs/redis-layout.md.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "lua.h"
#include "slots.h"

/* A number as a script argument, formatted into buf. */
#define INT_ARG(buf, v)                                                       \
    (snprintf(buf, sizeof(buf), "%" PRId64, (int64_t) (v)), buf)


void
pb_lua_keys(const char **keys, const char *extra1, const char *extra2)
{
    static const char  *fixed[PB_LUA_NKEYS] = { PB_LUA_KEYS_INIT };

    memcpy(keys, fixed, sizeof(fixed));
    keys[PB_LUA_NKEYS] = extra1;
    keys[PB_LUA_NKEYS + 1] = extra1 ? extra2 : NULL;
    keys[PB_LUA_NKEYS + 2] = NULL;
}


/*
 * ARGV: 2 max running, 3 worker id, 4 lease ms, 5 calls per minute,
 * 6 how many pending jobs to look at for one whose agent is free.
 */
static pb_script_t  claim_script = { "claim",
    PB_LUA_PRELUDE PB_LUA_THROTTLE
    "local now = now_ms()\n"
    "if redis.call('EXISTS', K.paused) == 1 then return {'paused'} end\n"
    "if redis.call('EXISTS', K.draining) == 1 then return {'draining'} end\n"
    "local closed = tonumber(redis.call('GET', K.lane) or '0')\n"
    "if closed > now then return {'lane_closed', int(closed - now)} end\n"
    /* retries whose backoff is over go back in line at their old place */
    "for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.retry, '-inf', now,\n"
    "    'LIMIT', 0, 100)) do\n"
    "  redis.call('ZREM', K.retry, id)\n"
    "  local score = jget(id, 'score')\n"
    "  if score then\n"
    "    redis.call('HSET', P .. id, 'state', 'pending')\n"
    "    redis.call('ZADD', K.pending, score, id)\n"
    "  end\n"
    "end\n"
    "if redis.call('ZCARD', K.running) >= tonumber(ARGV[2]) then\n"
    "  return {'full'}\n"
    "end\n"
    "local pick\n"
    "local candidates = redis.call('ZRANGE', K.pending, 0,\n"
    "  tonumber(ARGV[6]) - 1)\n"
    "for _, id in ipairs(candidates) do\n"
    "  local agent = jget(id, 'agent')\n"
    "  if not agent then\n"
    "    redis.call('ZREM', K.pending, id)\n"
    "  elseif redis.call('HEXISTS', K.launching, agent) == 0 then\n"
    "    pick = id\n"
    "    break\n"
    "  end\n"
    "end\n"
    "if not pick then\n"
    "  if #candidates > 0 then return {'busy'} end\n"
    "  local due = redis.call('ZRANGE', K.retry, 0, 0, 'WITHSCORES')\n"
    "  if due[2] then return {'empty', int(tonumber(due[2]) - now)} end\n"
    "  return {'empty'}\n"
    "end\n"
    "local wait = throttle(now, tonumber(ARGV[5]))\n"
    "if wait > 0 then return {'throttled', int(wait)} end\n"
    "local token = tostring(redis.call('INCR', K.fence))\n"
    "local agent = jget(pick, 'agent')\n"
    "redis.call('ZREM', K.pending, pick)\n"
    "redis.call('HSET', P .. pick, 'state', 'claimed', 'token', token,\n"
    "  'worker', ARGV[3], 'claimed_at', int(now))\n"
    "redis.call('HDEL', P .. pick, 'in_doubt', 'retry_at')\n"
    "redis.call('ZADD', K.running, now + tonumber(ARGV[4]), pick)\n"
    "redis.call('HSET', K.launching, agent, pick)\n"
    "return {'claimed', pick, agent, jget(pick, 'argument') or '', token,\n"
    "  jget(pick, 'attempts') or '0'}\n",
    ""
};

/* ARGV: 2 job id, 3 token */
static pb_script_t  launching_script = { "mark_launching",
    PB_LUA_PRELUDE
    "if not holds(ARGV[2], ARGV[3]) or jget(ARGV[2], 'state') ~= 'claimed'\n"
    "then\n"
    "  return {'fenced', ARGV[2]}\n"
    "end\n"
    "redis.call('HSET', P .. ARGV[2], 'state', 'launching',\n"
    "  'launching_at', int(now_ms()))\n"
    "return {'ok', ARGV[2]}\n",
    ""
};

/* ARGV: 2 job id, 3 token, 4 container, 5 run timeout ms, 6 found_by */
static pb_script_t  record_script = { "record",
    PB_LUA_PRELUDE PB_LUA_COMPLETE
    "local id, container = ARGV[2], ARGV[4]\n"
    "local now = now_ms()\n"
    "local state = jget(id, 'state')\n"
    "if not holds(id, ARGV[3])\n"
    "   or (state ~= 'launching' and state ~= 'claimed') then\n"
    "  metric('fenced')\n"
    "  return {'fenced', id, state or ''}\n"
    "end\n"
    "local agent = jget(id, 'agent')\n"
    "redis.call('HSET', K.containers, container, id)\n"
    "if redis.call('HGET', K.launching, agent) == id then\n"
    "  redis.call('HDEL', K.launching, agent)\n"
    "end\n"
    "redis.call('HSET', P .. id, 'state', 'running',\n"
    "  'status', 'phantom_launched', 'container', container,\n"
    "  'launched_at', int(now))\n"
    "redis.call('HDEL', P .. id, 'in_doubt')\n"
    "redis.call('ZADD', K.running, now + tonumber(ARGV[5]), id)\n"
    /* a launch got through: the run of 429s is over */
    "redis.call('DEL', K.streak)\n"
    "metric('launches')\n"
    "audit({job_id = id, agent_id = agent, status = 'phantom_launched',\n"
    "  container_id = container,\n"
    "  metadata = {phantom_container_id = container,\n"
    "    attempts = attempts(id), launched_by = jget(id, 'worker'),\n"
    "    found_by = ARGV[6], launch_error = take_last_error(id)}})\n"
    "local early = jget(id, 'early_container')\n"
    "if early == container then\n"
    "  return complete(id, early_outcome(id), now)\n"
    "elseif early then\n"
    /* another run of the same agent ended while ours was being launched */
    "  audit_unknown(early, agent, jget(id, 'early_payload'),\n"
    "    jget(id, 'early_received_at'))\n"
    "  redis.call('HDEL', P .. id, unpack(EARLY))\n"
    "end\n"
    "return {'recorded', id}\n",
    ""
};

/* ARGV: 2 job id, 3 token, 4 close ms, 5 metric, 6 reason */
static pb_script_t  requeue_script = { "requeue",
    PB_LUA_PRELUDE
    "local id = ARGV[2]\n"
    "if not holds(id, ARGV[3]) then return {'fenced', id} end\n"
    "local now = now_ms()\n"
    "release(id)\n"
    "redis.call('HSET', P .. id, 'state', 'pending', 'last_error', ARGV[6])\n"
    "redis.call('ZADD', K.pending, jget(id, 'score'), id)\n"
    "local close = tonumber(ARGV[4])\n"
    "if close > 0 then\n"
    "  local current = tonumber(redis.call('GET', K.lane) or '0')\n"
    "  if now + close > current then\n"
    "    redis.call('SET', K.lane, int(now + close), 'PX', int(close))\n"
    "  end\n"
    "end\n"
    "if ARGV[5] ~= '' then metric(ARGV[5]) end\n"
    "return {'requeued', id}\n",
    ""
};

/* ARGV: 2 job id, 3 token, 4 delay ms, 5 max attempts, 6 error */
static pb_script_t  fail_script = { "fail",
    PB_LUA_PRELUDE
    "local id = ARGV[2]\n"
    "if not holds(id, ARGV[3]) then return {'fenced', id} end\n"
    "local now = now_ms()\n"
    "release(id)\n"
    "redis.call('HDEL', P .. id, 'in_doubt')\n"
    "local n = redis.call('HINCRBY', P .. id, 'attempts', 1)\n"
    "redis.call('HSET', P .. id, 'last_error', ARGV[6])\n"
    "metric('launch_errors')\n"
    "if n >= tonumber(ARGV[5]) then\n"
    "  dead_letter(id, ARGV[6], now)\n"
    "  return {'dead', id, tostring(n)}\n"
    "end\n"
    "local at = now + tonumber(ARGV[4])\n"
    "redis.call('HSET', P .. id, 'state', 'retry', 'retry_at', int(at))\n"
    "redis.call('ZADD', K.retry, at, id)\n"
    "return {'retry', id, tostring(n)}\n",
    ""
};

/*
 * ARGV: 2 job id, 3 token, 4 grace ms, 5 reason.  The slot's deadline
 * becomes launching_at + grace: the earliest a relaunch may be decided.
 * Marking twice keeps the first deadline.
 */
static pb_script_t  doubt_script = { "doubt",
    PB_LUA_PRELUDE
    "local id = ARGV[2]\n"
    "if not holds(id, ARGV[3]) or jget(id, 'state') ~= 'launching' then\n"
    "  return {'fenced', id}\n"
    "end\n"
    "if jget(id, 'in_doubt') then return {'in_doubt', id} end\n"
    "local from = tonumber(jget(id, 'launching_at')\n"
    "  or jget(id, 'claimed_at') or '0')\n"
    "redis.call('HSET', P .. id, 'in_doubt', '1', 'last_error', ARGV[5])\n"
    "redis.call('ZADD', K.running, from + tonumber(ARGV[4]), id)\n"
    "metric('launches_in_doubt')\n"
    "return {'in_doubt', id}\n",
    ""
};

/* ARGV: 2 job id, 3 token, 4..11 outcome */
static pb_script_t  finish_script = { "finish",
    PB_LUA_PRELUDE PB_LUA_COMPLETE
    "local id = ARGV[2]\n"
    "local state = jget(id, 'state')\n"
    "if not holds(id, ARGV[3]) or (state ~= 'running'\n"
    "    and state ~= 'launching' and state ~= 'claimed') then\n"
    "  return {'fenced', id}\n"
    "end\n"
    "return complete(id, outcome(4), now_ms())\n",
    ""
};

/*
 * Applies a batch of webhooks in order and removes their envelopes from
 * the processing list (KEYS[19]) in the same atomic step.  One call for
 * the batch spares a round trip and a script start per webhook, and the
 * removal by position a copy of each envelope: they are the list's
 * oldest, in order, ARGV 2 the oldest and 3 the newest, checked where
 * they must be.  Then groups of PB_WEBHOOK_ARGS: agent, outcome (its
 * container is the webhook's), the key of its dedupe marker and its
 * request id ("" and "": no marker check).  Returns {kind, id, detail}
 * for each, one after the other; {'stale'}, having done nothing, when the
 * list no longer ends with them (a worker that took us for dead put them
 * back on the queue).  One time for the batch: it is applied at one
 * instant; its counters and audit rows are gathered and written once
 * (lua.h).
 *
 * A webhook whose container no job owns while its marker holds another
 * request id is a redelivery the module pushed and could not take back
 * (slots.h): counted as a duplicate and dropped, no audit row.  This
 * comes before the launching check: the delivery the marker names does
 * whatever this one would have (it is held, or completes a launch in
 * doubt), or did, and an old redelivery must not be held as a newer
 * launch's early webhook.  Only this script drops a webhook by its marker,
 * reading it in the same atomic step as the drop; the cheap way never
 * does (a marker changed since the look costs at worst one more "unknown"
 * row, as before this check existed).  A marker key of another type
 * counts as none (redis.pcall; in the look, MGET answers nil for it).
 *
 * Why no sequence drops every copy of a webhook.  The module sets a
 * marker (SET NX, so only when there is none; request ids are unique) in
 * the same atomic step that pushes the envelope carrying its id (its
 * MULTI, or its push script, which deletes the marker of an envelope it
 * could not push; the MULTI's LPUSH fails only on a queue key that is not
 * a list, which nothing can be queued in or taken from).  The marker then
 * holds that id until it expires (or is evicted), to be set again only by
 * a newer delivery pushed with it.  So a marker, when present, holds the
 * id of the newest delivery that set one, and that delivery's envelope
 * cannot be dropped by this rule while it is the newest: its marker is its
 * own, or gone.  It is still in the queue or a processing list (the
 * module removes only envelopes whose SET failed), or it was applied (or
 * found its job over, like any duplicate).  Whenever a copy is dropped
 * here, the newest remains.
 */
#define PB_WEBHOOK_ARGS  11
#define PB_STR(x)        #x
#define PB_XSTR(x)       PB_STR(x)

static pb_script_t  webhook_script = { "webhooks",
    PB_LUA_PRELUDE PB_LUA_COMPLETE
    "local list = K.extra1\n"
    "local n = (#ARGV - 3) / " PB_XSTR(PB_WEBHOOK_ARGS) "\n"
    "if redis.call('LINDEX', list, -1) ~= ARGV[2]\n"
    "   or redis.call('LINDEX', list, -n) ~= ARGV[3] then\n"
    "  return {'stale'}\n"
    "end\n"
    "local now = now_ms()\n"
    "local function webhook(agent, o, seen, rid)\n"
    "  local container = o.container\n"
    "  local id = opt(redis.call('HGET', K.containers, container))\n"
    "  if not id and seen ~= '' then\n"
    "    local first = redis.pcall('GET', seen)\n"
    "    if type(first) == 'string' and first ~= rid then\n"
    "      metric('webhooks_duplicate')\n"
    "      return {'duplicate', '', 'seen'}\n"
    "    end\n"
    "  end\n"
    "  if not id then\n"
    "    local lid = opt(redis.call('HGET', K.launching, agent))\n"
    "    if not lid then\n"
    "      audit_unknown(container, agent, o.payload, o.received_at)\n"
    "      return {'unknown', container}\n"
    "    end\n"
    "    if jget(lid, 'in_doubt') then\n"
    /* its launch call is over, unanswered: nobody will record the launch */
    "      audit({job_id = lid, agent_id = agent,\n"
    "        status = 'phantom_launched', container_id = container,\n"
    "        metadata = {found_by = 'webhook',\n"
    "          phantom_container_id = container}})\n"
    "      return complete(lid, o, now)\n"
    "    end\n"
    "    local early = jget(lid, 'early_container')\n"
    "    if early == container then\n"
    "      metric('webhooks_duplicate')\n"
    "      return {'duplicate', lid}\n"
    "    elseif early then\n"
    "      audit_unknown(early, agent, jget(lid, 'early_payload'),\n"
    "        jget(lid, 'early_received_at'))\n"
    "    end\n"
    /* the launch response is not recorded yet: hold this until it is */
    "    redis.call('HSET', P .. lid, 'early_container', container,\n"
    "      'early_status', o.status, 'early_exit_code', o.exit_code or '',\n"
    "      'early_exit_message', o.exit_message or '',\n"
    "      'early_payload', o.payload or '',\n"
    "      'early_received_at', o.received_at or '')\n"
    "    metric('webhooks_early')\n"
    "    return {'early', lid}\n"
    "  end\n"
    "  local state = jget(id, 'state')\n"
    "  if state ~= 'running' and state ~= 'launching'\n"
    "    and state ~= 'claimed' then\n"
    "    metric('webhooks_duplicate')\n"
    "    return {'duplicate', id}\n"
    "  end\n"
    "  return complete(id, o, now)\n"
    "end\n"
    "local out = {}\n"
    "gathered = {m = {}, rows = {}}\n"
    "local ok, err = pcall(function()\n"
    "  for i = 4, #ARGV, " PB_XSTR(PB_WEBHOOK_ARGS) " do\n"
    "    metric('webhooks')\n"
    "    local r = webhook(ARGV[i], outcome(i + 1), ARGV[i + 9],\n"
    "      ARGV[i + 10])\n"
    "    out[#out + 1] = r[1]\n"
    "    out[#out + 1] = r[2] or ''\n"
    "    out[#out + 1] = r[3] or ''\n"
    "  end\n"
    "end)\n"
    /* even after an error: what was applied keeps its audit rows */
    "flush()\n"
    "if not ok then error(err) end\n"
    "redis.call('HSET', K.metrics, 'last_webhook_at', int(now))\n"
    /* only now: an error half way leaves every envelope of the batch to
     * be applied again, which changes nothing */
    "redis.call('LTRIM', list, 0, -n - 1)\n"
    "return out\n",
    ""
};


static void
copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}


/* Runs a script whose reply is {kind, job id, detail?}. */
static int
run(pb_ctx_t *ctx, pb_script_t *script, const char *extra, const char **argv,
    pb_slot_result_t *res)
{
    const char  *keys[PB_LUA_NKEYS + 3];
    redisReply  *reply;

    pb_lua_keys(keys, extra, NULL);
    memset(res, 0, sizeof(*res));

    reply = pb_redis_eval(ctx->redis, script, keys, argv);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements == 0)
    {
        freeReplyObject(reply);
        return -1;
    }

    copy(res->kind, sizeof(res->kind), pb_reply_str(reply, 0));
    copy(res->job_id, sizeof(res->job_id), pb_reply_str(reply, 1));
    copy(res->detail, sizeof(res->detail), pb_reply_str(reply, 2));

    freeReplyObject(reply);

    return 0;
}


int
pb_slot_claim(pb_ctx_t *ctx, int64_t lease_ms, pb_claim_t *claim)
{
    static const struct {
        const char       *name;
        pb_claim_kind_t   kind;
    } kinds[] = {
        { "claimed", PB_CLAIM_CLAIMED }, { "paused", PB_CLAIM_PAUSED },
        { "draining", PB_CLAIM_DRAINING },
        { "lane_closed", PB_CLAIM_LANE_CLOSED },
        { "throttled", PB_CLAIM_THROTTLED }, { "full", PB_CLAIM_FULL },
        { "empty", PB_CLAIM_EMPTY }, { "busy", PB_CLAIM_BUSY },
    };

    char         max[24], lease[24], cpm[24];
    const char  *keys[PB_LUA_NKEYS + 3], *kind, *s;
    const char  *argv[] = { PB_KEY_JOB_PREFIX,
                            INT_ARG(max, ctx->cfg->max_running),
                            ctx->cfg->worker_id, INT_ARG(lease, lease_ms),
                            INT_ARG(cpm, ctx->cfg->calls_per_minute), "100",
                            NULL };
    size_t       i;
    int          rc = -1;
    redisReply  *reply;

    memset(claim, 0, sizeof(*claim));
    claim->wait_ms = -1;
    pb_lua_keys(keys, NULL, NULL);

    reply = pb_redis_eval(ctx->redis, &claim_script, keys, argv);
    kind = pb_reply_str(reply, 0);
    if (kind == NULL) {
        goto done;
    }

    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(kind, kinds[i].name) == 0) {
            claim->kind = kinds[i].kind;
            rc = 0;
            break;
        }
    }

    if (rc != 0) {
        goto done;
    }

    if (claim->kind != PB_CLAIM_CLAIMED) {
        s = pb_reply_str(reply, 1);
        claim->wait_ms = s ? strtoll(s, NULL, 10) : -1;
        goto done;
    }

    copy(claim->job_id, sizeof(claim->job_id), pb_reply_str(reply, 1));
    copy(claim->agent, sizeof(claim->agent), pb_reply_str(reply, 2));
    s = pb_reply_str(reply, 3);
    claim->argument = s && s[0] ? strdup(s) : NULL;
    copy(claim->token, sizeof(claim->token), pb_reply_str(reply, 4));
    claim->attempts = (int) pb_reply_int(reply, 5, 0);

done:

    freeReplyObject(reply);

    return rc;
}


void
pb_claim_free(pb_claim_t *claim)
{
    free(claim->argument);
    claim->argument = NULL;
}


int
pb_slot_mark_launching(pb_ctx_t *ctx, const char *job_id, const char *token,
    pb_slot_result_t *res)
{
    const char  *argv[] = { PB_KEY_JOB_PREFIX, job_id, token, NULL };

    return run(ctx, &launching_script, NULL, argv, res);
}


int
pb_slot_record(pb_ctx_t *ctx, const char *job_id, const char *token,
    const char *container, const char *found_by, pb_slot_result_t *res)
{
    char         timeout[24];
    const char  *argv[] = { PB_KEY_JOB_PREFIX, job_id, token, container,
                            INT_ARG(timeout, ctx->cfg->run_timeout_ms),
                            found_by, NULL };

    return run(ctx, &record_script, NULL, argv, res);
}


int
pb_slot_requeue(pb_ctx_t *ctx, const char *job_id, const char *token,
    int64_t close_ms, const char *metric, const char *reason,
    pb_slot_result_t *res)
{
    char         close[24];
    const char  *argv[] = { PB_KEY_JOB_PREFIX, job_id, token,
                            INT_ARG(close, close_ms), metric, reason, NULL };

    return run(ctx, &requeue_script, NULL, argv, res);
}


int
pb_slot_fail(pb_ctx_t *ctx, const char *job_id, const char *token,
    int64_t delay_ms, int max_attempts, const char *error,
    pb_slot_result_t *res)
{
    char         delay[24], max[24];
    const char  *argv[] = { PB_KEY_JOB_PREFIX, job_id, token,
                            INT_ARG(delay, delay_ms),
                            INT_ARG(max, max_attempts),
                            error, NULL };

    return run(ctx, &fail_script, NULL, argv, res);
}


int
pb_slot_doubt(pb_ctx_t *ctx, const char *job_id, const char *token,
    int64_t grace_ms, const char *reason, pb_slot_result_t *res)
{
    char         grace[24];
    const char  *argv[] = { PB_KEY_JOB_PREFIX, job_id, token,
                            INT_ARG(grace, grace_ms), reason, NULL };

    return run(ctx, &doubt_script, NULL, argv, res);
}


#define OUTCOME_ARGS(o)                                                       \
    (o)->status, (o)->container ? (o)->container : "",                        \
    (o)->exit_code ? (o)->exit_code : "",                                     \
    (o)->exit_message ? (o)->exit_message : "",                               \
    (o)->payload ? (o)->payload : "",                                         \
    (o)->received_at ? (o)->received_at : "",                                 \
    (o)->found_by ? (o)->found_by : "", (o)->error ? (o)->error : ""


int
pb_slot_finish(pb_ctx_t *ctx, const char *job_id, const char *token,
    const pb_outcome_t *o, pb_slot_result_t *res)
{
    const char  *argv[] = { PB_KEY_JOB_PREFIX, job_id, token, OUTCOME_ARGS(o),
                            NULL };

    return run(ctx, &finish_script, NULL, argv, res);
}


int
pb_slot_webhook(pb_ctx_t *ctx, const char *processing, const char *envelope,
    const char *agent, const pb_outcome_t *o, pb_slot_result_t *res)
{
    pb_webhook_t  w;

    memset(&w, 0, sizeof(w));
    w.envelope = envelope;
    w.agent = agent;
    w.outcome = *o;

    return pb_slot_webhooks(ctx, processing, &w, 1, res);
}


/*
 * A run of webhooks whose containers no job owned when the worker looked
 * (pb_slot_webhooks).  Their audit rows, built by the worker, were LPUSHed
 * onto the outbox just before, in the same MULTI, so neither the payloads
 * nor the rows pass through Lua: Redis hashes every byte of every string
 * that enters a script, and cjson escapes the payload into the row, which
 * made most of a webhook's Redis time.  The script checks what the
 * webhooks script would have found: the processing list still ends with
 * the run (ARGV 1 its oldest envelope, 2 its newest), no job owns any of
 * the containers and none of the agents has a launch in flight (then that
 * script would have done exactly this: audit_unknown).  If so it counts
 * them and removes their envelopes; if not, it takes the rows back off the
 * outbox (its n newest: nothing comes between in a MULTI) and changes
 * nothing else.  KEYS: 1 processing list, 2 containers, 3 launching,
 * 4 outbox, 5 metrics.  ARGV: 1, 2 as above, then a container and an
 * agent per webhook.  Returns 'ok', 'stale' or 'owned'.
 */
static pb_script_t  unknown_script = { "webhooks_unknown",
    "local n = (#ARGV - 2) / 2\n"
    "local function opt(s)\n"
    "  if s == false or s == '' then return nil end\n"
    "  return s\n"
    "end\n"
    /* the rows are there (an LPUSH in EXEC fails only on a wrong type,
     * and LLEN then fails the script before any change) */
    "if redis.call('LLEN', KEYS[4]) < n then\n"
    "  return redis.error_reply('outbox: the rows are not there')\n"
    "end\n"
    "local function undo(why)\n"
    "  redis.call('LTRIM', KEYS[4], n, -1)\n"
    "  return why\n"
    "end\n"
    "if redis.call('LINDEX', KEYS[1], -1) ~= ARGV[1]\n"
    "   or redis.call('LINDEX', KEYS[1], -n) ~= ARGV[2] then\n"
    "  return undo('stale')\n"
    "end\n"
    "local cs, as = {}, {}\n"
    "for i = 3, #ARGV, 2 do\n"
    "  cs[#cs + 1] = ARGV[i]\n"
    "  as[#as + 1] = ARGV[i + 1]\n"
    "end\n"
    "local ids = redis.call('HMGET', KEYS[2], unpack(cs))\n"
    "local ls = redis.call('HMGET', KEYS[3], unpack(as))\n"
    "for i = 1, n do\n"
    "  if opt(ids[i]) or opt(ls[i]) then return undo('owned') end\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "redis.call('HINCRBY', KEYS[5], 'webhooks', n)\n"
    "redis.call('HINCRBY', KEYS[5], 'webhooks_unknown', n)\n"
    "redis.call('HSET', KEYS[5], 'last_webhook_at', string.format('%.0f',\n"
    "  tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))\n"
    "redis.call('LTRIM', KEYS[1], 0, -n - 1)\n"
    "return 'ok'\n",
    ""
};

#define PB_UNKNOWN_NKEYS  5


/* 1 when w is a candidate for the cheap way: with its row. */
static int
has_row(const pb_webhook_t *w)
{
    return w->unknown_row != NULL && w->outcome.container != NULL;
}


/*
 * The look: unknown[i] = 1 for each webhook with an unknown_row whose
 * container no job owns, whose agent has no launch in flight and whose
 * dedupe marker is missing or holds its own request id, now: an HMGET of
 * the containers, one of the launching marks and an MGET of the markers,
 * one round trip.  A marker holding another id sends the webhook the full
 * way, whose script decides (the webhooks script).  Read-only, so not
 * atomic with the apply: the unknown script checks the owners again.
 * 0, or -1 when Redis failed.
 */
static int
look(pb_ctx_t *ctx, const pb_webhook_t *w, size_t n, char *unknown)
{
    const char   **containers, **agents, **seen;
    const char   **argvs[3];
    redisReply    *replies[3], *m;
    size_t         i, k = 0, s = 0;
    int            rc = 0;

    containers = malloc((n + 3) * sizeof(*containers));
    agents = malloc((n + 3) * sizeof(*agents));
    seen = malloc((n + 2) * sizeof(*seen));
    if (containers == NULL || agents == NULL || seen == NULL) {
        free(containers);
        free(agents);
        free(seen);
        return -1;
    }

    containers[0] = agents[0] = "HMGET";
    containers[1] = PB_KEY_CONTAINERS;
    agents[1] = PB_KEY_LAUNCHING;
    seen[0] = "MGET";
    for (i = 0; i < n; i++) {
        if (has_row(&w[i])) {
            containers[2 + k] = w[i].outcome.container;
            agents[2 + k++] = w[i].agent;
            if (w[i].seen_key != NULL) {
                seen[1 + s++] = w[i].seen_key;
            }
        }
    }
    containers[2 + k] = agents[2 + k] = seen[1 + s] = NULL;

    argvs[0] = containers;
    argvs[1] = agents;
    argvs[2] = seen;

    if (k > 0) {
        rc = pb_redis_pipeline(ctx->redis, s > 0 ? 3 : 2, argvs, replies);
    }

    if (k > 0 && rc == 0) {
        if (replies[0]->type != REDIS_REPLY_ARRAY
            || replies[1]->type != REDIS_REPLY_ARRAY
            || replies[0]->elements != k || replies[1]->elements != k
            || (s > 0 && (replies[2]->type != REDIS_REPLY_ARRAY
                          || replies[2]->elements != s)))
        {
            rc = -1;
        }

        for (i = 0, k = 0, s = 0; i < n && rc == 0; i++) {
            if (!has_row(&w[i])) {
                continue;
            }

            unknown[i] = replies[0]->element[k]->len == 0
                         && replies[1]->element[k]->len == 0;
            k++;

            if (w[i].seen_key != NULL) {
                m = replies[2]->element[s++];
                if (m->type == REDIS_REPLY_STRING
                    && strcmp(m->str, w[i].request_id) != 0)
                {
                    unknown[i] = 0;
                }
            }
        }

        freeReplyObject(replies[0]);
        freeReplyObject(replies[1]);
        if (s > 0) {
            freeReplyObject(replies[2]);
        }
    }

    free(containers);
    free(agents);
    free(seen);

    return rc;
}


/*
 * EVAL and the script's text, not EVALSHA: in a MULTI, a NOSCRIPT would
 * come too late (after the commands before it were queued).  Redis keeps
 * the compiled script by its digest either way.
 */
static void
eval_words(pb_resp_t *b, size_t argc, const pb_script_t *script, int nkeys)
{
    char  n[8];

    snprintf(n, sizeof(n), "%d", nkeys);
    pb_resp_cmd(b, 3 + argc);
    pb_resp_str(b, "EVAL");
    pb_resp_str(b, script->body);
    pb_resp_str(b, n);
}


/*
 * Applies one run's reply (EXEC's elements from *e on) to res; returns 0
 * (applied), 1 (not: stale or owned) or -1 (an error), and moves *e past
 * the run's elements.
 */
static int
run_result(const redisReply *exec, size_t *e, const pb_webhook_t *w,
    size_t k, int fast, pb_slot_result_t *res)
{
    const redisReply  *r;
    size_t             i;

    if (fast) {
        r = exec->element[*e + 1];
        *e += 2;

        if (r->type == REDIS_REPLY_ERROR) {
            pb_log(PB_LOG_ERROR, "redis error", "{s:s, s:s}", "command",
                   unknown_script.name, "error", r->str);
            return -1;
        }

        if (r->type != REDIS_REPLY_STRING || strcmp(r->str, "ok") != 0) {
            return 1;
        }

        for (i = 0; i < k; i++) {
            copy(res[i].kind, sizeof(res[i].kind), "unknown");
            copy(res[i].job_id, sizeof(res[i].job_id), w[i].outcome.container);
        }

        return 0;
    }

    r = exec->element[(*e)++];

    if (r->type == REDIS_REPLY_ERROR) {
        pb_log(PB_LOG_ERROR, "redis error", "{s:s, s:s}", "command",
               webhook_script.name, "error", r->str);
        return -1;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 * k) {
        return r->type == REDIS_REPLY_ARRAY && r->elements == 1 ? 1 : -1;
    }

    for (i = 0; i < k; i++) {
        copy(res[i].kind, sizeof(res[i].kind), pb_reply_str(r, 3 * i));
        copy(res[i].job_id, sizeof(res[i].job_id), pb_reply_str(r, 3 * i + 1));
        copy(res[i].detail, sizeof(res[i].detail),
             pb_reply_str(r, 3 * i + 2));
    }

    return 0;
}


/* 1 when w[i] goes the cheap way: seen unknown, and with its row. */
static int
is_fast(const pb_webhook_t *w, const char *unknown, size_t i)
{
    return unknown[i] && has_row(&w[i]);
}


/* The length of the run starting at w[i]: all the cheap way or none. */
static size_t
run_length(const pb_webhook_t *w, const char *unknown, size_t i, size_t n)
{
    size_t  k = 1;

    while (i + k < n && is_fast(w, unknown, i + k) == is_fast(w, unknown, i))
    {
        k++;
    }

    return k;
}


int
pb_slot_webhooks(pb_ctx_t *ctx, const char *processing,
    const pb_webhook_t *w, size_t n, pb_slot_result_t *res)
{
    char  *unknown;
    int    rc = -1;

    if (n == 0) {
        return 0;
    }

    unknown = calloc(n, 1);
    if (unknown != NULL && look(ctx, w, n, unknown) == 0) {
        rc = pb_slot_webhooks_seen(ctx, processing, w, n, unknown, res);
    }
    free(unknown);

    return rc;
}


int
pb_slot_webhooks_seen(pb_ctx_t *ctx, const char *processing,
    const pb_webhook_t *w, size_t n, const char *unknown,
    pb_slot_result_t *res)
{
    const char   *keys[PB_LUA_NKEYS + 3];
    const char   *fast_keys[PB_UNKNOWN_NKEYS] = { processing,
                      PB_KEY_CONTAINERS, PB_KEY_LAUNCHING, PB_KEY_OUTBOX,
                      PB_KEY_METRICS };
    pb_resp_t     b;
    redisReply  **replies = NULL, *exec;
    size_t        i, j, k, e, size;
    int           rc = -1;

    if (n == 0) {
        return 0;
    }

    memset(res, 0, n * sizeof(*res));
    pb_lua_keys(keys, processing, NULL);

    /* MULTI, per run an LPUSH of its rows and an EVAL, or one EVAL, EXEC */
    size = 4096;
    for (i = 0; i < n; i++) {
        size += strlen(w[i].envelope) + (is_fast(w, unknown, i)
                                         ? strlen(w[i].unknown_row) : 1024)
                + (w[i].seen_key != NULL ? strlen(w[i].seen_key)
                                           + strlen(w[i].request_id) : 0);
    }
    pb_resp_init(&b, size);

    pb_resp_cmd(&b, 1);
    pb_resp_str(&b, "MULTI");

    for (i = 0; i < n; i += k) {
        k = run_length(w, unknown, i, n);

        if (is_fast(w, unknown, i)) {
            pb_resp_cmd(&b, 2 + k);
            pb_resp_str(&b, "LPUSH");
            pb_resp_str(&b, PB_KEY_OUTBOX);
            for (j = i; j < i + k; j++) {
                pb_resp_str(&b, w[j].unknown_row);
            }

            eval_words(&b, PB_UNKNOWN_NKEYS + 2 + 2 * k, &unknown_script,
                       PB_UNKNOWN_NKEYS);
            for (j = 0; j < PB_UNKNOWN_NKEYS; j++) {
                pb_resp_str(&b, fast_keys[j]);
            }
            pb_resp_str(&b, w[i].envelope);
            pb_resp_str(&b, w[i + k - 1].envelope);
            for (j = i; j < i + k; j++) {
                pb_resp_str(&b, w[j].outcome.container);
                pb_resp_str(&b, w[j].agent);
            }
            continue;
        }

        eval_words(&b, PB_LUA_NKEYS + 1 + 3 + k * PB_WEBHOOK_ARGS,
                   &webhook_script, PB_LUA_NKEYS + 1);
        for (j = 0; j <= PB_LUA_NKEYS; j++) {
            pb_resp_str(&b, keys[j]);
        }
        pb_resp_str(&b, PB_KEY_JOB_PREFIX);
        pb_resp_str(&b, w[i].envelope);
        pb_resp_str(&b, w[i + k - 1].envelope);
        for (j = i; j < i + k; j++) {
            const char  *outcome[] = { OUTCOME_ARGS(&w[j].outcome) };
            size_t       f;

            pb_resp_str(&b, w[j].agent);
            for (f = 0; f < PB_WEBHOOK_ARGS - 3; f++) {
                pb_resp_str(&b, outcome[f]);
            }
            pb_resp_str(&b, w[j].seen_key != NULL ? w[j].seen_key : "");
            pb_resp_str(&b, w[j].seen_key != NULL ? w[j].request_id : "");
        }
    }

    pb_resp_cmd(&b, 1);
    pb_resp_str(&b, "EXEC");

    // NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers
    replies = calloc(b.cmds, sizeof(*replies));
    if (replies == NULL
        || pb_redis_send(ctx->redis, &b, b.cmds, webhook_script.name,
                         replies) != 0)
    {
        goto done;
    }

    exec = replies[b.cmds - 1];
    if (exec->type != REDIS_REPLY_ARRAY || exec->elements != b.cmds - 2) {
        goto done;
    }

    /* each run in turn; after one not applied, the rest found the list
     * changed (stale) and did nothing */
    rc = 0;
    e = 0;
    for (i = 0; i < n && rc == 0; i += k) {
        k = run_length(w, unknown, i, n);
        rc = run_result(exec, &e, &w[i], k, is_fast(w, unknown, i),
                        &res[i]);
    }

done:

    if (replies != NULL) {
        for (i = 0; i < b.cmds; i++) {
            freeReplyObject(replies[i]);
        }
    }
    free(replies);
    pb_resp_free(&b);

    return rc;
}
