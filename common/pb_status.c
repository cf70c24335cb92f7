/*
 * The status and metrics scripts.  See pb_status.h.
 */

#include <string.h>

#include "pb_status.h"


int
pb_status_keys(pb_status_keys_t *k, const char *queue, size_t len)
{
    size_t  i = 0;

    if (len > PB_STATUS_QUEUE_MAX) {
        return -1;
    }

    memcpy(k->queue, queue, len);
    k->queue[len] = '\0';
    memcpy(k->invalid, queue, len);
    memcpy(k->invalid + len, PB_INVALID_SUFFIX, sizeof(PB_INVALID_SUFFIX));

    /* in the order of the K table below */
    k->keys[i++] = PB_KEY_JOBS_PENDING;
    k->keys[i++] = PB_KEY_JOBS_RETRY;
    k->keys[i++] = PB_KEY_JOBS_RUNNING;
    k->keys[i++] = PB_KEY_JOBS_DONE;
    k->keys[i++] = PB_KEY_JOBS_DEAD;
    k->keys[i++] = PB_KEY_PAUSED;
    k->keys[i++] = PB_KEY_DRAINING;
    k->keys[i++] = PB_KEY_LANE_CLOSED;
    k->keys[i++] = PB_KEY_METRICS;
    k->keys[i++] = PB_KEY_WORKERS;
    k->keys[i++] = k->queue;
    k->keys[i++] = k->invalid;
    k->keys[i++] = PB_KEY_RUN_STATS;
    k->keys[i++] = PB_KEY_OUTBOX;
    k->keys[i++] = PB_KEY_OUTBOX_FAILED;
    k->keys[i++] = PB_KEY_COMMANDS;
    k->keys[i] = NULL;

    return 0;
}


const char  *const pb_status_argv[PB_STATUS_NARGS + 1] = {
    PB_KEY_JOB_PREFIX, PB_KEY_WORKER_PREFIX, PB_STATUS_PENDING,
    PB_STATUS_DEAD, PB_STATUS_RECENT, PB_STATUS_STUCK_MS,
    PB_STATUS_ETA_JOBS, NULL
};


/*
 * Both scripts start here: key names, Redis's clock, the lane, the
 * workers (max_running is the largest a live worker announces) and the
 * counts.
 */
#define PB_STATUS_PRELUDE                                                     \
    "local K = {pending = KEYS[1], retry = KEYS[2], running = KEYS[3],\n"     \
    "  done = KEYS[4], dead = KEYS[5], paused = KEYS[6],\n"                   \
    "  draining = KEYS[7], lane = KEYS[8], metrics = KEYS[9],\n"              \
    "  workers = KEYS[10], queue = KEYS[11], invalid = KEYS[12],\n"           \
    "  stats = KEYS[13], outbox = KEYS[14], rejected = KEYS[15],\n"           \
    "  commands = KEYS[16]}\n"                                                \
    "local JP, WP = ARGV[1], ARGV[2]\n"                                       \
    "local NULL = cjson.null\n"                                               \
    "local t = redis.call('TIME')\n"                                          \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
    "local function hash(key)\n"                                              \
    "  local h, r = {}, redis.call('HGETALL', key)\n"                         \
    "  for i = 1, #r, 2 do h[r[i]] = r[i + 1] end\n"                          \
    "  return h\n"                                                            \
    "end\n"                                                                   \
    "local function decoded(v)\n"                                             \
    "  if not v then return NULL end\n"                                       \
    "  local ok, d = pcall(cjson.decode, v)\n"                                \
    "  if ok and type(d) == 'table' then return d end\n"                      \
    "  return {value = v}\n"                                                  \
    "end\n"                                                                   \
    "local closed = tonumber(redis.call('GET', K.lane) or '')\n"              \
    "local lane = {closed_until = closed,\n"                                  \
    "  paused = decoded(redis.call('GET', K.paused)),\n"                      \
    "  draining = decoded(redis.call('GET', K.draining))}\n"                  \
    "if lane.closed_until and lane.closed_until > now then\n"                 \
    "  lane.closed_ms = lane.closed_until - now\n"                            \
    "else\n"                                                                  \
    "  lane.closed_until, lane.closed_ms = NULL, 0\n"                         \
    "end\n"                                                                   \
    "lane.state = (lane.paused ~= NULL and 'paused')\n"                       \
    "  or (lane.draining ~= NULL and 'draining')\n"                           \
    "  or (lane.closed_ms > 0 and 'closed') or 'open'\n"                      \
    "local workers, alive, max_running = {}, 0, 0\n"                          \
    "local wids = redis.call('SMEMBERS', K.workers)\n"                        \
    "table.sort(wids)\n"                                                      \
    "for _, id in ipairs(wids) do\n"                                          \
    "  local info = decoded(redis.call('GET', WP .. id))\n"                   \
    "  if info ~= NULL then\n"                                                \
    "    alive = alive + 1\n"                                                 \
    "    local n = tonumber(info.max_running) or 0\n"                         \
    "    max_running = math.max(max_running, n)\n"                            \
    "  end\n"                                                                 \
    "  workers[#workers + 1] = {id = id, alive = info ~= NULL, info = info}\n" \
    "end\n"                                                                   \
    "if max_running < 1 then max_running = 1 end\n"                           \
    "local function card(cmd, key) return redis.call(cmd, key) end\n"         \
    "local counts = {pending = card('ZCARD', K.pending),\n"                   \
    "  retry = card('ZCARD', K.retry), running = card('ZCARD', K.running),\n" \
    "  dead = card('ZCARD', K.dead), done = card('ZCARD', K.done),\n"         \
    "  webhooks_queued = card('LLEN', K.queue),\n"                            \
    "  webhooks_invalid = card('LLEN', K.invalid),\n"                         \
    "  audit_outbox = card('LLEN', K.outbox),\n"                              \
    "  audit_rejected = card('LLEN', K.rejected),\n"                          \
    "  commands_queued = card('LLEN', K.commands)}\n"                         \
    "local metrics = hash(K.metrics)\n"                                       \
    "local stats = hash(K.stats)\n"                                           \
    "local last_webhook = tonumber(metrics.last_webhook_at or '')\n"


/*
 * ETA: every running run is expected to take its agent's moving average
 * (claim to completion, kept by the worker in PB_KEY_RUN_STATS), minus
 * what it already took; each pending job, in launch order, takes the
 * first slot to free up, not before the lane reopens.  Unknown (null)
 * while paused or draining, or with no run history yet.
 */
const char  pb_lua_status[] =
    PB_STATUS_PRELUDE
    "local npending, ndead, nrecent = tonumber(ARGV[3]), tonumber(ARGV[4]),\n"
    "  tonumber(ARGV[5])\n"
    "local grace, eta_max = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local function str(s)\n"
    "  if not s or s == '' then return NULL end\n"
    "  return s\n"
    "end\n"
    "local function num(s) return tonumber(s or '') or NULL end\n"
    "local function int(s) return tonumber(s or '') or 0 end\n"
    "local function avg(agent)\n"
    "  return tonumber(stats['avg_ms:' .. (agent or '')] or '')\n"
    "    or tonumber(stats['avg_ms:*'] or '')\n"
    "end\n"
    "local function scored(cmd, key, n)\n"
    "  local l, r = {}, redis.call(cmd, key, 0, n, 'WITHSCORES')\n"
    "  for i = 1, #r, 2 do l[#l + 1] = {r[i], tonumber(r[i + 1])} end\n"
    "  return l\n"
    "end\n"
    "local alerts = {}\n"
    "local function alert(level, code, message)\n"
    "  alerts[#alerts + 1] = {level = level, code = code, message = message}\n"
    "end\n"
    "-- running runs; ends: ms until each frees its slot\n"
    "local known, ends, running = true, {}, {}\n"
    "for _, e in ipairs(scored('ZRANGE', K.running, -1)) do\n"
    "  local id, deadline = e[1], e[2]\n"
    "  local h = redis.call('HMGET', JP .. id, 'agent', 'state', 'container',\n"
    "    'claimed_at', 'launched_at', 'worker', 'attempts', 'in_doubt')\n"
    "  local a, claimed = avg(h[1]), tonumber(h[4] or '')\n"
    "  local elapsed = claimed and math.max(0, now - claimed)\n"
    "  local remaining = a and math.max(0, a - (elapsed or 0))\n"
    "  local overdue = math.max(0, now - deadline)\n"
    "  if remaining then ends[#ends + 1] = remaining else known = false end\n"
    "  running[#running + 1] = {id = id, agent = str(h[1]),\n"
    "    state = str(h[2]), container = str(h[3]),\n"
    "    claimed_at = claimed or NULL, launched_at = num(h[5]),\n"
    "    elapsed_ms = elapsed or NULL, worker = str(h[6]),\n"
    "    attempts = int(h[7]), in_doubt = h[8] == '1',\n"
    "    deadline = deadline, overdue_ms = overdue,\n"
    "    stuck = overdue > grace, avg_run_ms = a or NULL,\n"
    "    remaining_ms = remaining or NULL}\n"
    "  if overdue > grace then\n"
    "    alert('error', 'stuck_run', 'run ' .. id .. ' is '\n"
    "      .. math.floor(overdue / 1000) .. ' s past its deadline')\n"
    "  end\n"
    "end\n"
    "-- a new launch needs a free slot: the max_running latest ends\n"
    "for _ = #ends + 1, max_running do ends[#ends + 1] = 0 end\n"
    "table.sort(ends)\n"
    "local slots, queue_end = {}, 0\n"
    "for i = #ends - max_running + 1, #ends do\n"
    "  slots[#slots + 1] = ends[i]\n"
    "  queue_end = math.max(queue_end, ends[i])\n"
    "end\n"
    "local blocked = (lane.paused ~= NULL and 'paused')\n"
    "  or (lane.draining ~= NULL and 'draining') or NULL\n"
    "if blocked ~= NULL then known = false end\n"
    "-- pending jobs in launch order, each taking the first free slot\n"
    "local pending = {}\n"
    "local ids = redis.call('ZRANGE', K.pending, 0,\n"
    "  math.max(npending, eta_max) - 1)\n"
    "for i, id in ipairs(ids) do\n"
    "  local h = redis.call('HMGET', JP .. id, 'agent', 'priority',\n"
    "    'enqueued_at', 'attempts', 'dlq_retries')\n"
    "  local a, starts, done = avg(h[1])\n"
    "  if i > eta_max then\n"
    "    starts = nil\n"
    "  elseif known and a then\n"
    "    table.sort(slots)\n"
    "    starts = math.max(slots[1], lane.closed_ms)\n"
    "    done = starts + a\n"
    "    slots[1] = done\n"
    "    queue_end = math.max(queue_end, done)\n"
    "  else\n"
    "    known = false\n"
    "  end\n"
    "  if i <= npending then\n"
    "    local enq = tonumber(h[3] or '')\n"
    "    pending[#pending + 1] = {position = i, id = id, agent = str(h[1]),\n"
    "      priority = int(h[2]), enqueued_at = enq or NULL,\n"
    "      waiting_ms = enq and math.max(0, now - enq) or NULL,\n"
    "      attempts = int(h[4]), dlq_retries = int(h[5]),\n"
    "      avg_run_ms = a or NULL, starts_in_ms = starts or NULL,\n"
    "      done_in_ms = done or NULL}\n"
    "  end\n"
    "end\n"
    "-- beyond the exact window: the average of all agents\n"
    "local rest, exact = counts.pending - math.min(#ids, eta_max), true\n"
    "if rest > 0 and known then\n"
    "  local a = tonumber(stats['avg_ms:*'] or '')\n"
    "  exact, known = false, a ~= nil\n"
    "  queue_end = queue_end + math.ceil(rest / max_running) * (a or 0)\n"
    "end\n"
    "local eta = {queue_done_in_ms = known and queue_end or NULL,\n"
    "  exact = exact and known, blocked = blocked,\n"
    "  basis = 'moving average of recent run durations per agent'}\n"
    "local dead = {}\n"
    "for _, e in ipairs(scored('ZREVRANGE', K.dead, ndead - 1)) do\n"
    "  local h = redis.call('HMGET', JP .. e[1], 'agent', 'error',\n"
    "    'attempts', 'dlq_retries', 'container')\n"
    "  dead[#dead + 1] = {id = e[1], agent = str(h[1]), error = str(h[2]),\n"
    "    attempts = int(h[3]), dlq_retries = int(h[4]),\n"
    "    container = str(h[5]), dead_at = e[2]}\n"
    "end\n"
    "local recent = {}\n"
    "for _, e in ipairs(scored('ZREVRANGE', K.done, nrecent - 1)) do\n"
    "  local h = redis.call('HMGET', JP .. e[1], 'agent', 'status',\n"
    "    'found_by', 'exit_code', 'exit_message', 'error', 'container',\n"
    "    'claimed_at')\n"
    "  local claimed = tonumber(h[8] or '')\n"
    "  recent[#recent + 1] = {id = e[1], agent = str(h[1]),\n"
    "    outcome = str(h[2]), found_by = str(h[3]), exit_code = num(h[4]),\n"
    "    exit_message = str(h[5]), error = str(h[6]),\n"
    "    container = str(h[7]), finished_at = e[2],\n"
    "    duration_ms = claimed and math.max(0, e[2] - claimed) or NULL}\n"
    "end\n"
    "local agents = {}\n"
    "local NAMES = {avg_ms = 'avg_run_ms', last_ms = 'last_run_ms',\n"
    "  runs = 'runs'}\n"
    "for f, v in pairs(stats) do\n"
    "  local kind, agent = string.match(f, '^([%a_]+):(.*)$')\n"
    "  if NAMES[kind] and agent ~= '*' then\n"
    "    agents[agent] = agents[agent] or {}\n"
    "    agents[agent][NAMES[kind]] = tonumber(v)\n"
    "  end\n"
    "end\n"
    "local m = {}\n"
    "for k, v in pairs(metrics) do m[k] = tonumber(v) or v end\n"
    "if lane.state == 'paused' then\n"
    "  alert('warning', 'paused', 'launching is paused')\n"
    "elseif lane.state == 'draining' then\n"
    "  alert('warning', 'draining', 'draining: no new launches')\n"
    "elseif lane.state == 'closed' then\n"
    "  alert('warning', 'lane_closed', 'PhantomBuster refused a launch '\n"
    "    .. '(429): no launch for ' .. math.ceil(lane.closed_ms / 1000)\n"
    "    .. ' s')\n"
    "end\n"
    "if alive == 0 then alert('error', 'no_worker', 'no live pb-worker') end\n"
    "if counts.dead > 0 then\n"
    "  alert('warning', 'dead_letters',\n"
    "    counts.dead .. ' dead-lettered job(s)')\n"
    "end\n"
    "if counts.audit_rejected > 0 then\n"
    "  alert('warning', 'audit_rejected', counts.audit_rejected\n"
    "    .. ' audit row(s) rejected by the database')\n"
    "end\n"
    "-- cjson writes an empty table as {}: lists are joined by hand\n"
    "local function list(l)\n"
    "  local parts = {}\n"
    "  for i, v in ipairs(l) do parts[i] = cjson.encode(v) end\n"
    "  return '[' .. table.concat(parts, ',') .. ']'\n"
    "end\n"
    "local out = {}\n"
    "local function put(k, raw)\n"
    "  out[#out + 1] = cjson.encode(k) .. ':' .. raw\n"
    "end\n"
    "put('now', cjson.encode(now))\n"
    "put('lane', cjson.encode(lane))\n"
    "put('max_running', cjson.encode(max_running))\n"
    "put('counts', cjson.encode(counts))\n"
    "put('eta', cjson.encode(eta))\n"
    "put('running', list(running))\n"
    "put('pending', list(pending))\n"
    "put('dead', list(dead))\n"
    "put('recent', list(recent))\n"
    "put('webhooks', cjson.encode({queued = counts.webhooks_queued,\n"
    "  invalid = counts.webhooks_invalid, last_at = last_webhook or NULL,\n"
    "  last_age_ms = last_webhook and math.max(0, now - last_webhook)\n"
    "    or NULL}))\n"
    "put('workers', list(workers))\n"
    "put('agents', cjson.encode(agents))\n"
    "put('metrics', cjson.encode(m))\n"
    "put('alerts', list(alerts))\n"
    "return '{' .. table.concat(out, ',') .. '}'\n";


const char  pb_lua_metrics[] =
    PB_STATUS_PRELUDE
    "local out, P = {}, 'phantombuster_'\n"
    "local function esc(s)\n"
    "  s = string.gsub(s, '\\\\', '\\\\\\\\')\n"
    "  s = string.gsub(s, '\"', '\\\\\"')\n"
    "  return (string.gsub(s, '\\n', '\\\\n'))\n"
    "end\n"
    "local function fmt(v)\n"
    "  if v == math.floor(v) then return string.format('%.0f', v) end\n"
    "  return string.format('%.3f', v)\n"
    "end\n"
    "local function family(name, kind, help)\n"
    "  out[#out + 1] = '# HELP ' .. P .. name .. ' ' .. help .. '\\n'\n"
    "    .. '# TYPE ' .. P .. name .. ' ' .. kind .. '\\n'\n"
    "end\n"
    "local function sample(name, v, lname, lvalue)\n"
    "  local l = ''\n"
    "  if lname then l = '{' .. lname .. '=\"' .. esc(lvalue) .. '\"}' end\n"
    "  out[#out + 1] = P .. name .. l .. ' ' .. fmt(v) .. '\\n'\n"
    "end\n"
    "local function gauge(name, help, v)\n"
    "  family(name, 'gauge', help)\n"
    "  sample(name, v)\n"
    "end\n"
    "local function field(f) return tonumber(metrics[f] or '') or 0 end\n"
    "local function counter(name, help, f)\n"
    "  family(name, 'counter', help)\n"
    "  sample(name, field(f))\n"
    "end\n"
    "-- values: {{label value, number}, ...}\n"
    "local function labelled(name, kind, help, lname, values)\n"
    "  family(name, kind, help)\n"
    "  for _, p in ipairs(values) do sample(name, p[2], lname, p[1]) end\n"
    "end\n"
    "local function fields(l)\n"
    "  for _, p in ipairs(l) do p[2] = field(p[2]) end\n"
    "  return l\n"
    "end\n"
    "local function by_name(h, pattern, scale)\n"
    "  local l = {}\n"
    "  for k, v in pairs(h) do\n"
    "    local name = string.match(k, pattern)\n"
    "    if name and name ~= '*' then\n"
    "      l[#l + 1] = {name, (tonumber(v) or 0) / scale}\n"
    "    end\n"
    "  end\n"
    "  table.sort(l, function(a, b) return a[1] < b[1] end)\n"
    "  return l\n"
    "end\n"
    "labelled('jobs', 'gauge', 'Jobs by state.', 'state', {\n"
    "  {'pending', counts.pending}, {'retry', counts.retry},\n"
    "  {'running', counts.running}, {'dead', counts.dead},\n"
    "  {'done', counts.done}})\n"
    "gauge('webhook_queue_length', 'Webhook envelopes waiting for a worker.',\n"
    "  counts.webhooks_queued)\n"
    "gauge('webhook_invalid_length',\n"
    "  'Envelopes a worker could not parse, kept for a human.',\n"
    "  counts.webhooks_invalid)\n"
    "gauge('audit_outbox_length', 'Audit rows not yet in the database.',\n"
    "  counts.audit_outbox)\n"
    "gauge('audit_rejected_length',\n"
    "  'Audit rows the database rejected for good.', counts.audit_rejected)\n"
    "gauge('paused', '1 when launching is paused.',\n"
    "  lane.paused ~= NULL and 1 or 0)\n"
    "gauge('draining', '1 while draining.',\n"
    "  lane.draining ~= NULL and 1 or 0)\n"
    "gauge('lane_closed_seconds',\n"
    "  'Seconds until the lane reopens after a 429 or a refusal.',\n"
    "  lane.closed_ms / 1000)\n"
    "gauge('workers_alive', 'pb-worker processes with a live heartbeat.',\n"
    "  alive)\n"
    "gauge('max_running', 'Launch slots (PB_MAX_RUNNING).', max_running)\n"
    "if last_webhook then\n"
    "  gauge('last_webhook_age_seconds',\n"
    "    'Seconds since a worker last applied a webhook.',\n"
    "    math.max(0, now - last_webhook) / 1000)\n"
    "end\n"
    "local oldest = redis.call('ZRANGE', K.pending, 0, 0)[1]\n"
    "local enq = oldest and redis.call('HGET', JP .. oldest, 'enqueued_at')\n"
    "if tonumber(enq or '') then\n"
    "  gauge('oldest_pending_age_seconds',\n"
    "    'Seconds the next job to launch has been waiting.',\n"
    "    math.max(0, now - tonumber(enq)) / 1000)\n"
    "end\n"
    "counter('jobs_enqueued_total', 'Jobs enqueued.', 'enqueued')\n"
    "counter('launches_total', 'Runs launched (containerId recorded).',\n"
    "  'launches')\n"
    "counter('launch_rate_limited_total', 'Launches refused with HTTP 429.',\n"
    "  'launch_429')\n"
    "counter('launch_refusals_total',\n"
    "  'Launches refused for parallelism (maxParallelismReached).',\n"
    "  'launch_refusals')\n"
    "labelled('launch_errors_total', 'counter',\n"
    "  'Launch calls that failed, by kind.', 'kind',\n"
    "  fields({{'auth', 'launch_auth_errors'}, {'other', 'launch_errors'}}))\n"
    "labelled('runs_completed_total', 'counter',\n"
    "  'Finished runs by outcome.', 'outcome',\n"
    "  fields({{'success', 'completed_success'},\n"
    "    {'failed', 'completed_failed'},\n"
    "    {'timed_out', 'completed_timed_out'}}))\n"
    "labelled('run_failures_total', 'counter',\n"
    "  'Runs that did not succeed, by PhantomBuster exit message.',\n"
    "  'exit_message', by_name(metrics, '^exit:(.*)$', 1))\n"
    "counter('polls_total', 'containers/fetch calls made by the monitor.',\n"
    "  'polls')\n"
    "counter('timeouts_total',\n"
    "  'Runs without a webhook past SEQUENTIAL_QUEUE_TIMEOUT.', 'timeouts')\n"
    "counter('dead_lettered_total', 'Jobs dead-lettered.', 'dead_lettered')\n"
    "counter('dlq_retried_total', 'Dead-lettered jobs put back in line.',\n"
    "  'dlq_retried')\n"
    "counter('worker_webhooks_total', 'Webhooks applied by the workers.',\n"
    "  'webhooks')\n"
    "labelled('worker_webhooks_special_total', 'counter',\n"
    "  'Webhooks that did not simply complete a run, by kind.', 'kind',\n"
    "  fields({{'early', 'webhooks_early'},\n"
    "    {'duplicate', 'webhooks_duplicate'},\n"
    "    {'unknown', 'webhooks_unknown'}, {'invalid', 'webhooks_invalid'}}))\n"
    "counter('launches_in_doubt_total',\n"
    "  'Launches whose answer was lost, settled without a relaunch.',\n"
    "  'launches_in_doubt')\n"
    "counter('fenced_total',\n"
    "  'Steps refused to a worker whose lease was taken back.', 'fenced')\n"
    "counter('audit_rows_written_total', 'Audit rows written.',\n"
    "  'audit_written')\n"
    "labelled('run_duration_average_seconds', 'gauge',\n"
    "  'Moving average of run durations (claim to completion), by agent.',\n"
    "  'agent', by_name(stats, '^avg_ms:(.*)$', 1000))\n"
    "return table.concat(out)\n";
