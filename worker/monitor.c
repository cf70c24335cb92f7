/*
 * Timeout monitor, poller and launch reconciliation.  See monitor.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "jobs.h"
#include "lane.h"
#include "launch.h"
#include "log.h"
#include "monitor.h"
#include "pb_keys.h"
#include "slots.h"
#include "workers.h"

static int64_t  next_pass_ms;

/*
 * How far PhantomBuster's clock (a container's createdAt) may lag Redis's
 * (the job's launching_at) for the container to still count as ours.
 * NTP-synced clocks differ by milliseconds; a generous margin costs little,
 * because a container some job owns never counts, while missing our own
 * run would mean launching it twice.
 */
#define PB_DOUBT_SKEW_MS  30000

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
    int64_t    launching_at;
    int64_t    deadline;
    int        attempts;
    int        in_doubt;
    int        exists;
} run_t;


static void
field(char *dst, size_t cap, const redisReply *reply, size_t i)
{
    const char  *s = pb_reply_str(reply, i);

    snprintf(dst, cap, "%s", s ? s : "");
}


/* The job and its slot's deadline (-1 when it holds none). */
static int
load_run(pb_ctx_t *ctx, const char *id, run_t *run)
{
    redisReply  *reply;

    memset(run, 0, sizeof(*run));
    snprintf(run->id, sizeof(run->id), "%s", id);

    reply = pb_redis_cmd(ctx->redis, "HMGET %s%s state token worker container "
                         "agent early_container claimed_at launching_at "
                         "attempts in_doubt", PB_KEY_JOB_PREFIX, id);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 10)
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
    run->launching_at = pb_reply_int(reply, 7, run->claimed_at);
    run->attempts = (int) pb_reply_int(reply, 8, 0);
    run->in_doubt = pb_reply_int(reply, 9, 0) == 1;
    run->exists = run->state[0] != '\0';

    freeReplyObject(reply);

    reply = pb_redis_cmd(ctx->redis, "ZSCORE %s %s", PB_KEY_JOBS_RUNNING, id);
    if (reply == NULL) {
        return -1;
    }
    run->deadline = reply->type == REDIS_REPLY_STRING
                    ? strtoll(reply->str, NULL, 10) : -1;
    freeReplyObject(reply);

    return 0;
}


/*
 * One call's worth of the shared lane and throttle, so monitor calls stay
 * under the limits too; 0 when closed or spent (the next pass tries again).
 */
static int
lane_ok(pb_ctx_t *ctx)
{
    int64_t  wait = pb_lane_acquire(ctx);

    return wait == 0;
}


/* A monitor call that failed: a 429 or refusal pauses every worker. */
static void
call_failed(pb_ctx_t *ctx, const char *what, const run_t *run,
    const pb_api_result_t *res)
{
    pb_api_class_t  cls = pb_api_classify(res);

    if (cls == PB_API_RATE_LIMITED || cls == PB_API_REFUSED) {
        pb_lane_close(ctx, pb_lane_backoff_ms(ctx, res));
    }

    pb_log(PB_LOG_WARN, what, "{s:s, s:s, s:s, s:s}", "job", run->id,
           "agent", run->agent, "class", pb_api_class_name(cls), "error",
           res->error);
}


static void
fetch_container(pb_ctx_t *ctx, const char *container, pb_api_result_t *res)
{
    pb_api_fetch_container(ctx->api, container, res);
    freeReplyObject(pb_redis_cmd(ctx->redis, "HINCRBY %s polls 1",
                                 PB_KEY_METRICS));
}


/* 1 when some job owns container, 0 when none, -1 when Redis failed. */
static int
owned(pb_ctx_t *ctx, const char *container)
{
    int          rc;
    redisReply  *reply;

    reply = pb_redis_cmd(ctx->redis, "HEXISTS %s %s", PB_KEY_CONTAINERS,
                         container);
    rc = reply != NULL && reply->type == REDIS_REPLY_INTEGER
         ? reply->integer != 0 : -1;
    freeReplyObject(reply);

    return rc;
}


/*
 * The agent's most recent container, from agents/fetch-output, into cid:
 * 1, 0 when the agent never ran (or does not exist), -1 when PhantomBuster
 * cannot tell us now (the lane, a 429, a timeout).
 */
static int
last_container(pb_ctx_t *ctx, const run_t *run, char cid[PB_ID_MAX_LEN + 1])
{
    json_t           *id;
    pb_api_class_t    cls;
    pb_api_result_t   out;
    int               rc = -1;

    if (!lane_ok(ctx)) {
        return -1;
    }

    pb_api_agent_output(ctx->api, run->agent, &out);
    cls = pb_api_classify(&out);
    id = json_object_get(out.json, "containerId");

    if (cls == PB_API_NOT_FOUND
        || (cls == PB_API_OK && (id == NULL || json_is_null(id))))
    {
        rc = 0;

    } else if (cls != PB_API_OK) {
        call_failed(ctx, "cannot ask for the agent's last run", run, &out);

    } else if (pb_id_from_json(id, cid) != 0) {
        call_failed(ctx, "no containerId in the agent's output", run, &out);

    } else {
        rc = 1;
    }

    pb_api_result_free(&out);

    return rc;
}


/*
 * Did the launch of run happen?  The agent's most recent container is ours
 * when no job owns it and containers/fetch says it was created at or after
 * the launch attempt (less the skew).  Returns 1 with its id in cid and its
 * containers/fetch answer in *fetched (to be freed), 0 when no run of the
 * agent started since the attempt, -1 when PhantomBuster cannot tell now.
 */
static int
launched_container(pb_ctx_t *ctx, const run_t *run,
    char cid[PB_ID_MAX_LEN + 1], pb_api_result_t *fetched)
{
    json_t  *created;
    int      rc;

    memset(fetched, 0, sizeof(*fetched));

    rc = last_container(ctx, run, cid);
    if (rc <= 0) {
        return rc;
    }

    rc = owned(ctx, cid);
    if (rc != 0) {
        return rc > 0 ? 0 : -1;     /* an earlier job's run: ours is none */
    }

    if (!lane_ok(ctx)) {
        return -1;
    }

    fetch_container(ctx, cid, fetched);
    if (pb_api_classify(fetched) != PB_API_OK) {
        call_failed(ctx, "cannot fetch the agent's last run", run, fetched);
        return -1;
    }

    /* a run without createdAt is taken as ours: never launch twice */
    created = json_object_get(fetched->json, "createdAt");

    return json_is_number(created)
           && json_number_value(created) + PB_DOUBT_SKEW_MS
              < (double) run->launching_at ? 0 : 1;
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
 * No webhook by its deadline and still going upstream: stops the agent
 * (PhantomBuster has no per-run stop) and fills o as timed out.
 */
static void
time_out(pb_ctx_t *ctx, const run_t *run, const char *upstream,
    pb_outcome_t *o, char *error, size_t error_len)
{
    pb_api_result_t  stop;
    long long        secs = (long long) (ctx->cfg->run_timeout_ms / 1000);

    snprintf(error, error_len, "no webhook after %llds (upstream status %s); "
             "agent stopped", secs, upstream);

    if (lane_ok(ctx)) {
        pb_api_stop_agent(ctx->api, run->agent, &stop);
        if (pb_api_classify(&stop) != PB_API_OK) {
            snprintf(error, error_len, "no webhook after %llds; stop failed: "
                     "%.200s", secs, stop.error);
        }
        pb_api_result_free(&stop);
    }

    o->status = "timed_out";
    o->found_by = "timeout";
    o->error = error;
    freeReplyObject(pb_redis_cmd(ctx->redis, "HINCRBY %s timeouts 1",
                                 PB_KEY_METRICS));
}


/*
 * Settles a run from its containers/fetch answer.  Finished: completes it
 * as its webhook would have.  Gone: fails it.  Still going past its
 * deadline: stops the agent and marks it timed out.  Either way the slot
 * is freed; a run within its time, or a failed call, is left alone.
 */
static int
settle_fetched(pb_ctx_t *ctx, const run_t *run, const pb_api_result_t *res,
    int past_deadline, const char *found_by)
{
    char              code[24], when[64], error[320];
    const char       *upstream;
    pb_outcome_t      o;
    pb_api_class_t    cls = pb_api_classify(res);
    pb_slot_result_t  sr;
    int               rc;

    memset(&o, 0, sizeof(o));
    o.container = run->container;
    o.found_by = found_by;
    pb_iso_time(pb_now_ms(), when);
    o.received_at = when;

    if (cls == PB_API_NOT_FOUND) {
        o.status = "failed";
        o.error = "container not found upstream";

    } else if (cls != PB_API_OK) {
        call_failed(ctx, "cannot check run", run, res);
        return 0;

    } else if (!finished_outcome(res, &o, code, sizeof(code), &upstream)) {
        if (!past_deadline || PB_STOPPING(ctx)) {
            return 0;   /* within its time; or SIGTERM: next pass stops it */
        }
        time_out(ctx, run, upstream, &o, error, sizeof(error));
    }

    rc = pb_slot_finish(ctx, run->id, run->token, &o, &sr);
    if (rc == 0) {
        pb_log(PB_LOG_INFO, "run settled by the monitor",
               "{s:s, s:s, s:s, s:s, s:s?}", "job", run->id, "container",
               run->container, "status", o.status, "result", sr.kind,
               "error", o.error);
    }

    return rc;
}


static int
check_run(pb_ctx_t *ctx, const run_t *run, int past_deadline,
    const char *found_by)
{
    pb_api_result_t  res;
    int              rc;

    if (!lane_ok(ctx)) {
        return 0;
    }

    fetch_container(ctx, run->container, &res);
    rc = settle_fetched(ctx, run, &res, past_deadline, found_by);
    pb_api_result_free(&res);

    return rc;
}


/*
 * Binds the run found for a job in doubt (its early webhook's, or the one
 * PhantomBuster showed) to it; with that run's containers/fetch answer,
 * completes it at once if it is already over.
 */
static int
bind_found(pb_ctx_t *ctx, const run_t *run, const char *container,
    const pb_api_result_t *fetched)
{
    run_t             bound;
    pb_slot_result_t  sr;

    if (pb_slot_record(ctx, run->id, run->token, container, "reconcile", &sr)
        != 0)
    {
        return -1;
    }

    pb_log(PB_LOG_INFO, "launch reconciled", "{s:s, s:s, s:s}", "job",
           run->id, "result", sr.kind, "container", container);

    if (fetched == NULL || strcmp(sr.kind, "recorded") != 0) {
        return 0;
    }

    bound = *run;
    snprintf(bound.container, sizeof(bound.container), "%s", container);

    return settle_fetched(ctx, &bound, fetched, 0, "polling");
}


/*
 * Resolves a launch in doubt from evidence, never from a guess: its
 * webhook (held early), or PhantomBuster's word that a run of the agent
 * started since the attempt.  Only when PhantomBuster shows none and the
 * grace is over (run->deadline: the launcher's call is long over and a
 * quick run's webhook would have come) is it put back for a relaunch, one
 * attempt used, as for any request that did not get through.  A question
 * PhantomBuster did not answer leaves it in doubt for the next pass.
 * may_relaunch is 0 in the pass that put it in doubt, so that a turn of
 * the webhook consumer always comes first.
 */
static int
resolve_doubt(pb_ctx_t *ctx, const run_t *run, int64_t now, int may_relaunch)
{
    char              cid[PB_ID_MAX_LEN + 1];
    pb_api_result_t   fetched;
    pb_slot_result_t  sr;
    int               found, rc;

    if (run->early[0] != '\0') {
        return bind_found(ctx, run, run->early, NULL);
    }

    found = launched_container(ctx, run, cid, &fetched);
    rc = found > 0 ? bind_found(ctx, run, cid, &fetched) : 0;
    pb_api_result_free(&fetched);

    if (found != 0) {
        return rc;
    }

    if (now < run->deadline || !may_relaunch) {
        pb_log(PB_LOG_DEBUG, "launch still in doubt: no run yet", "{s:s, "
               "s:I}", "job", run->id, "relaunch_in_ms",
               (json_int_t) (run->deadline > now ? run->deadline - now
                                                 : 0));
        return 0;
    }

    rc = pb_slot_fail(ctx, run->id, run->token,
                      pb_backoff_full_jitter(ctx->cfg->backoff_base_ms,
                                             ctx->cfg->backoff_cap_ms,
                                             (unsigned) run->attempts,
                                             pb_random64()),
                      ctx->cfg->max_attempts, "launch outcome unknown and no "
                      "run of the agent since the attempt", &sr);
    if (rc == 0) {
        pb_log(PB_LOG_WARN, "launch in doubt did not happen", "{s:s, s:s, "
               "s:s}", "job", run->id, "result", sr.kind, "attempts",
               sr.detail);
    }

    return rc;
}


/*
 * Puts a launch in doubt (no API call: the webhook consumer gets its turn
 * first), binding it at once if its webhook is already held.  1 when that
 * settled it (or someone else had: fenced), 0 when it stays in doubt.
 */
static int
doubt(pb_ctx_t *ctx, const char *job_id, const char *token,
    const char *reason, run_t *run)
{
    char              id[PB_JOB_ID_MAX + 1];
    pb_slot_result_t  sr;

    /* job_id may be run->id, which load_run() clears first */
    snprintf(id, sizeof(id), "%s", job_id);

    if (pb_slot_doubt(ctx, id, token, pb_launch_lease_ms(ctx->cfg), reason,
                      &sr) != 0
        || load_run(ctx, id, run) != 0)
    {
        return -1;
    }

    if (strcmp(sr.kind, "in_doubt") != 0) {
        return 1;
    }

    pb_log(PB_LOG_WARN, "launch in doubt", "{s:s, s:s, s:s}", "job", id,
           "agent", run->agent, "reason", reason);

    if (run->early[0] == '\0') {
        return 0;
    }

    return bind_found(ctx, run, run->early, NULL) == 0 ? 1 : -1;
}


int
pb_monitor_doubt(pb_ctx_t *ctx, const char *job_id, const char *token,
    const char *reason)
{
    run_t  run;

    return doubt(ctx, job_id, token, reason, &run) < 0 ? -1 : 0;
}


/*
 * 0 when run's launcher is surely gone.  The monitor runs between launch
 * steps, never during one, so a claim or launch in our own name is a
 * previous life's (same PB_WORKER_ID, restarted after a crash): its
 * launcher is dead, however fresh our heartbeat is.
 */
static int
launcher_alive(pb_ctx_t *ctx, const run_t *run)
{
    return strcmp(run->worker, ctx->cfg->worker_id) == 0
           ? 0 : pb_workers_alive(ctx, run->worker);
}


static int
settle_launch(pb_ctx_t *ctx, run_t *run, int64_t now)
{
    int  rc, fresh = !run->in_doubt;

    if (fresh) {
        if (now < run->deadline && launcher_alive(ctx, run) != 0) {
            return 0;           /* its launcher is still in the call */
        }
        rc = doubt(ctx, run->id, run->token, "its launcher died or overran "
                   "its lease in the launch call", run);
        if (rc != 0) {
            return rc < 0 ? -1 : 0;
        }
    }

    return resolve_doubt(ctx, run, now, !fresh);
}


static int
settle(pb_ctx_t *ctx, run_t *run, int64_t now, int check_all,
    const char *found_by)
{
    pb_slot_result_t  sr;
    int               past = now >= run->deadline;

    if (strcmp(run->state, "claimed") == 0) {
        if (past || launcher_alive(ctx, run) == 0) {
            /* the request never left: put it back in line */
            return pb_slot_requeue(ctx, run->id, run->token, 0,
                                   "recovered_claims",
                                   "its worker died before launching", &sr);
        }
        return 0;
    }

    if (strcmp(run->state, "launching") == 0) {
        return settle_launch(ctx, run, now);
    }

    if (strcmp(run->state, "running") == 0 && (past || check_all)) {
        return check_run(ctx, run, past, found_by);
    }

    return 0;
}


/*
 * Finished jobs past the keep time leave Redis, a bounded number per
 * pass so that no script holds Redis for long: at the default interval
 * that still forgets 12,000 a minute, far more than finish.
 */
#define PB_FORGET_PER_PASS  1000

static void
forget_finished(pb_ctx_t *ctx)
{
    long long  n;

    if (ctx->cfg->keep_finished_ms == 0) {
        return;
    }

    n = pb_jobs_forget_finished(ctx, ctx->cfg->keep_finished_ms,
                                PB_FORGET_PER_PASS);
    if (n > 0) {
        pb_log(PB_LOG_INFO, "finished jobs forgotten", "{s:I, s:I}",
               "count", (json_int_t) n,
               "keep_s", (json_int_t) (ctx->cfg->keep_finished_ms / 1000));
    }
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
    forget_finished(ctx);

    reply = pb_redis_cmd(ctx->redis, "ZRANGE %s 0 -1", PB_KEY_JOBS_RUNNING);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        rc = -1;
        goto done;
    }

    for (i = 0; i < reply->elements && !PB_STOPPING(ctx); i++) {
        if (load_run(ctx, reply->element[i]->str, &run) != 0) {
            rc = -1;
            break;
        }

        if (run.deadline < 0) {
            continue;           /* settled since the ZRANGE */
        }

        if (!run.exists) {
            /* a job deleted by hand: its slot must not stay taken */
            freeReplyObject(pb_redis_cmd(ctx->redis, "ZREM %s %s",
                                         PB_KEY_JOBS_RUNNING, run.id));
            continue;
        }

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
