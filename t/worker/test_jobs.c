/*
 * Jobs against a real Redis: ordering (priority, then FIFO), idempotent
 * enqueue, the pending audit row, input checks of the enqueue/list
 * commands, pause/resume/drain, and the dead-letter set.
 */

#include "commands.h"
#include "jobs.h"
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


static void
test_audit_row(pb_ctx_t *ctx)
{
    json_t      *row;
    redisReply  *r;

    r = pb_redis_cmd(ctx->redis, "LINDEX %s 0", PB_KEY_OUTBOX);
    row = r && r->type == REDIS_REPLY_STRING ? json_loads(r->str, 0, NULL)
                                             : NULL;
    freeReplyObject(r);

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

    return CHECK_DONE("test_jobs");
}
