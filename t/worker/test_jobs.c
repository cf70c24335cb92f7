/*
 * Jobs against a real Redis: ordering (priority, then FIFO), idempotent
 * enqueue, the pending audit row, input checks of the enqueue/list
 * commands, pause/resume/drain, the dead-letter set, and finished jobs
 * leaving Redis after the keep time.
 */

#include "commands.h"
#include "jobs.h"
#include "monitor.h"
#include "pb_keys.h"
#include "slots.h"
#include "testlib.h"


static long long
enqueue(pb_ctx_t *ctx, const char *id, const char *agent, long prio)
{
    pb_enqueue_result_t  res;

    if (pb_job_enqueue(ctx, id, agent, "{\"k\":1}", prio, "test", &res) != 0) {
        return -1;
    }

    return res.created ? res.position : 0;
}


/* Runs a command given as JSON text; returns its PB_CMD_* code. */
static int
command(pb_ctx_t *ctx, const char *json, json_t **result)
{
    char     err[256];
    int      rc;
    json_t  *req = json_loads(json, 0, NULL), *res = NULL;

    rc = pb_command_run(ctx, req, &res, err, sizeof(err));
    json_decref(req);

    if (result != NULL) {
        *result = res;
    } else {
        json_decref(res);
    }

    return rc;
}


static void
test_order(pb_ctx_t *ctx)
{
    static const char  *want[] = { "d", "f", "a", "b", "c", "e" };
    size_t              i;
    int                 ok = 1;
    redisReply         *r;

    CHECK(enqueue(ctx, "a", "1", 0) == 1, "first job at position 1");
    CHECK(enqueue(ctx, "b", "1", 0) == 2, "second at 2");
    CHECK(enqueue(ctx, "c", "2", 0) == 3, "third at 3");
    CHECK(enqueue(ctx, "d", "1", 5) == 1, "higher priority goes first");
    CHECK(enqueue(ctx, "e", "1", -1) == 5, "lower priority goes last");
    CHECK(enqueue(ctx, "f", "1", 5) == 2, "FIFO within a priority");

    r = pb_redis_cmd(ctx->redis, "ZRANGE %s 0 -1", PB_KEY_JOBS_PENDING);
    ok = r != NULL && r->elements == 6;
    for (i = 0; ok && i < 6; i++) {
        ok = strcmp(r->element[i]->str, want[i]) == 0;
    }
    freeReplyObject(r);
    CHECK(ok, "pending order: priority desc, then first come");

    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 6,
          "one pending audit row per job");
    CHECK(enqueue(ctx, "a", "9", 9) == 0, "existing id: nothing done");
    CHECK(test_int(ctx, "ZCARD %s", PB_KEY_JOBS_PENDING) == 6
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 6,
          "a repeated enqueue adds no job and no audit row");
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "a", "agent"), "1") == 0,
          "the existing job is unchanged");
}


/* The newest audit row of the outbox, parsed (NULL when none). */
static json_t *
newest_row(pb_ctx_t *ctx)
{
    json_t      *row;
    redisReply  *r;

    r = pb_redis_cmd(ctx->redis, "LINDEX %s 0", PB_KEY_OUTBOX);
    row = r && r->type == REDIS_REPLY_STRING ? json_loads(r->str, 0, NULL)
                                             : NULL;
    freeReplyObject(r);

    return row;
}


/* A string field of the newest audit row's metadata ("" when absent). */
static const char *
newest_meta(pb_ctx_t *ctx, const char *key, int *is_null)
{
    static char  buf[256];
    json_t      *row = newest_row(ctx), *v;

    v = json_object_get(json_object_get(row, "metadata"), key);
    snprintf(buf, sizeof(buf), "%s", json_is_string(v)
             ? json_string_value(v) : "");
    if (is_null != NULL) {
        *is_null = json_is_null(v);
    }
    json_decref(row);

    return buf;
}


static void
test_audit_row(pb_ctx_t *ctx)
{
    json_t  *row = newest_row(ctx);

    CHECK(row != NULL, "outbox row is JSON");
    CHECK(strcmp(json_string_value(json_object_get(row, "status")),
                 "pending") == 0, "status pending");
    CHECK(strcmp(json_string_value(json_object_get(row, "job_id")), "f") == 0,
          "newest row at the head");
    CHECK(json_integer_value(json_object_get(json_object_get(row, "metadata"),
                                             "queue_position")) == 2,
          "metadata.queue_position");
    json_decref(row);
}


static void
test_command_input(pb_ctx_t *ctx)
{
    json_t  *res;

    CHECK(command(ctx, "{\"cmd\":\"enqueue\"}", NULL) == PB_CMD_BADARGS,
          "enqueue without agent");
    CHECK(command(ctx, "{\"cmd\":\"enqueue\",\"agent\":\"a b\"}", NULL)
          == PB_CMD_BADARGS, "agent id with a space");
    CHECK(command(ctx, "{\"cmd\":\"enqueue\",\"agent\":\"1\","
                  "\"argument\":\"{\"}", NULL) == PB_CMD_BADARGS,
          "argument that is not JSON");
    CHECK(command(ctx, "{\"cmd\":\"enqueue\",\"agent\":\"1\","
                  "\"priority\":2000000}", NULL) == PB_CMD_BADARGS,
          "priority out of range");
    CHECK(command(ctx, "{\"cmd\":\"enqueue\",\"agent\":\"1\","
                  "\"job_id\":\"a/b\"}", NULL) == PB_CMD_BADARGS,
          "job id with a slash");
    CHECK(command(ctx, "{\"cmd\":\"nope\"}", NULL) == PB_CMD_BADARGS,
          "unknown command");
    CHECK(command(ctx, "{\"cmd\":\"list\",\"set\":\"bogus\"}", NULL)
          == PB_CMD_BADARGS, "unknown job set");

    CHECK(command(ctx, "{\"cmd\":\"enqueue\",\"agent\":42}", &res)
          == PB_CMD_OK, "numeric agent id accepted");
    CHECK(strncmp(json_string_value(json_object_get(res, "job_id")), "job-",
                  4) == 0, "a job id is generated");
    json_decref(res);

    CHECK(command(ctx, "{\"cmd\":\"list\",\"limit\":2}", &res) == PB_CMD_OK
          && json_array_size(json_object_get(res, "jobs")) == 2
          && strcmp(json_string_value(json_object_get(json_array_get(
                        json_object_get(res, "jobs"), 0), "id")), "d") == 0,
          "list pending, limited, in order");
    json_decref(res);

    CHECK(pb_job_id_valid("ok-1_2.3:x") && !pb_job_id_valid("")
          && !pb_job_id_valid("x y"), "job id rules");

    /* what pbctl checks itself, a status page's request may still get wrong */
    CHECK(command(ctx, "{\"cmd\":\"list\",\"limit\":0}", NULL)
          == PB_CMD_BADARGS, "list limit 0");
    CHECK(command(ctx, "{\"cmd\":\"enqueue\",\"agent\":\"1\","
                  "\"priority\":\"5\"}", NULL) == PB_CMD_BADARGS,
          "priority as a string");
    CHECK(command(ctx, "{\"cmd\":\"dlq_retry\"}", NULL) == PB_CMD_BADARGS,
          "dlq retry without an id");
    CHECK(command(ctx, "{\"id\":\"x\"}", NULL) == PB_CMD_BADARGS,
          "a request without a command name");
}


/* Every command reports an unreachable Redis as a failure, not bad input. */
static void
test_redis_down(void)
{
    static const char  *requests[] = {
        "{\"cmd\":\"status\"}", "{\"cmd\":\"list\"}",
        "{\"cmd\":\"enqueue\",\"agent\":\"1\"}", "{\"cmd\":\"dlq_list\"}",
        "{\"cmd\":\"dlq_retry\",\"id\":\"j\"}", "{\"cmd\":\"dlq_retry_all\"}",
        "{\"cmd\":\"dlq_purge\"}", "{\"cmd\":\"pause\"}",
        "{\"cmd\":\"resume\"}", "{\"cmd\":\"drain\"}",
        "{\"cmd\":\"restart\"}", NULL
    };

    char          err[256];
    size_t        i;
    int           all = 1;
    json_t       *req, *res;
    pb_ctx_t      down;
    pb_config_t   cfg = test_cfg;

    memset(&down, 0, sizeof(down));
    down.cfg = &cfg;
    down.redis = pb_redis_open("redis://127.0.0.1:1/0", 1000, err,
                               sizeof(err));
    down.api = pb_api_new("http://127.0.0.1:1", "k", 1000, 1000);

    for (i = 0; requests[i] != NULL; i++) {
        req = json_loads(requests[i], 0, NULL);
        if (pb_command_run(&down, req, &res, err, sizeof(err))
            != PB_CMD_FAILED || strstr(err, "Redis") == NULL)
        {
            fprintf(stderr, "Redis down: %s: %s\n", requests[i], err);
            all = 0;
        }
        json_decref(req);
        json_decref(res);
    }

    CHECK(all, "Redis down: every command fails (exit 1), naming Redis");
    CHECK(pb_commands_step(&down) == -1, "the command list step fails too");

    pb_api_free(down.api);
    pb_redis_close(down.redis);
}


static void
test_flags(pb_ctx_t *ctx)
{
    pb_claim_t  claim;
    json_t     *res;

    CHECK(command(ctx, "{\"cmd\":\"pause\",\"by\":\"t\"}", NULL) == PB_CMD_OK,
          "pause");
    CHECK(pb_slot_claim(ctx, 10000, &claim) == 0
          && claim.kind == PB_CLAIM_PAUSED, "paused: nothing is claimed");
    CHECK(command(ctx, "{\"cmd\":\"status\"}", &res) == PB_CMD_OK
          && strcmp(json_string_value(json_object_get(json_object_get(res,
                        "lane"), "state")), "paused") == 0,
          "status shows the pause");
    json_decref(res);

    CHECK(command(ctx, "{\"cmd\":\"resume\"}", NULL) == PB_CMD_OK, "resume");
    CHECK(command(ctx, "{\"cmd\":\"drain\",\"by\":\"t\"}", NULL) == PB_CMD_OK,
          "drain");
    CHECK(pb_slot_claim(ctx, 10000, &claim) == 0
          && claim.kind == PB_CLAIM_DRAINING, "draining: nothing is claimed");
    CHECK(command(ctx, "{\"cmd\":\"resume\"}", NULL) == PB_CMD_OK,
          "resume again");
}


static void
test_dlq(pb_ctx_t *ctx)
{
    pb_claim_t        claim;
    pb_slot_result_t  sr;
    json_t           *res;

    test_cfg.max_running = 1;

    CHECK(pb_slot_claim(ctx, 10000, &claim) == 0
          && claim.kind == PB_CLAIM_CLAIMED
          && strcmp(claim.job_id, "d") == 0, "claim takes the head job");
    CHECK(pb_slot_fail(ctx, claim.job_id, claim.token, 0, 0, "HTTP 400: bad",
                       &sr) == 0 && strcmp(sr.kind, "dead") == 0,
          "a permanent failure dead-letters at once");
    pb_claim_free(&claim);

    CHECK(test_int(ctx, "ZCARD %s", PB_KEY_JOBS_DEAD) == 1
          && test_int(ctx, "ZCARD %s", PB_KEY_JOBS_RUNNING) == 0,
          "dead letter holds it; the slot is free");
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "d", "error"),
                 "HTTP 400: bad") == 0, "the reason is kept");

    CHECK(command(ctx, "{\"cmd\":\"dlq_list\"}", &res) == PB_CMD_OK
          && json_array_size(json_object_get(res, "jobs")) == 1,
          "dlq list");
    json_decref(res);

    CHECK(command(ctx, "{\"cmd\":\"dlq_retry\",\"id\":\"zz\"}", NULL)
          == PB_CMD_BADARGS, "retry of a job not dead-lettered");
    CHECK(command(ctx, "{\"cmd\":\"dlq_retry\",\"id\":\"d\"}", NULL)
          == PB_CMD_OK, "dlq retry");
    CHECK(test_int(ctx, "ZCARD %s", PB_KEY_JOBS_DEAD) == 0
          && strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "d", "state"),
                    "pending") == 0
          && strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "d", "attempts"),
                    "0") == 0, "retried job is pending, attempts reset");
    CHECK(test_int(ctx, "ZRANK %s d", PB_KEY_JOBS_PENDING) == 1,
          "back of its priority (after f)");

    /* dead-letter two, purge them */
    CHECK(pb_slot_claim(ctx, 10000, &claim) == 0
          && pb_slot_fail(ctx, claim.job_id, claim.token, 0, 0, "x", &sr) == 0,
          "dead-letter f");
    pb_claim_free(&claim);
    CHECK(command(ctx, "{\"cmd\":\"dlq_purge\"}", &res) == PB_CMD_OK
          && json_integer_value(json_object_get(res, "purged")) == 1,
          "purge counts");
    json_decref(res);
    CHECK(test_int(ctx, "EXISTS %s", PB_KEY_JOB_PREFIX "f") == 0,
          "purged job forgotten");
    CHECK(enqueue(ctx, "f", "1", 0) > 0, "a purged id can be enqueued again");
}


/*
 * A job's launch error is cleared once its launch gets through, and a
 * dead letter's error once it is retried, so pbctl list stops showing
 * them; the audit rows keep them (launch_error, dead_letter_error).
 */
static void
test_error_history(pb_ctx_t *ctx)
{
    int               is_null = 0;
    pb_claim_t        claim;
    pb_slot_result_t  sr;
    pb_outcome_t      o;
    json_t           *res, *job;

    test_flush(ctx);
    test_cfg.max_running = 1;
    enqueue(ctx, "h", "7", 0);

    /* a 503, then the launch gets through */
    CHECK(pb_slot_claim(ctx, 10000, &claim) == 0
          && pb_slot_fail(ctx, claim.job_id, claim.token, 0, 5,
                          "HTTP 503 from agents/launch", &sr) == 0
          && strcmp(sr.kind, "retry") == 0, "a 503: retry");
    pb_claim_free(&claim);
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "h", "last_error"),
                 "HTTP 503 from agents/launch") == 0, "last_error kept");
    CHECK(pb_slot_claim(ctx, 10000, &claim) == 0
          && claim.kind == PB_CLAIM_CLAIMED
          && pb_slot_record(ctx, "h", claim.token, "9001", "launch", &sr) == 0
          && strcmp(sr.kind, "recorded") == 0, "the retry is launched");
    CHECK(test_hget(ctx, PB_KEY_JOB_PREFIX "h", "last_error")[0] == '\0',
          "launched: last_error cleared");
    CHECK(strcmp(newest_meta(ctx, "launch_error", NULL),
                 "HTTP 503 from agents/launch") == 0,
          "the phantom_launched row keeps it as launch_error");

    memset(&o, 0, sizeof(o));
    o.status = "success";
    o.found_by = "webhook";
    CHECK(pb_slot_finish(ctx, "h", claim.token, &o, &sr) == 0
          && strcmp(sr.kind, "completed") == 0, "the run completes");
    pb_claim_free(&claim);
    CHECK(command(ctx, "{\"cmd\":\"list\",\"set\":\"done\"}", &res)
          == PB_CMD_OK, "list done");
    job = json_array_get(json_object_get(res, "jobs"), 0);
    CHECK(job != NULL && json_object_get(job, "last_error") == NULL
          && json_object_get(job, "error") == NULL
          && strcmp(json_string_value(json_object_get(job, "container")),
                    "9001") == 0, "the done job shows no old error");
    json_decref(res);

    /* a 429 (requeued with a reason), completed without a record */
    enqueue(ctx, "i", "7", 0);
    CHECK(pb_slot_claim(ctx, 10000, &claim) == 0
          && pb_slot_requeue(ctx, "i", claim.token, 0, "launch_429",
                             "HTTP 429", &sr) == 0, "a 429: requeued");
    pb_claim_free(&claim);
    CHECK(pb_slot_claim(ctx, 10000, &claim) == 0
          && pb_slot_finish(ctx, "i", claim.token, &o, &sr) == 0,
          "completed by its webhook before the record");
    pb_claim_free(&claim);
    CHECK(test_hget(ctx, PB_KEY_JOB_PREFIX "i", "last_error")[0] == '\0'
          && strcmp(newest_meta(ctx, "launch_error", NULL), "HTTP 429") == 0,
          "completion clears it too, the terminal row keeps it");

    /* dead-lettered, then retried */
    enqueue(ctx, "j", "7", 0);
    CHECK(pb_slot_claim(ctx, 10000, &claim) == 0
          && pb_slot_fail(ctx, "j", claim.token, 0, 0, "HTTP 400: bad id",
                          &sr) == 0 && strcmp(sr.kind, "dead") == 0,
          "a 400: dead-lettered");
    pb_claim_free(&claim);
    CHECK(pb_dlq_retry(ctx, "j") == 1, "dlq retry");
    CHECK(test_hget(ctx, PB_KEY_JOB_PREFIX "j", "error")[0] == '\0'
          && test_hget(ctx, PB_KEY_JOB_PREFIX "j", "last_error")[0] == '\0',
          "retried: error and last_error cleared");
    CHECK(strcmp(newest_meta(ctx, "dead_letter_error", &is_null),
                 "HTTP 400: bad id") == 0, "the reset row keeps the error");
    newest_meta(ctx, "error", &is_null);
    CHECK(is_null, "and clears the row's current error (null)");
}


/* Claims the head job, records its launch as container and completes it. */
static int
run_to_done(pb_ctx_t *ctx, const char *container)
{
    int               ok;
    pb_claim_t        claim;
    pb_slot_result_t  sr;
    pb_outcome_t      o;

    memset(&o, 0, sizeof(o));
    o.status = "success";
    o.found_by = "webhook";

    ok = pb_slot_claim(ctx, 10000, &claim) == 0
         && claim.kind == PB_CLAIM_CLAIMED
         && pb_slot_record(ctx, claim.job_id, claim.token, container,
                           "launch", &sr) == 0
         && pb_slot_finish(ctx, claim.job_id, claim.token, &o, &sr) == 0
         && strcmp(sr.kind, "completed") == 0;
    pb_claim_free(&claim);

    return ok;
}


/* Backdates a finished job's place in the done set by that many days. */
static void
finished_days_ago(pb_ctx_t *ctx, const char *id, int days)
{
    freeReplyObject(pb_redis_cmd(ctx->redis, "ZADD %s XX %lld %s",
                                 PB_KEY_JOBS_DONE,
                                 (long long) (pb_now_ms()
                                              - days * 86400000LL), id));
}


/*
 * Finished jobs leave Redis once the keep time is over, the oldest first
 * and a bounded number per call; a container mapped to another job since
 * keeps its mapping; jobs not finished are never touched; the monitor
 * pass does it, and not at all with a keep time of 0.
 */
static void
test_forget_finished(pb_ctx_t *ctx)
{
    const int64_t  week = 7 * 86400000LL;

    test_flush(ctx);
    test_cfg.max_running = 1;

    enqueue(ctx, "old1", "7", 0);
    enqueue(ctx, "old2", "7", 0);
    enqueue(ctx, "new", "7", 0);
    CHECK(run_to_done(ctx, "100") && run_to_done(ctx, "101")
          && run_to_done(ctx, "102"), "three jobs run to the end");
    enqueue(ctx, "waiting", "7", 0);

    finished_days_ago(ctx, "old1", 9);
    finished_days_ago(ctx, "old2", 8);
    /* container 101 was seen for another job since */
    freeReplyObject(pb_redis_cmd(ctx->redis, "HSET %s 101 other",
                                 PB_KEY_CONTAINERS));

    CHECK(pb_jobs_forget_finished(ctx, week, 1) == 1
          && test_int(ctx, "EXISTS %s", PB_KEY_JOB_PREFIX "old1") == 0
          && test_int(ctx, "EXISTS %s", PB_KEY_JOB_PREFIX "old2") == 1,
          "at most the limit, the oldest first");
    CHECK(pb_jobs_forget_finished(ctx, week, 1000) == 1
          && pb_jobs_forget_finished(ctx, week, 1000) == 0,
          "then the other one past the keep time, then none");

    CHECK(test_int(ctx, "ZCARD %s", PB_KEY_JOBS_DONE) == 1
          && test_int(ctx, "ZRANK %s new", PB_KEY_JOBS_DONE) == 0
          && strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "new", "state"),
                    "done") == 0, "a job finished today stays");
    CHECK(test_hget(ctx, PB_KEY_CONTAINERS, "100")[0] == '\0'
          && strcmp(test_hget(ctx, PB_KEY_CONTAINERS, "101"), "other") == 0
          && strcmp(test_hget(ctx, PB_KEY_CONTAINERS, "102"), "new") == 0,
          "a forgotten job's container mapping goes, another job's stays");
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "waiting", "state"),
                 "pending") == 0
          && test_int(ctx, "ZCARD %s", PB_KEY_JOBS_PENDING) == 1,
          "a pending job is not touched");

    /* through the monitor pass: not with 0, then with the keep time */
    finished_days_ago(ctx, "new", 30);
    test_cfg.keep_finished_ms = 0;
    CHECK(pb_monitor_pass(ctx, 0, "polling") == 0
          && test_int(ctx, "EXISTS %s", PB_KEY_JOB_PREFIX "new") == 1,
          "keep time 0: the monitor pass keeps every finished job");
    test_cfg.keep_finished_ms = week;
    CHECK(pb_monitor_pass(ctx, 0, "polling") == 0
          && test_int(ctx, "EXISTS %s", PB_KEY_JOB_PREFIX "new") == 0
          && test_int(ctx, "ZCARD %s", PB_KEY_JOBS_DONE) == 0,
          "the monitor pass forgets it after the keep time");

    CHECK(enqueue(ctx, "old1", "7", 0) > 0,
          "a forgotten id can be enqueued again");
}


int
main(void)
{
    pb_ctx_t  *ctx = test_setup("test_jobs");

    test_flush(ctx);
    test_order(ctx);
    test_audit_row(ctx);
    test_command_input(ctx);
    test_flags(ctx);
    test_dlq(ctx);
    test_error_history(ctx);
    test_forget_finished(ctx);
    test_redis_down();

    return CHECK_DONE("test_jobs");
}
