/*
 * Timeout monitor, poller and launch reconciliation.  See monitor.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "lane.h"
#include "launch.h"
#include "log.h"
#include "monitor.h"
#include "pb_keys.h"
#include "slots.h"
#include "workers.h"

static int64_t  next_pass_ms;

/* The fields of a running-set member the monitor decides on. */
typedef struct {
    char       id[PB_JOB_ID_MAX + 1];
    char       state[16];
    char       token[32];
    char       worker[128];
    char       container[PB_ID_MAX_LEN + 1];
    char       agent[PB_ID_MAX_LEN + 1];
    char       early[PB_ID_MAX_LEN + 1];
    int64_t    claimed_at;
    int64_t    deadline;
    int        orphaned;
    int        exists;
} run_t;


static void
field(char *dst, size_t cap, const redisReply *reply, size_t i)
{
    const char  *s = pb_reply_str(reply, i);

    snprintf(dst, cap, "%s", s ? s : "");
}


static int
load_run(pb_ctx_t *ctx, const char *id, run_t *run)
{
    redisReply  *reply;

    memset(run, 0, sizeof(*run));
    snprintf(run->id, sizeof(run->id), "%s", id);

    reply = pb_redis_cmd(ctx->redis, "HMGET %s%s state token worker container "
                         "agent early_container claimed_at orphaned",
                         PB_KEY_JOB_PREFIX, id);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 8)
    {
        freeReplyObject(reply);
        return -1;
    }

    field(run->state, sizeof(run->state), reply, 0);
    field(run->token, sizeof(run->token), reply, 1);
    field(run->worker, sizeof(run->worker), reply, 2);
    field(run->container, sizeof(run->container), reply, 3);
    field(run->agent, sizeof(run->agent), reply, 4);
    field(run->early, sizeof(run->early), reply, 5);
    run->claimed_at = pb_reply_int(reply, 6, 0);
    run->orphaned = pb_reply_int(reply, 7, 0) == 1;
    run->exists = run->state[0] != '\0';

    freeReplyObject(reply);

    return 0;
}


/* Waits for the lane (bounded), so monitor calls stay under the limits. */
static int
lane_ok(pb_ctx_t *ctx)
{
    int64_t  wait = pb_lane_acquire(ctx);

    return wait == 0;
}


/* A running container of agent that no job owns, or "" (out). */
static int
find_unowned_container(pb_ctx_t *ctx, const char *agent,
    char out[PB_ID_MAX_LEN + 1])
{
    size_t            i;
    char              id[PB_ID_MAX_LEN + 1], who[PB_ID_MAX_LEN + 1];
    json_t           *list, *c;
    redisReply       *reply;
    pb_api_result_t   res;
    int               rc = -1;

    out[0] = '\0';

    if (!lane_ok(ctx)) {
        return -1;
    }

    pb_api_running_containers(ctx->api, &res);
    if (pb_api_classify(&res) != PB_API_OK) {
        pb_log(PB_LOG_WARN, "cannot list running containers", "{s:s}",
               "error", res.error);
        goto done;
    }

    list = json_object_get(res.json, "containers");
    json_array_foreach(list, i, c) {
        if (pb_id_from_json(json_object_get(c, "agentId"), who) != 0
            || strcmp(who, agent) != 0
            || pb_id_from_json(json_object_get(c, "id"), id) != 0)
        {
            continue;
        }

        reply = pb_redis_cmd(ctx->redis, "HEXISTS %s %s", PB_KEY_CONTAINERS,
                             id);
        if (reply != NULL && reply->type == REDIS_REPLY_INTEGER
            && reply->integer == 0)
        {
            snprintf(out, PB_ID_MAX_LEN + 1, "%s", id);
        }
        freeReplyObject(reply);

        if (out[0] != '\0') {
            break;
        }
    }

    rc = 0;

done:

    pb_api_result_free(&res);

    return rc;
}


int
pb_monitor_reconcile(pb_ctx_t *ctx, const char *job_id, const char *token,
    const char *agent, int launcher_alive)
{
    char              container[PB_ID_MAX_LEN + 1];
    run_t             run;
    pb_slot_result_t  sr;
    int               rc;

    if (load_run(ctx, job_id, &run) != 0) {
        return -1;
    }

    if (run.early[0] != '\0') {
        /* its webhook came while the launch answer was missing */
        rc = pb_slot_record(ctx, job_id, token, run.early, "reconcile", &sr);
        goto logged;
    }

    if (find_unowned_container(ctx, agent, container) != 0) {
        /* cannot ask now; the next monitor pass tries again */
        return 0;
    }

    if (container[0] != '\0') {
        rc = pb_slot_record(ctx, job_id, token, container, "reconcile", &sr);

    } else if (launcher_alive) {
        /* nothing runs for the agent: the request did not get through */
        rc = pb_slot_fail(ctx, job_id, token,
                          pb_backoff_full_jitter(ctx->cfg->backoff_base_ms,
                                                 ctx->cfg->backoff_cap_ms, 1,
                                                 pb_random64()),
                          ctx->cfg->max_attempts,
                          "launch answer lost and no run found", &sr);

    } else {
        /*
         * It may have run and ended already, with its webhook still on
         * the way: never launch it twice; wait for that webhook.
         */
        rc = pb_slot_orphan(ctx, job_id, token,
                            run.claimed_at + ctx->cfg->run_timeout_ms, &sr);
    }

logged:

    if (rc == 0) {
        pb_log(PB_LOG_INFO, "launch reconciled", "{s:s, s:s, s:s}", "job",
               job_id, "result", sr.kind, "container",
               run.early[0] ? run.early : container);
    }

    return rc;
}


/* The webhook PhantomBuster would have sent, from containers/fetch. */
static int
finished_outcome(const pb_api_result_t *res, pb_outcome_t *o, char *code,
    size_t code_len, const char **status_text)
{
    const char  *status, *end_type;
    json_t      *exit_code;

    status = json_string_value(json_object_get(res->json, "status"));
    *status_text = status ? status : "?";

    if (status == NULL || (strcmp(status, "finished") != 0
                           && strcmp(status, "launch error") != 0))
    {
        return 0;
    }

    end_type = json_string_value(json_object_get(res->json, "endType"));
    exit_code = json_object_get(res->json, "exitCode");
    code[0] = '\0';
    if (json_is_integer(exit_code)) {
        snprintf(code, code_len, "%lld",
                 (long long) json_integer_value(exit_code));
    }

    o->status = strcmp(status, "finished") == 0 && end_type != NULL
                && strcmp(end_type, "finished") == 0
                && json_is_integer(exit_code)
                && json_integer_value(exit_code) == 0
                ? "success" : "failed";
    o->exit_code = code[0] ? code : NULL;
    o->exit_message = end_type ? end_type : status;
    o->payload = res->body;

    return 1;
}


/*
 * Asks PhantomBuster about a run.  Finished: completes it as its webhook
 * would have.  Gone: fails it.  Still going past its deadline: stops the
 * agent and marks it timed out.  Either way the slot is freed.
 */
static int
check_run(pb_ctx_t *ctx, const run_t *run, int past_deadline,
    const char *found_by)
{
    char              code[24], when[64], error[320];
    const char       *upstream;
    pb_outcome_t      o;
    pb_api_class_t    cls;
    pb_api_result_t   res, stop;
    pb_slot_result_t  sr;
    int               rc = 0;

    if (!lane_ok(ctx)) {
        return 0;
    }

    pb_api_fetch_container(ctx->api, run->container, &res);
    freeReplyObject(pb_redis_cmd(ctx->redis, "HINCRBY %s polls 1",
                                 PB_KEY_METRICS));
    cls = pb_api_classify(&res);

    memset(&o, 0, sizeof(o));
    o.container = run->container;
    o.found_by = found_by;
    pb_iso_time(pb_now_ms(), when);
    o.received_at = when;

    if (cls == PB_API_NOT_FOUND) {
        o.status = "failed";
        o.error = "container not found upstream";
        rc = pb_slot_finish(ctx, run->id, run->token, &o, &sr);

    } else if (cls == PB_API_OK) {
        if (finished_outcome(&res, &o, code, sizeof(code), &upstream)) {
            rc = pb_slot_finish(ctx, run->id, run->token, &o, &sr);

        } else if (past_deadline) {
            snprintf(error, sizeof(error), "no webhook after %llds (upstream "
                     "status %s); agent stopped",
                     (long long) (ctx->cfg->run_timeout_ms / 1000), upstream);

            if (PB_STOPPING(ctx)) {
                goto done;      /* the next pass stops it; SIGTERM won't wait */
            }

            if (lane_ok(ctx)) {
                pb_api_stop_agent(ctx->api, run->agent, &stop);
                if (pb_api_classify(&stop) != PB_API_OK) {
                    snprintf(error, sizeof(error), "no webhook after %llds; "
                             "stop failed: %.200s",
                             (long long) (ctx->cfg->run_timeout_ms / 1000),
                             stop.error);
                }
                pb_api_result_free(&stop);
            }

            o.status = "timed_out";
            o.found_by = "timeout";
            o.error = error;
            freeReplyObject(pb_redis_cmd(ctx->redis, "HINCRBY %s timeouts 1",
                                         PB_KEY_METRICS));
            rc = pb_slot_finish(ctx, run->id, run->token, &o, &sr);

        } else {
            goto done;      /* still running, within its time */
        }

    } else {
        if (cls == PB_API_RATE_LIMITED || cls == PB_API_REFUSED) {
            pb_lane_close(ctx, pb_lane_backoff_ms(ctx, &res));
        }
        pb_log(PB_LOG_WARN, "cannot check run", "{s:s, s:s, s:s}", "job",
               run->id, "container", run->container, "error", res.error);
        goto done;
    }

    if (rc == 0) {
        pb_log(PB_LOG_INFO, "run settled by the monitor",
               "{s:s, s:s, s:s, s:s, s:s?}", "job", run->id, "container",
               run->container, "status", o.status, "result", sr.kind,
               "error", o.error);
    }

done:

    pb_api_result_free(&res);

    return rc;
}


static int
settle(pb_ctx_t *ctx, const run_t *run, int64_t now, int check_all,
    const char *found_by)
{
    pb_slot_result_t  sr;
    int               past = now >= run->deadline;
    int               alive;

    /*
     * The monitor runs between launch steps, never during one, so a claim
     * or launch in our own name is a previous life's (same PB_WORKER_ID,
     * restarted after a crash): its launcher is dead, however fresh our
     * heartbeat is.
     */
    alive = strcmp(run->worker, ctx->cfg->worker_id) == 0
            ? 0 : pb_workers_alive(ctx, run->worker);

    if (strcmp(run->state, "claimed") == 0) {
        if (past || alive == 0) {
            /* the request never left: put it back in line */
            return pb_slot_requeue(ctx, run->id, run->token, 0,
                                   "recovered_claims",
                                   "its worker died before launching", &sr);
        }
        return 0;
    }

    if (strcmp(run->state, "launching") == 0) {
        if (run->orphaned) {
            if (!past) {
                return 0;
            }
            return pb_slot_fail(ctx, run->id, run->token, 0, 0,
                                "launch outcome unknown: its worker died "
                                "during the launch call and no webhook or "
                                "running container turned up", &sr);
        }
        if (past || alive == 0) {
            return pb_monitor_reconcile(ctx, run->id, run->token, run->agent,
                                        0);
        }
        return 0;
    }

    if (strcmp(run->state, "running") == 0 && (past || check_all)) {
        return check_run(ctx, run, past, found_by);
    }

    return 0;
}


int
pb_monitor_pass(pb_ctx_t *ctx, int check_all, const char *found_by)
{
    size_t       i;
    int64_t      now;
    run_t        run;
    redisReply  *reply;
    int          rc = 0;

    if (!pb_redis_lock(ctx->redis, PB_KEY_MONITOR_LOCK, ctx->cfg->worker_id,
                       60000))
    {
        return pb_redis_connected(ctx->redis) ? 0 : -1;
    }

    pb_workers_reap(ctx);

    reply = pb_redis_cmd(ctx->redis, "ZRANGE %s 0 -1 WITHSCORES",
                         PB_KEY_JOBS_RUNNING);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        rc = -1;
        goto done;
    }

    for (i = 0; i + 1 < reply->elements && !PB_STOPPING(ctx); i += 2) {
        if (load_run(ctx, reply->element[i]->str, &run) != 0) {
            rc = -1;
            break;
        }

        if (!run.exists) {
            /* a job deleted by hand: its slot must not stay taken */
            freeReplyObject(pb_redis_cmd(ctx->redis, "ZREM %s %s",
                                         PB_KEY_JOBS_RUNNING, run.id));
            continue;
        }

        run.deadline = strtoll(reply->element[i + 1]->str, NULL, 10);
        now = pb_redis_time_ms(ctx->redis);
        if (now < 0) {
            rc = -1;
            break;
        }

        if (ctx->api != NULL && settle(ctx, &run, now, check_all, found_by) < 0)
        {
            rc = -1;
            break;
        }

        pb_workers_heartbeat(ctx);
    }

done:

    freeReplyObject(reply);
    pb_redis_unlock(ctx->redis, PB_KEY_MONITOR_LOCK, ctx->cfg->worker_id);

    return rc;
}


int
pb_monitor_step(pb_ctx_t *ctx)
{
    int64_t  now = pb_now_ms();
    int64_t  interval = ctx->cfg->poll_mode ? ctx->cfg->poll_interval_ms
                                            : ctx->cfg->monitor_interval_ms;

    if (now < next_pass_ms) {
        return 0;
    }

    next_pass_ms = now + interval;

    return pb_monitor_pass(ctx, ctx->cfg->poll_mode, "polling");
}
