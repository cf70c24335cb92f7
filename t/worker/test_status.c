/*
 * The status and metrics scripts of common/pb_status.c, run the way pbctl
 * and the module run them, against states made by the worker's own
 * scripts: run durations kept per agent, the ETA of each pending job and
 * of the queue, paused and closed lanes, dead letters, completions,
 * workers, alerts, and the Prometheus text.  Field names and JSON types
 * are checked by t/009-status.t through the module; t/worker/
 * test_status_http.py checks that pbctl and the module agree.
 */

#include <ctype.h>
#include <math.h>

#include "commands.h"
#include "jobs.h"
#include "pb_status.h"
#include "slots.h"
#include "testlib.h"
#include "workers.h"


static void
add(pb_ctx_t *ctx, const char *id, const char *agent)
{
    pb_enqueue_result_t  res;

    pb_job_enqueue(ctx, id, agent, NULL, 0, "test", &res);
}


/*
 * Claims the next job and, given a container, records its launch; returns
 * the claim's token.
 */
static const char *
launch(pb_ctx_t *ctx, const char *container)
{
    static char        token[32];
    pb_claim_t         c;
    pb_slot_result_t   sr;

    token[0] = '\0';
    if (pb_slot_claim(ctx, 60000, &c) != 0 || c.kind != PB_CLAIM_CLAIMED) {
        return token;
    }
    pb_claim_free(&c);
    snprintf(token, sizeof(token), "%s", c.token);
    if (container == NULL) {
        return token;
    }
    pb_slot_mark_launching(ctx, c.job_id, c.token, &sr);
    pb_slot_record(ctx, c.job_id, c.token, container, "launch", &sr);

    return token;
}


/* Moves a job's claim time back by ms (as if it had run that long). */
static void
age(pb_ctx_t *ctx, const char *id, long long ms)
{
    freeReplyObject(pb_redis_cmd(ctx->redis, "HSET %s%s claimed_at %lld",
                                 PB_KEY_JOB_PREFIX, id,
                                 (long long) pb_redis_time_ms(ctx->redis)
                                 - ms));
}


static void
finish(pb_ctx_t *ctx, const char *id, const char *token, const char *status,
    const char *message)
{
    pb_slot_result_t  sr;

    pb_slot_finish(ctx, id, token, &(pb_outcome_t) { .status = status,
                   .exit_code = "1", .exit_message = message,
                   .found_by = "polling" }, &sr);
}


static long long
stat(pb_ctx_t *ctx, const char *field)
{
    return strtoll(test_hget(ctx, PB_KEY_RUN_STATS, field), NULL, 10);
}


static json_t *
status(pb_ctx_t *ctx)
{
    char     err[256];
    json_t  *req = json_pack("{s:s}", "cmd", "status"), *res = NULL;

    if (pb_command_run(ctx, req, &res, err, sizeof(err)) != PB_CMD_OK) {
        fprintf(stderr, "status: %s\n", err);
    }
    json_decref(req);

    return res;
}


static double
num(const json_t *o, const char *path)
{
    char         key[64];
    const char  *dot;

    while ((dot = strchr(path, '.')) != NULL) {
        snprintf(key, sizeof(key), "%.*s", (int) (dot - path), path);
        o = isdigit((unsigned char) key[0])
            ? json_array_get(o, strtoul(key, NULL, 10))
            : json_object_get(o, key);
        path = dot + 1;
    }

    o = json_object_get(o, path);

    return json_is_number(o) ? json_number_value(o) : NAN;
}


static int
has_alert(const json_t *s, const char *code)
{
    size_t   i;
    json_t  *a;

    json_array_foreach(json_object_get(s, "alerts"), i, a) {
        if (strcmp(json_string_value(json_object_get(a, "code")), code)
            == 0)
        {
            return 1;
        }
    }

    return 0;
}


static void
test_run_stats(pb_ctx_t *ctx)
{
    const char  *token;

    test_flush(ctx);
    test_cfg.max_running = 1;

    add(ctx, "j1", "A");
    token = launch(ctx, "101");
    age(ctx, "j1", 10000);
    finish(ctx, "j1", token, "success", "finished");
    CHECK(labs(stat(ctx, "avg_ms:A") - 10000) < 100
          && stat(ctx, "runs:A") == 1 && stat(ctx, "avg_ms:*")
          == stat(ctx, "avg_ms:A"), "first run: the average is its time");

    add(ctx, "j2", "A");
    token = launch(ctx, "102");
    age(ctx, "j2", 20000);
    finish(ctx, "j2", token, "failed", "agent crashed");
    CHECK(labs(stat(ctx, "avg_ms:A") - 13000) < 100
          && labs(stat(ctx, "last_ms:A") - 20000) < 100
          && stat(ctx, "runs:A") == 2, "EWMA: 10 s then 20 s -> 13 s");

    add(ctx, "j3", "A");
    token = launch(ctx, "103");
    age(ctx, "j3", 500000);
    finish(ctx, "j3", token, "timed_out", "timed out");
    CHECK(stat(ctx, "runs:A") == 2, "a timed-out run is not a duration");
}


static void
test_eta(pb_ctx_t *ctx)
{
    json_t  *s;

    /* the history of test_run_stats: A averages 13 s, all agents too */
    add(ctx, "r1", "A");
    launch(ctx, "201");
    age(ctx, "r1", 4000);
    add(ctx, "p1", "A");
    add(ctx, "p2", "B");
    pb_workers_heartbeat(ctx);

    s = status(ctx);
    CHECK(s != NULL, "status runs");
    if (s == NULL) {
        return;
    }

    CHECK(strcmp(json_string_value(json_object_get(json_array_get(
          json_object_get(s, "running"), 0), "id")), "r1") == 0
          && num(s, "running.0.elapsed_ms") >= 4000
          && num(s, "running.0.remaining_ms")
             == num(s, "running.0.avg_run_ms") - num(s, "running.0.elapsed_ms"),
          "running: elapsed and what is left of its agent's average");
    CHECK(num(s, "pending.0.position") == 1
          && num(s, "pending.0.starts_in_ms")
             == num(s, "running.0.remaining_ms")
          && num(s, "pending.0.done_in_ms")
             == num(s, "pending.0.starts_in_ms")
                + num(s, "pending.0.avg_run_ms"),
          "position 1 starts when the run ends, lasts its agent's average");
    CHECK(num(s, "pending.1.position") == 2
          && num(s, "pending.1.starts_in_ms") == num(s, "pending.0.done_in_ms")
          && num(s, "pending.1.avg_run_ms") == num(s, "agents.A.avg_run_ms"),
          "position 2: after position 1; an agent without history takes "
          "the average of all");
    CHECK(num(s, "eta.queue_done_in_ms") == num(s, "pending.1.done_in_ms")
          && json_is_true(json_object_get(json_object_get(s, "eta"),
                                          "exact")),
          "the queue is done when its last job is");
    CHECK(num(s, "counts.pending") == 2 && num(s, "counts.running") == 1
          && num(s, "counts.done") == 3 && num(s, "max_running") == 1,
          "counts");
    CHECK(json_is_true(json_object_get(json_array_get(
          json_object_get(s, "workers"), 0), "alive"))
          && !has_alert(s, "no_worker"), "the heartbeat shows the worker");
    CHECK(num(s, "recent.0.duration_ms") >= 500000
          && strcmp(json_string_value(json_object_get(json_array_get(
                    json_object_get(s, "recent"), 1), "outcome")), "failed")
             == 0, "recent completions, newest first, with outcomes");
    json_decref(s);

    /* a 429 closed the lane for 30 s: nothing starts before it reopens */
    freeReplyObject(pb_redis_cmd(ctx->redis, "SET %s %lld PX 30000",
                                 PB_KEY_LANE_CLOSED,
                                 (long long) pb_redis_time_ms(ctx->redis)
                                 + 30000));
    s = status(ctx);
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(s, "lane"),
                                                   "state")), "closed") == 0
          && num(s, "lane.closed_ms") > 29000
          && num(s, "pending.0.starts_in_ms") == num(s, "lane.closed_ms")
          && has_alert(s, "lane_closed"), "closed lane delays the ETA");
    json_decref(s);

    /* three slots: both pending jobs start when the lane reopens */
    freeReplyObject(pb_redis_cmd(ctx->redis, "SET %s%s %s",
                                 PB_KEY_WORKER_PREFIX, test_cfg.worker_id,
                                 "{\"max_running\":3}"));
    s = status(ctx);
    CHECK(num(s, "max_running") == 3
          && num(s, "pending.1.starts_in_ms") == num(s, "lane.closed_ms"),
          "free slots are used at once");
    json_decref(s);
}


static void
test_paused_and_dead(pb_ctx_t *ctx)
{
    char         err[256];
    json_t      *req, *res = NULL, *s;
    const char  *token;
    pb_slot_result_t  sr;

    freeReplyObject(pb_redis_cmd(ctx->redis, "DEL %s", PB_KEY_LANE_CLOSED));
    req = json_pack("{s:s, s:s}", "cmd", "pause", "by", "test");
    pb_command_run(ctx, req, &res, err, sizeof(err));
    json_decref(req);
    json_decref(res);

    s = status(ctx);
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(s, "lane"),
                                                   "state")), "paused") == 0
          && json_is_null(json_object_get(json_object_get(s, "eta"),
                                          "queue_done_in_ms"))
          && strcmp(json_string_value(json_object_get(json_object_get(s,
                    "eta"), "blocked")), "paused") == 0
          && json_is_null(json_object_get(json_array_get(
                json_object_get(s, "pending"), 0), "starts_in_ms"))
          && has_alert(s, "paused"), "paused: no ETA, an alert");
    json_decref(s);

    req = json_pack("{s:s}", "cmd", "resume");
    pb_command_run(ctx, req, &res, err, sizeof(err));
    json_decref(req);
    json_decref(res);

    /* a 4xx dead-letters at once */
    test_flush(ctx);
    add(ctx, "d1", "A");
    token = launch(ctx, NULL);
    pb_slot_fail(ctx, "d1", token, 0, 0, "HTTP 400: bad \"argument\"", &sr);
    s = status(ctx);
    CHECK(strcmp(sr.kind, "dead") == 0 && num(s, "counts.dead") == 1
          && strcmp(json_string_value(json_object_get(json_array_get(
                    json_object_get(s, "dead"), 0), "error")),
                    "HTTP 400: bad \"argument\"") == 0
          && num(s, "dead.0.dead_at") > 0 && has_alert(s, "dead_letters")
          && has_alert(s, "no_worker"), "dead letters, no worker alive");
    CHECK(json_is_null(json_object_get(json_object_get(s, "eta"),
                                       "queue_done_in_ms")) == 0
          && num(s, "eta.queue_done_in_ms") == 0,
          "nothing to do: the queue is done now");
    json_decref(s);
}


static void
test_empty(pb_ctx_t *ctx)
{
    static const char  *lists[] = { "running", "pending", "dead", "recent",
                                    "workers", "alerts", NULL };
    const char  **l;
    json_t       *s;
    int           ok = 1;

    test_flush(ctx);
    s = status(ctx);
    for (l = lists; *l != NULL; l++) {
        ok &= json_is_array(json_object_get(s, *l))
              && json_array_size(json_object_get(s, *l))
                 == (strcmp(*l, "alerts") == 0);
    }
    CHECK(ok && json_is_object(json_object_get(s, "agents"))
          && json_is_object(json_object_get(s, "metrics")),
          "empty lists are [] and empty maps {}");
    CHECK(json_is_null(json_object_get(json_object_get(s, "webhooks"),
                                       "last_age_ms"))
          && json_is_null(json_object_get(json_object_get(s, "eta"),
                                          "queue_done_in_ms")) == 0,
          "no webhook yet: null age");
    json_decref(s);
}


static void
test_metrics(pb_ctx_t *ctx)
{
    static pb_script_t   script = { "metrics", pb_lua_metrics, "" };
    pb_status_keys_t     keys;
    redisReply          *r;
    const char          *text;
    const char          *token;

    test_flush(ctx);
    add(ctx, "m1", "A");
    token = launch(ctx, "301");
    finish(ctx, "m1", token, "failed", "weird \"quote\"\nand line");
    add(ctx, "m2", "A");
    add(ctx, "m3", "A");

    pb_status_keys(&keys, PB_DEFAULT_QUEUE, strlen(PB_DEFAULT_QUEUE));
    r = pb_redis_eval(ctx->redis, &script, keys.keys,
                      (const char **) pb_status_argv);
    text = r != NULL && r->type == REDIS_REPLY_STRING ? r->str : "";

    CHECK(strstr(text, "# TYPE phantombuster_jobs gauge\n"
                 "phantombuster_jobs{state=\"pending\"} 2\n") != NULL,
          "jobs by state");
    CHECK(strstr(text, "phantombuster_launches_total 1\n") != NULL
          && strstr(text, "phantombuster_runs_completed_total"
                    "{outcome=\"failed\"} 1\n") != NULL,
          "counters from the worker's metrics hash");
    CHECK(strstr(text, "phantombuster_run_failures_total{exit_message="
                 "\"weird \\\"quote\\\"\\nand line\"} 1\n") != NULL,
          "exit messages are escaped label values");
    CHECK(strstr(text, "phantombuster_oldest_pending_age_seconds ") != NULL
          && strstr(text, "phantombuster_last_webhook_age_seconds") == NULL,
          "ages: only of what exists");
    CHECK(strstr(text, "phantombuster_run_duration_average_seconds"
                 "{agent=\"A\"} ") != NULL, "run averages by agent");

    freeReplyObject(r);
}


int
main(void)
{
    pb_ctx_t  *ctx = test_setup("test_status");

    test_run_stats(ctx);
    test_eta(ctx);
    test_paused_and_dead(ctx);
    test_empty(ctx);
    test_metrics(ctx);

    return CHECK_DONE("test_status");
}
