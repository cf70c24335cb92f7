/*
 * The Lua every worker script starts with.  All scripts get the same KEYS
 * (pb_lua_keys() fills them, in the order of PB_LUA_KEYS_INIT) and
 * ARGV[1] = the job hash prefix, so the helpers below can name every key.
 * A job's hash is not in KEYS: the layout is single-instance Redis (or one
 * Cluster slot), as docs/redis-layout.md says.
 *
 * Time comes from Redis (TIME), not from the caller, so leases and
 * deadlines agree across hosts whose clocks do not.
 */

#ifndef PB_LUA_H
#define PB_LUA_H

#include "pb_keys.h"

#define PB_LUA_NKEYS  18

/* Keys 19 and 20 are per script (a processing list, a queue) or absent. */
#define PB_LUA_KEYS_INIT                                                      \
    PB_KEY_JOBS_PENDING, PB_KEY_JOBS_RETRY, PB_KEY_JOBS_RUNNING,              \
    PB_KEY_JOBS_DONE, PB_KEY_JOBS_DEAD, PB_KEY_CONTAINERS, PB_KEY_LAUNCHING,  \
    PB_KEY_FENCE, PB_KEY_OUTBOX, PB_KEY_METRICS, PB_KEY_LANE_CLOSED,          \
    PB_KEY_LANE_STREAK, PB_KEY_THROTTLE, PB_KEY_THROTTLE_SEQ, PB_KEY_PAUSED,  \
    PB_KEY_DRAINING, PB_KEY_JOBS_SEQ, PB_KEY_RUN_STATS

/* Fills keys[0..PB_LUA_NKEYS+2] (extras may be NULL; NULL-terminated). */
void pb_lua_keys(const char **keys, const char *extra1, const char *extra2);

/*
 * The sliding window of the outbound throttle is a little longer than a
 * minute: our timestamp is taken just before the request leaves, the
 * server's just after it lands.
 */
#define PB_THROTTLE_WINDOW_MS  "61000"

#define PB_LUA_PRELUDE                                                        \
"local K = {pending = KEYS[1], retry = KEYS[2], running = KEYS[3],\n"         \
"  done = KEYS[4], dead = KEYS[5], containers = KEYS[6],\n"                   \
"  launching = KEYS[7], fence = KEYS[8], outbox = KEYS[9],\n"                 \
"  metrics = KEYS[10], lane = KEYS[11], streak = KEYS[12],\n"                 \
"  throttle = KEYS[13], throttle_seq = KEYS[14], paused = KEYS[15],\n"        \
"  draining = KEYS[16], seq = KEYS[17], stats = KEYS[18],\n"                 \
"  extra1 = KEYS[19], extra2 = KEYS[20]}\n"                                   \
"local P = ARGV[1]\n"                                                         \
"local function now_ms()\n"                                                   \
"  local t = redis.call('TIME')\n"                                            \
"  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"        \
"end\n"                                                                       \
"local function int(n) return string.format('%.0f', n) end\n"                 \
"local function opt(s)\n"                                                     \
"  if s == nil or s == false or s == '' then return nil end\n"                \
"  return s\n"                                                                \
"end\n"                                                                       \
"local function jget(id, f) return opt(redis.call('HGET', P .. id, f)) end\n" \
/* a script applying many changes sets gathered = {m = {}, rows = {}}: its */ \
/* counters and audit rows then go to Redis once, at its end (flush()) */    \
"local gathered\n"                                                            \
"local function metric(f, n)\n"                                               \
"  if gathered then\n"                                                        \
"    gathered.m[f] = (gathered.m[f] or 0) + (n or 1)\n"                       \
"  else\n"                                                                    \
"    redis.call('HINCRBY', K.metrics, f, n or 1)\n"                           \
"  end\n"                                                                     \
"end\n"                                                                       \
"local function audit(e)\n"                                                   \
"  if gathered then\n"                                                        \
"    gathered.rows[#gathered.rows + 1] = cjson.encode(e)\n"                   \
"  else\n"                                                                    \
"    redis.call('LPUSH', K.outbox, cjson.encode(e))\n"                        \
"  end\n"                                                                     \
"end\n"                                                                       \
"local function flush()\n"                                                    \
"  for f, n in pairs(gathered.m) do\n"                                        \
"    redis.call('HINCRBY', K.metrics, f, n)\n"                                \
"  end\n"                                                                     \
/* in order: LPUSH a b c leaves the list as LPUSH a, b, c one by one do */   \
"  if #gathered.rows > 0 then\n"                                             \
"    redis.call('LPUSH', K.outbox, unpack(gathered.rows))\n"                  \
"  end\n"                                                                     \
"  gathered = nil\n"                                                          \
"end\n"                                                                       \
"local function attempts(id)\n"                                               \
"  return tonumber(jget(id, 'attempts') or '0')\n"                            \
"end\n"                                                                       \
"local function position(id)\n"                                               \
"  local r = redis.call('ZRANK', K.pending, id)\n"                            \
"  if r then return r + 1 end\n"                                              \
"  return nil\n"                                                              \
"end\n"                                                                       \
/* frees id's launch slot and its agent's launching mark */                   \
"local function release(id)\n"                                                \
"  redis.call('ZREM', K.running, id)\n"                                       \
"  local agent = jget(id, 'agent')\n"                                         \
"  if agent and redis.call('HGET', K.launching, agent) == id then\n"          \
"    redis.call('HDEL', K.launching, agent)\n"                                \
"  end\n"                                                                     \
"end\n"                                                                       \
/* the fencing check: token still holds id's slot */                          \
"local function holds(id, token)\n"                                           \
"  return jget(id, 'token') == token\n"                                       \
"    and redis.call('ZSCORE', K.running, id) ~= false\n"                      \
"end\n"                                                                       \
/* the launch error a job carries, cleared: its launch got through */        \
"local function take_last_error(id)\n"                                        \
"  local e = jget(id, 'last_error')\n"                                        \
"  if e then redis.call('HDEL', P .. id, 'last_error') end\n"                 \
"  return e\n"                                                                \
"end\n"                                                                       \
/* removes a finished or dead job from Redis (its audit row stays) */       \
"local function forget(id)\n"                                                 \
"  local c = jget(id, 'container')\n"                                         \
"  if c and redis.call('HGET', K.containers, c) == id then\n"                 \
"    redis.call('HDEL', K.containers, c)\n"                                   \
"  end\n"                                                                     \
"  redis.call('DEL', P .. id)\n"                                              \
"end\n"                                                                       \
"local function dead_letter(id, err, now)\n"                                  \
"  redis.call('HSET', P .. id, 'state', 'dead', 'status', 'dead_lettered',\n" \
"    'error', err, 'dead_at', int(now))\n"                                    \
"  redis.call('ZADD', K.dead, now, id)\n"                                     \
"  metric('dead_lettered')\n"                                                 \
"  audit({job_id = id, agent_id = jget(id, 'agent'),\n"                       \
"    status = 'dead_lettered', container_id = jget(id, 'container'),\n"       \
"    metadata = {error = err, attempts = attempts(id)}})\n"                   \
"end\n"

/*
 * Run completion, shared by the webhook, early-webhook, polling, timeout
 * and restart paths.  o = {status, container, exit_code, exit_message,
 * payload, received_at, found_by, error}; outcome(i) reads it from
 * ARGV[i..i+7] ("" = absent).
 */
#define PB_LUA_COMPLETE                                                       \
"local function outcome(i)\n"                                                 \
"  return {status = ARGV[i], container = opt(ARGV[i + 1]),\n"                 \
"    exit_code = opt(ARGV[i + 2]), exit_message = opt(ARGV[i + 3]),\n"        \
"    payload = opt(ARGV[i + 4]), received_at = opt(ARGV[i + 5]),\n"          \
"    found_by = opt(ARGV[i + 6]), error = opt(ARGV[i + 7])}\n"                \
"end\n"                                                                       \
"local EARLY = {'early_container', 'early_status', 'early_exit_code',\n"      \
"  'early_exit_message', 'early_payload', 'early_received_at'}\n"             \
"local function early_outcome(id)\n"                                          \
"  return {status = jget(id, 'early_status'),\n"                              \
"    container = jget(id, 'early_container'),\n"                              \
"    exit_code = jget(id, 'early_exit_code'),\n"                              \
"    exit_message = jget(id, 'early_exit_message'),\n"                        \
"    payload = jget(id, 'early_payload'),\n"                                  \
"    received_at = jget(id, 'early_received_at'), found_by = 'webhook'}\n"    \
"end\n"                                                                       \
"local function audit_unknown(container, agent, payload, received_at)\n"      \
"  audit({job_id = 'container:' .. container, agent_id = agent,\n"            \
"    status = 'webhook_received', container_id = container,\n"                \
"    webhook_payload = payload, metadata = {error = 'unknown container',\n"   \
"      webhook_received_at = received_at,\n"                                  \
"      phantom_container_id = container}})\n"                                 \
"  metric('webhooks_unknown')\n"                                              \
"end\n"                                                                       \
/* run durations, claim to completion: an EWMA per agent and for all */     \
"local function record_run(agent, ms)\n"                                      \
"  for _, a in ipairs({agent, '*'}) do\n"                                     \
"    local avg = tonumber(redis.call('HGET', K.stats, 'avg_ms:' .. a)\n"      \
"      or '')\n"                                                              \
"    if avg then avg = avg + 0.3 * (ms - avg) else avg = ms end\n"            \
"    redis.call('HSET', K.stats, 'avg_ms:' .. a, int(avg),\n"                 \
"      'last_ms:' .. a, int(ms))\n"                                           \
"    redis.call('HINCRBY', K.stats, 'runs:' .. a, 1)\n"                       \
"  end\n"                                                                     \
"end\n"                                                                       \
"local function complete(id, o, now)\n"                                       \
"  local jk = P .. id\n"                                                      \
"  local agent = jget(id, 'agent')\n"                                         \
"  local container = o.container or jget(id, 'container')\n"                  \
"  local claimed = tonumber(jget(id, 'claimed_at') or '')\n"                  \
"  if agent and claimed and o.status ~= 'timed_out' then\n"                  \
"    record_run(agent, math.max(0, now - claimed))\n"                         \
"  end\n"                                                                     \
"  release(id)\n"                                                             \
"  redis.call('HSET', jk, 'state', 'done', 'status', o.status,\n"             \
"    'finished_at', int(now), 'found_by', o.found_by or '')\n"                \
"  if container then\n"                                                       \
"    redis.call('HSET', jk, 'container', container)\n"                        \
"    redis.call('HSET', K.containers, container, id)\n"                       \
"  end\n"                                                                     \
"  for _, f in ipairs({'exit_code', 'exit_message', 'error'}) do\n"           \
"    if o[f] then redis.call('HSET', jk, f, o[f]) end\n"                      \
"  end\n"                                                                     \
"  redis.call('HDEL', jk, unpack(EARLY))\n"                                   \
"  redis.call('ZADD', K.done, now, id)\n"                                     \
"  if o.payload then\n"                                                       \
"    audit({job_id = id, agent_id = agent, status = 'webhook_received',\n"    \
"      container_id = container, webhook_payload = o.payload,\n"              \
"      metadata = {webhook_received_at = o.received_at,\n"                    \
"        phantom_container_id = container, found_by = o.found_by}})\n"        \
"  end\n"                                                                     \
"  local queued = redis.call('ZCARD', K.pending)\n"                           \
"    + redis.call('ZCARD', K.retry)\n"                                        \
"  audit({job_id = id, agent_id = agent, status = o.status,\n"                \
"    container_id = container,\n"                                             \
"    metadata = {phantom_container_id = container,\n"                         \
"      next_job_queued = queued > 0, attempts = attempts(id),\n"              \
"      exit_code = tonumber(o.exit_code), exit_message = o.exit_message,\n"   \
"      error = o.error, found_by = o.found_by,\n"                             \
"      launch_error = take_last_error(id)}})\n"                               \
"  metric('completed_' .. o.status)\n"                                        \
"  if o.status ~= 'success' then\n"                                           \
"    metric('exit:' .. (o.exit_message or o.status))\n"                       \
"  end\n"                                                                     \
"  return {'completed', id, o.status}\n"                                      \
"end\n"

/* The shared outbound throttle: wait in ms (0 = a call was granted). */
#define PB_LUA_THROTTLE                                                       \
"local function throttle(now, limit)\n"                                       \
"  if limit <= 0 then return 0 end\n"                                         \
"  local window = " PB_THROTTLE_WINDOW_MS "\n"                                \
"  redis.call('ZREMRANGEBYSCORE', K.throttle, '-inf', now - window)\n"        \
"  if redis.call('ZCARD', K.throttle) >= limit then\n"                        \
"    local oldest = redis.call('ZRANGE', K.throttle, 0, 0, 'WITHSCORES')\n"   \
"    return math.max(1, tonumber(oldest[2]) + window - now)\n"                \
"  end\n"                                                                     \
"  local n = redis.call('INCR', K.throttle_seq)\n"                            \
"  redis.call('ZADD', K.throttle, now, int(now) .. '-' .. n)\n"               \
"  redis.call('PEXPIRE', K.throttle, window)\n"                               \
"  return 0\n"                                                                \
"end\n"

#endif /* PB_LUA_H */
