/*
 * Admin commands.  See commands.h.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "commands.h"
#include "jobs.h"
#include "log.h"
#include "monitor.h"
#include "pb_keys.h"
#include "pb_payload.h"
#include "pb_status.h"
#include "workers.h"

typedef int (*command_fn)(pb_ctx_t *ctx, const json_t *req, json_t **result,
    char *err, size_t err_len);


static int
bad(char *err, size_t err_len, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);

    return PB_CMD_BADARGS;
}


static int
failed(char *err, size_t err_len, const char *what)
{
    snprintf(err, err_len, "%s failed (is Redis reachable?)", what);
    return PB_CMD_FAILED;
}


static long long
redis_int(pb_ctx_t *ctx, const char *fmt, const char *key)
{
    long long    n = -1;
    redisReply  *reply;

    reply = pb_redis_cmd(ctx->redis, fmt, key);
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        n = reply->integer;
    }
    freeReplyObject(reply);

    return n;
}


static pb_script_t  status_script = { "status", pb_lua_status, "" };


/*
 * The status is computed by the script in common/pb_status.c, the same
 * one the module's phantombuster_status location runs: both show the
 * same JSON.
 */
static int
cmd_status(pb_ctx_t *ctx, const json_t *req, json_t **result, char *err,
    size_t err_len)
{
    pb_status_keys_t   keys;
    redisReply        *reply;

    (void) req;

    if (pb_status_keys(&keys, ctx->cfg->queue, strlen(ctx->cfg->queue))
        != 0)
    {
        return bad(err, err_len, "status: the queue name is too long");
    }

    reply = pb_redis_eval(ctx->redis, &status_script, keys.keys,
                          (const char **) pb_status_argv);
    if (reply != NULL && reply->type == REDIS_REPLY_STRING) {
        *result = json_loadb(reply->str, reply->len, 0, NULL);
    }
    freeReplyObject(reply);

    return *result ? PB_CMD_OK : failed(err, err_len, "status");
}


static long
limit_of(const json_t *req, long def)
{
    json_t  *v = json_object_get(req, "limit");

    return json_is_integer(v) ? (long) json_integer_value(v) : def;
}


static int
cmd_list(pb_ctx_t *ctx, const json_t *req, json_t **result, char *err,
    size_t err_len)
{
    const char  *set = json_string_value(json_object_get(req, "set"));
    long         limit = limit_of(req, 100);
    json_t      *jobs;

    if (set == NULL) {
        set = "pending";
    }

    if (!pb_jobs_set_valid(set)) {
        return bad(err, err_len, "unknown job set \"%s\" (want pending, "
                   "retry, running, dead or done)", set);
    }

    if (limit < 1 || limit > 100000) {
        return bad(err, err_len, "limit must be 1..100000");
    }

    jobs = pb_jobs_list(ctx, set, limit);
    if (jobs == NULL) {
        return failed(err, err_len, "list");
    }

    *result = json_pack("{s:s, s:o}", "set", set, "jobs", jobs);

    return PB_CMD_OK;
}


static int
cmd_enqueue(pb_ctx_t *ctx, const json_t *req, json_t **result, char *err,
    size_t err_len)
{
    char                  job_id[PB_JOB_ID_MAX + 1];
    char                  agent[PB_ID_MAX_LEN + 1];
    const char           *id, *argument, *source;
    json_t               *v, *parsed;
    json_int_t            priority = 0;
    pb_enqueue_result_t   res;

    v = json_object_get(req, "agent");
    if (v == NULL) {
        return bad(err, err_len, "enqueue: an agent id is required (--agent)");
    }
    if (pb_id_from_json(v, agent) != 0) {
        return bad(err, err_len, "enqueue: the agent id must be 1..%d "
                   "characters of [A-Za-z0-9_.:-]", PB_ID_MAX_LEN);
    }

    argument = json_string_value(json_object_get(req, "argument"));
    if (argument != NULL) {
        parsed = json_loads(argument, JSON_DECODE_ANY, NULL);
        if (parsed == NULL) {
            return bad(err, err_len, "enqueue: the argument is not valid "
                       "JSON");
        }
        json_decref(parsed);
    }

    v = json_object_get(req, "priority");
    if (v != NULL) {
        if (!json_is_integer(v)) {
            return bad(err, err_len, "enqueue: priority must be an integer");
        }
        priority = json_integer_value(v);
    }
    if (priority < PB_PRIORITY_MIN || priority > PB_PRIORITY_MAX) {
        return bad(err, err_len, "enqueue: priority must be within "
                   "%ld..%ld", PB_PRIORITY_MIN, PB_PRIORITY_MAX);
    }

    id = json_string_value(json_object_get(req, "job_id"));
    if (id != NULL && !pb_job_id_valid(id)) {
        return bad(err, err_len, "enqueue: the job id must be 1..%d "
                   "characters of [A-Za-z0-9_.:-]", PB_JOB_ID_MAX);
    }
    if (id == NULL) {
        pb_job_id_generate(job_id);
        id = job_id;
    }

    source = json_string_value(json_object_get(req, "source"));

    if (pb_job_enqueue(ctx, id, agent, argument, (long) priority,
                       source ? source : "pbctl", &res) != 0)
    {
        return failed(err, err_len, "enqueue");
    }

    *result = res.created
              ? json_pack("{s:s, s:b, s:I}", "job_id", id, "created", 1,
                          "position", (json_int_t) res.position)
              : json_pack("{s:s, s:b, s:s}", "job_id", id, "created", 0,
                          "state", res.state);

    return PB_CMD_OK;
}


static int
cmd_dlq_list(pb_ctx_t *ctx, const json_t *req, json_t **result, char *err,
    size_t err_len)
{
    json_t  *jobs = pb_jobs_list(ctx, "dead", limit_of(req, 100));

    if (jobs == NULL) {
        return failed(err, err_len, "dlq list");
    }

    *result = json_pack("{s:s, s:o}", "set", "dead", "jobs", jobs);

    return PB_CMD_OK;
}


static int
cmd_dlq_retry(pb_ctx_t *ctx, const json_t *req, json_t **result, char *err,
    size_t err_len)
{
    const char  *id = json_string_value(json_object_get(req, "id"));
    int          rc;

    if (id == NULL || !pb_job_id_valid(id)) {
        return bad(err, err_len, "dlq retry: a valid job id is required");
    }

    rc = pb_dlq_retry(ctx, id);
    if (rc < 0) {
        return failed(err, err_len, "dlq retry");
    }
    if (rc == 0) {
        return bad(err, err_len, "dlq retry: job %s is not in the "
                   "dead-letter set", id);
    }

    *result = json_pack("{s:s, s:b}", "job_id", id, "retried", 1);

    return PB_CMD_OK;
}


static int
cmd_dlq_retry_all(pb_ctx_t *ctx, const json_t *req, json_t **result,
    char *err, size_t err_len)
{
    size_t       i;
    long long    retried = 0;
    redisReply  *reply;

    (void) req;

    reply = pb_redis_cmd(ctx->redis, "ZRANGE %s 0 -1", PB_KEY_JOBS_DEAD);
    if (reply == NULL) {
        return failed(err, err_len, "dlq retry-all");
    }

    for (i = 0; i < reply->elements; i++) {
        if (pb_dlq_retry(ctx, reply->element[i]->str) == 1) {
            retried++;
        }
    }
    freeReplyObject(reply);

    *result = json_pack("{s:I}", "retried", (json_int_t) retried);

    return PB_CMD_OK;
}


static int
cmd_dlq_purge(pb_ctx_t *ctx, const json_t *req, json_t **result, char *err,
    size_t err_len)
{
    long long  n = pb_dlq_purge(ctx);

    (void) req;

    if (n < 0) {
        return failed(err, err_len, "dlq purge");
    }

    *result = json_pack("{s:I}", "purged", (json_int_t) n);

    return PB_CMD_OK;
}


/* pause and drain: a flag key holding who set it and when. */
static int
set_flag(pb_ctx_t *ctx, const json_t *req, json_t **result, char *err,
    size_t err_len, const char *key, const char *name)
{
    char         when[64], *text;
    const char  *by = json_string_value(json_object_get(req, "by"));
    json_t      *flag;
    redisReply  *reply;

    pb_iso_time(pb_now_ms(), when);
    flag = json_pack("{s:s, s:s}", "by", by ? by : "unknown", "at", when);
    text = json_dumps(flag, JSON_COMPACT);

    reply = pb_redis_cmd(ctx->redis, "SET %s %s", key, text);
    free(text);
    if (reply == NULL) {
        json_decref(flag);
        return failed(err, err_len, name);
    }
    freeReplyObject(reply);

    *result = json_pack("{s:s, s:o}", "lane", name, "flag", flag);

    return PB_CMD_OK;
}


static int
cmd_pause(pb_ctx_t *ctx, const json_t *req, json_t **result, char *err,
    size_t err_len)
{
    return set_flag(ctx, req, result, err, err_len, PB_KEY_PAUSED, "paused");
}


static int
cmd_drain(pb_ctx_t *ctx, const json_t *req, json_t **result, char *err,
    size_t err_len)
{
    return set_flag(ctx, req, result, err, err_len, PB_KEY_DRAINING,
                    "draining");
}


static int
cmd_resume(pb_ctx_t *ctx, const json_t *req, json_t **result, char *err,
    size_t err_len)
{
    redisReply  *reply;

    (void) req;

    reply = pb_redis_cmd(ctx->redis, "DEL %s %s", PB_KEY_PAUSED,
                         PB_KEY_DRAINING);
    if (reply == NULL) {
        return failed(err, err_len, "resume");
    }
    freeReplyObject(reply);

    *result = json_pack("{s:s}", "lane", "open");

    return PB_CMD_OK;
}


static int
cmd_restart(pb_ctx_t *ctx, const json_t *req, json_t **result, char *err,
    size_t err_len)
{
    long long  before, after;

    (void) req;

    if (ctx->api == NULL) {
        return bad(err, err_len, "restart asks PhantomBuster about each run: "
                   "set PHANTOMBUSTER_API_KEY or PHANTOMBUSTER_API_KEY_FILE");
    }

    before = redis_int(ctx, "ZCARD %s", PB_KEY_JOBS_RUNNING);
    if (before < 0 || pb_monitor_pass(ctx, 1, "restart") != 0) {
        return failed(err, err_len, "restart");
    }
    after = redis_int(ctx, "ZCARD %s", PB_KEY_JOBS_RUNNING);

    *result = json_pack("{s:I, s:I, s:I}", "running_before",
                        (json_int_t) before, "running_after",
                        (json_int_t) after, "freed",
                        (json_int_t) (before - after));

    return PB_CMD_OK;
}


static int
cmd_configure_agent(pb_ctx_t *ctx, const json_t *req, json_t **result,
    char *err, size_t err_len)
{
    char              agent[PB_ID_MAX_LEN + 1];
    const char       *problem;
    json_t           *v;
    pb_agent_conf_t   conf;

    if (pb_id_from_json(json_object_get(req, "agent"), agent) != 0) {
        return bad(err, err_len, "configure-agent: the agent id must be "
                   "1..%d characters of [A-Za-z0-9_.:-]", PB_ID_MAX_LEN);
    }

    conf.agent = agent;
    conf.webhook_url = json_string_value(json_object_get(req, "webhook_url"));
    if (conf.webhook_url == NULL) {
        return bad(err, err_len, "configure-agent: a webhook URL is required");
    }

    problem = pb_webhook_url_problem(conf.webhook_url);
    if (problem != NULL) {
        return bad(err, err_len, "configure-agent: the webhook URL %s",
                   problem);
    }

    v = json_object_get(req, "max_parallelism");
    conf.max_parallelism = v == NULL ? 1 : json_is_integer(v)
                           ? (long) json_integer_value(v) : 0;
    if (conf.max_parallelism < 1 || conf.max_parallelism > 100) {
        return bad(err, err_len, "configure-agent: max parallelism must be "
                   "an integer in 1..100");
    }

    conf.dry_run = json_is_true(json_object_get(req, "dry_run"));

    if (ctx->api == NULL) {
        return bad(err, err_len, "configure-agent talks to PhantomBuster: "
                   "set PHANTOMBUSTER_API_KEY or PHANTOMBUSTER_API_KEY_FILE");
    }

    return pb_agent_configure(ctx->api, &conf, result, err, err_len);
}


static const struct {
    const char  *name;
    command_fn   fn;
    int          remote;    /* may come through the Redis command list */
} commands[] = {
    { "status", cmd_status, 1 },
    { "list", cmd_list, 1 },
    { "enqueue", cmd_enqueue, 1 },
    { "dlq_list", cmd_dlq_list, 1 },
    { "dlq_retry", cmd_dlq_retry, 1 },
    { "dlq_retry_all", cmd_dlq_retry_all, 1 },
    { "dlq_purge", cmd_dlq_purge, 1 },
    { "pause", cmd_pause, 1 },
    { "resume", cmd_resume, 1 },
    { "drain", cmd_drain, 1 },
    { "restart", cmd_restart, 1 },
    /* where an agent's webhooks go is for an operator, not a status page */
    { "configure_agent", cmd_configure_agent, 0 },
};

#define NCOMMANDS  (sizeof(commands) / sizeof(commands[0]))


/* Runs the command request names; from_redis: the remote ones only. */
static int
dispatch(pb_ctx_t *ctx, const json_t *request, int from_redis,
    json_t **result, char *err, size_t err_len)
{
    size_t       i;
    const char  *name = json_string_value(json_object_get(request, "cmd"));

    *result = NULL;

    if (name == NULL) {
        return bad(err, err_len, "a command needs a \"cmd\" name");
    }

    for (i = 0; i < NCOMMANDS; i++) {
        if (strcmp(name, commands[i].name) != 0) {
            continue;
        }
        if (from_redis && !commands[i].remote) {
            return bad(err, err_len, "%s runs from pbctl only, not through "
                       "Redis", name);
        }
        return commands[i].fn(ctx, request, result, err, err_len);
    }

    return bad(err, err_len, "unknown command \"%s\"", name);
}


int
pb_command_run(pb_ctx_t *ctx, const json_t *request, json_t **result,
    char *err, size_t err_len)
{
    return dispatch(ctx, request, 0, result, err, err_len);
}


int
pb_commands_step(pb_ctx_t *ctx)
{
    char         err[512], key[512], *text;
    const char  *request_id;
    int          rc;
    json_t      *request, *result = NULL, *answer;
    redisReply  *reply;

    reply = pb_redis_cmd(ctx->redis, "RPOP %s", PB_KEY_COMMANDS);
    if (reply == NULL) {
        return -1;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        freeReplyObject(reply);
        return 0;
    }

    request = json_loads(reply->str, 0, NULL);
    freeReplyObject(reply);

    rc = request ? dispatch(ctx, request, 1, &result, err, sizeof(err))
                 : bad(err, sizeof(err), "a command must be a JSON object");

    pb_log(rc == PB_CMD_OK ? PB_LOG_INFO : PB_LOG_WARN, "admin command",
           "{s:s?, s:s?}", "cmd",
           json_string_value(json_object_get(request, "cmd")),
           "error", rc == PB_CMD_OK ? NULL : err);

    request_id = json_string_value(json_object_get(request, "request_id"));
    if (request_id != NULL) {
        answer = rc == PB_CMD_OK
                 ? json_pack("{s:b, s:O}", "ok", 1, "result", result)
                 : json_pack("{s:b, s:s}", "ok", 0, "error", err);
        text = json_dumps(answer, JSON_COMPACT);
        snprintf(key, sizeof(key), "%s%s", PB_KEY_RESULT_PREFIX, request_id);
        freeReplyObject(pb_redis_cmd(ctx->redis, "SET %s %s EX 3600", key,
                                     text));
        free(text);
        json_decref(answer);
    }

    json_decref(result);
    json_decref(request);

    return 1;
}
