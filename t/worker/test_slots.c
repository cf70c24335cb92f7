/*
 * Launch slots and webhook matching against a real Redis: the slot count,
 * fencing tokens, agent serialisation, the shared lane and throttle,
 * retries and dead letters, and every way a webhook can meet its job
 * (matched, early, duplicate, unknown, launch in doubt, invalid), plus the
 * recovery of in-flight envelopes.
 */

#include "jobs.h"
#include "pb_envelope.h"
#include "pb_keys.h"
#include "slots.h"
#include "testlib.h"
#include "webhooks.h"
#include "workers.h"

#define PROCESSING  PB_DEFAULT_QUEUE PB_PROCESSING_INFIX "test-test_slots"


static void
reset(pb_ctx_t *ctx, int max_running, int calls_per_minute)
{
    test_flush(ctx);
    test_cfg.max_running = max_running;
    test_cfg.calls_per_minute = calls_per_minute;
}


static void
add(pb_ctx_t *ctx, const char *id, const char *agent)
{
    pb_enqueue_result_t  res;

    pb_job_enqueue(ctx, id, agent, NULL, 0, "test", &res);
}


static pb_claim_kind_t
claim(pb_ctx_t *ctx, pb_claim_t *c)
{
    if (pb_slot_claim(ctx, 60000, c) != 0) {
        return (pb_claim_kind_t) -1;
    }
    pb_claim_free(c);

    return c->kind;
}


/* An envelope as the module writes it; payload verbatim. */
static char *
envelope(const char *payload)
{
    static int  n;
    char        id[32], head[512], *env;
    size_t      hl;

    snprintf(id, sizeof(id), "req%d", ++n);
    hl = pb_envelope_head(head, sizeof(head), id, strlen(id), 1700000000000LL,
                          PB_DEFAULT_QUEUE, strlen(PB_DEFAULT_QUEUE));
    env = malloc(hl + strlen(payload) + 2);
    memcpy(env, head, hl);
    strcpy(env + hl, payload);
    strcat(env, "}");

    return env;
}


/* Delivers a webhook the way pb-worker does; returns the result kind. */
static const char *
webhook(pb_ctx_t *ctx, const char *container, const char *agent, int code,
    const char *message)
{
    static char   kind[32];
    char          payload[512], *env;
    redisReply   *r;

    snprintf(payload, sizeof(payload), "{\"agentId\": \"%s\", \"containerId\": "
             "%s,  \"exitCode\": %d, \"exitMessage\": \"%s\", "
             "\"resultObject\": \"[]\"}", agent, container, code, message);
    env = envelope(payload);

    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s %s", PROCESSING, env));
    snprintf(kind, sizeof(kind), "%s",
             pb_webhooks_handle(ctx, PROCESSING, env, strlen(env)) == 0
             ? "handled" : "error");

    r = pb_redis_cmd(ctx->redis, "LLEN %s", PROCESSING);
    if (r == NULL || r->integer != 0) {
        snprintf(kind, sizeof(kind), "left-in-processing");
    }
    freeReplyObject(r);
    free(env);

    return kind;
}


/* The outbox rows' "status" values, newest first, joined by spaces. */
static const char *
outbox_statuses(pb_ctx_t *ctx)
{
    static char  buf[1024];
    size_t       i;
    json_t      *row;
    redisReply  *r;

    buf[0] = '\0';
    r = pb_redis_cmd(ctx->redis, "LRANGE %s 0 -1", PB_KEY_OUTBOX);
    for (i = 0; r != NULL && i < r->elements; i++) {
        row = json_loads(r->element[i]->str, 0, NULL);
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s",
                 i ? " " : "", json_string_value(json_object_get(row,
                                                                 "status")));
        json_decref(row);
    }
    freeReplyObject(r);

    return buf;
}


static json_t *
outbox_row(pb_ctx_t *ctx, long i)
{
    json_t      *row = NULL;
    redisReply  *r = pb_redis_cmd(ctx->redis, "LINDEX %s %ld", PB_KEY_OUTBOX,
                                  i);

    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        row = json_loads(r->str, 0, NULL);
    }
    freeReplyObject(r);

    return row;
}


static void
test_slot_count(pb_ctx_t *ctx)
{
    pb_claim_t  a, b, c;

    reset(ctx, 2, 0);
    add(ctx, "j1", "A");
    add(ctx, "j2", "B");
    add(ctx, "j3", "C");

    CHECK(claim(ctx, &a) == PB_CLAIM_CLAIMED, "first claim");
    CHECK(claim(ctx, &b) == PB_CLAIM_CLAIMED, "second claim (max 2)");
    CHECK(claim(ctx, &c) == PB_CLAIM_FULL, "third refused: slots full");
    CHECK(strcmp(a.token, b.token) != 0 && atoll(b.token) > atoll(a.token),
          "fencing tokens increase");
    CHECK(test_int(ctx, "ZCARD %s", PB_KEY_JOBS_RUNNING) == 2,
          "two runs hold slots");

    reset(ctx, 2, 0);
    add(ctx, "j1", "A");
    add(ctx, "j2", "A");
    CHECK(claim(ctx, &a) == PB_CLAIM_CLAIMED, "claim agent A");
    CHECK(claim(ctx, &b) == PB_CLAIM_BUSY,
          "a second launch of the same agent waits for the first's answer");
}


static void
test_fencing(pb_ctx_t *ctx)
{
    pb_claim_t        old, now;
    pb_slot_result_t  sr;

    reset(ctx, 1, 0);
    add(ctx, "j1", "A");
    claim(ctx, &old);

    /* the monitor took the lease back (its worker looked dead) */
    CHECK(pb_slot_requeue(ctx, "j1", old.token, 0, "", "presumed dead", &sr)
          == 0 && strcmp(sr.kind, "requeued") == 0, "lease reclaimed");
    CHECK(claim(ctx, &now) == PB_CLAIM_CLAIMED, "someone else claims it");

    pb_slot_mark_launching(ctx, "j1", old.token, &sr);
    CHECK(strcmp(sr.kind, "fenced") == 0, "old holder cannot start a launch");
    pb_slot_record(ctx, "j1", old.token, "111", "launch", &sr);
    CHECK(strcmp(sr.kind, "fenced") == 0, "old holder cannot record");
    pb_slot_fail(ctx, "j1", old.token, 0, 0, "x", &sr);
    CHECK(strcmp(sr.kind, "fenced") == 0, "old holder cannot fail the job");
    pb_slot_requeue(ctx, "j1", old.token, 0, "", "x", &sr);
    CHECK(strcmp(sr.kind, "fenced") == 0, "old holder cannot free the slot");
    CHECK(test_int(ctx, "ZCARD %s", PB_KEY_JOBS_RUNNING) == 1,
          "the new holder's slot is intact");

    pb_slot_mark_launching(ctx, "j1", now.token, &sr);
    CHECK(strcmp(sr.kind, "ok") == 0, "new holder launches");
    pb_slot_record(ctx, "j1", now.token, "111", "launch", &sr);
    CHECK(strcmp(sr.kind, "recorded") == 0, "new holder records");
    CHECK(strcmp(outbox_statuses(ctx), "phantom_launched pending") == 0,
          "audit: pending then phantom_launched, once");
}


static void
test_webhook_paths(pb_ctx_t *ctx)
{
    pb_claim_t        c;
    pb_slot_result_t  sr;
    json_t           *row;
    const char       *payload;

    reset(ctx, 1, 0);
    add(ctx, "j1", "A");
    add(ctx, "j2", "A");
    claim(ctx, &c);
    pb_slot_mark_launching(ctx, "j1", c.token, &sr);
    pb_slot_record(ctx, "j1", c.token, "777", "launch", &sr);

    CHECK(strcmp(webhook(ctx, "777", "A", 0, "finished"), "handled") == 0,
          "webhook handled and removed from the processing list");
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j1", "status"),
                 "success") == 0, "exitCode 0 + finished = success");
    CHECK(test_int(ctx, "ZCARD %s", PB_KEY_JOBS_RUNNING) == 0, "slot freed");
    CHECK(strcmp(outbox_statuses(ctx),
                 "success webhook_received phantom_launched pending pending")
          == 0, "audit: webhook_received then success");

    row = outbox_row(ctx, 1);
    payload = json_string_value(json_object_get(row, "webhook_payload"));
    CHECK(payload != NULL && strstr(payload, "\"containerId\": 777,  ") != NULL,
          "payload stored byte for byte as sent");
    CHECK(json_object_get(json_object_get(row, "metadata"),
                          "webhook_received_at") != NULL,
          "metadata.webhook_received_at");
    json_decref(row);
    row = outbox_row(ctx, 0);
    CHECK(json_is_true(json_object_get(json_object_get(row, "metadata"),
                                       "next_job_queued")),
          "metadata.next_job_queued (j2 waits)");
    json_decref(row);

    CHECK(strcmp(webhook(ctx, "777", "A", 0, "finished"), "handled") == 0
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 5,
          "duplicate webhook: no-op, acknowledged");

    CHECK(strcmp(webhook(ctx, "999", "Z", 1, "killed"), "handled") == 0,
          "unknown container acknowledged");
    row = outbox_row(ctx, 0);
    CHECK(strcmp(json_string_value(json_object_get(row, "job_id")),
                 "container:999") == 0
          && strcmp(json_string_value(json_object_get(json_object_get(row,
                        "metadata"), "error")), "unknown container") == 0,
          "unknown container audited as such");
    json_decref(row);
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j2", "state"),
                 "pending") == 0, "and disturbs nothing");

    /* failed run */
    claim(ctx, &c);
    pb_slot_mark_launching(ctx, "j2", c.token, &sr);
    pb_slot_record(ctx, "j2", c.token, "778", "launch", &sr);
    webhook(ctx, "778", "A", 1, "finished");
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j2", "status"),
                 "failed") == 0, "exitCode 1 = failed");
    CHECK(strcmp(test_hget(ctx, PB_KEY_METRICS, "exit:finished"), "1") == 0,
          "failures counted by exit message");
}


static void
test_early_webhook(pb_ctx_t *ctx)
{
    pb_claim_t        c;
    pb_slot_result_t  sr;

    reset(ctx, 1, 0);
    add(ctx, "j1", "A");
    claim(ctx, &c);
    pb_slot_mark_launching(ctx, "j1", c.token, &sr);

    /* the run ended before our launch call returned */
    webhook(ctx, "555", "A", 0, "finished");
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j1", "early_container"),
                 "555") == 0, "early webhook held on the launching job");
    CHECK(test_int(ctx, "ZCARD %s", PB_KEY_JOBS_RUNNING) == 1,
          "slot still held");
    webhook(ctx, "555", "A", 0, "finished");
    CHECK(strcmp(test_hget(ctx, PB_KEY_METRICS, "webhooks_duplicate"), "1")
          == 0, "its duplicate is a no-op");

    pb_slot_record(ctx, "j1", c.token, "555", "launch", &sr);
    CHECK(strcmp(sr.kind, "completed") == 0 && strcmp(sr.detail, "success")
          == 0, "recording the launch completes it");
    CHECK(strcmp(outbox_statuses(ctx),
                 "success webhook_received phantom_launched pending") == 0,
          "audit in order: launched, webhook, success");
    CHECK(test_int(ctx, "ZCARD %s", PB_KEY_JOBS_RUNNING) == 0, "slot freed");

    /* an early webhook of another run of the same agent */
    add(ctx, "j2", "A");
    claim(ctx, &c);
    pb_slot_mark_launching(ctx, "j2", c.token, &sr);
    webhook(ctx, "600", "A", 0, "finished");
    pb_slot_record(ctx, "j2", c.token, "601", "launch", &sr);
    CHECK(strcmp(sr.kind, "recorded") == 0
          && strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j2", "state"),
                    "running") == 0, "not ours: the job keeps running");
    CHECK(strcmp(test_hget(ctx, PB_KEY_METRICS, "webhooks_unknown"), "1") == 0,
          "and the stray run is audited as unknown");
}


/* The slot's deadline (its running-set score), or -1. */
static long long
deadline_of(pb_ctx_t *ctx, const char *id)
{
    long long    v = -1;
    redisReply  *r = pb_redis_cmd(ctx->redis, "ZSCORE %s %s",
                                  PB_KEY_JOBS_RUNNING, id);

    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        v = strtoll(r->str, NULL, 10);
    }
    freeReplyObject(r);

    return v;
}


static void
test_doubt(pb_ctx_t *ctx)
{
    long long         at;
    pb_claim_t        c, c2;
    pb_slot_result_t  sr;

    reset(ctx, 1, 0);
    add(ctx, "j1", "A");
    add(ctx, "j2", "A");
    claim(ctx, &c);
    pb_slot_mark_launching(ctx, "j1", c.token, &sr);
    at = strtoll(test_hget(ctx, PB_KEY_JOB_PREFIX "j1", "launching_at"),
                 NULL, 10);

    pb_slot_doubt(ctx, "j1", c.token, 7000, "answer lost", &sr);
    CHECK(strcmp(sr.kind, "in_doubt") == 0
          && strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j1", "state"),
                    "launching") == 0
          && strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j1", "in_doubt"), "1")
             == 0, "answer lost: in doubt, still launching");
    CHECK(deadline_of(ctx, "j1") == at + 7000,
          "no relaunch before launching_at + grace");
    pb_slot_doubt(ctx, "j1", c.token, 60000, "again", &sr);
    CHECK(strcmp(sr.kind, "in_doubt") == 0
          && deadline_of(ctx, "j1") == at + 7000
          && strcmp(test_hget(ctx, PB_KEY_METRICS, "launches_in_doubt"), "1")
             == 0, "doubting twice keeps the first deadline, counts once");
    CHECK(claim(ctx, &c2) == PB_CLAIM_FULL
          && strcmp(test_hget(ctx, PB_KEY_LAUNCHING, "A"), "j1") == 0,
          "it keeps its slot and its agent's launching mark");
    CHECK(pb_slot_doubt(ctx, "j1", "bogus", 7000, "x", &sr) == 0
          && strcmp(sr.kind, "fenced") == 0, "doubt is fenced too");

    webhook(ctx, "42", "A", 0, "finished");
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j1", "status"),
                 "success") == 0
          && strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j1", "container"),
                    "42") == 0, "its webhook completes it at once");
    CHECK(strcmp(outbox_statuses(ctx),
                 "success webhook_received phantom_launched pending pending")
          == 0, "audit trail complete");

    pb_slot_finish(ctx, "j1", c.token, &(pb_outcome_t) { .status = "failed",
                   .found_by = "polling" }, &sr);
    CHECK(strcmp(sr.kind, "fenced") == 0,
          "a late monitor verdict cannot undo a completed run");

    /* not launched after all: back for a relaunch, doubt cleared */
    claim(ctx, &c);
    pb_slot_mark_launching(ctx, "j2", c.token, &sr);
    pb_slot_doubt(ctx, "j2", c.token, 7000, "answer lost", &sr);
    pb_slot_fail(ctx, "j2", c.token, 0, 5, "no run since the attempt", &sr);
    CHECK(strcmp(sr.kind, "retry") == 0 && strcmp(sr.detail, "1") == 0
          && test_hget(ctx, PB_KEY_JOB_PREFIX "j2", "in_doubt")[0] == '\0'
          && test_int(ctx, "HEXISTS %s A", PB_KEY_LAUNCHING) == 0,
          "relaunch: one attempt, doubt and launching mark cleared");
}


static void
test_retry_and_lane(pb_ctx_t *ctx)
{
    pb_claim_t        c;
    pb_slot_result_t  sr;

    reset(ctx, 1, 0);
    add(ctx, "j1", "A");
    add(ctx, "j2", "B");

    claim(ctx, &c);
    pb_slot_fail(ctx, "j1", c.token, 0, 3, "HTTP 503", &sr);
    CHECK(strcmp(sr.kind, "retry") == 0 && strcmp(sr.detail, "1") == 0,
          "5xx: attempt 1, retry");
    CHECK(claim(ctx, &c) == PB_CLAIM_CLAIMED && strcmp(c.job_id, "j1") == 0,
          "due retry is back at its old place, ahead of j2");
    pb_slot_fail(ctx, "j1", c.token, 60000, 3, "HTTP 503", &sr);
    CHECK(claim(ctx, &c) == PB_CLAIM_CLAIMED && strcmp(c.job_id, "j2") == 0,
          "a retry in backoff lets the next job go");
    pb_slot_requeue(ctx, "j2", c.token, 5000, "launch_429", "HTTP 429", &sr);
    CHECK(claim(ctx, &c) == PB_CLAIM_LANE_CLOSED && c.wait_ms > 4000
          && c.wait_ms <= 5000, "a 429 closes the lane for everyone");
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j2", "attempts"), "0")
          == 0 && test_int(ctx, "ZRANK %s j2", PB_KEY_JOBS_PENDING) == 0,
          "and costs the job neither an attempt nor its place");
    CHECK(strcmp(test_hget(ctx, PB_KEY_METRICS, "launch_429"), "1") == 0,
          "429 counted");

    freeReplyObject(pb_redis_cmd(ctx->redis, "DEL %s", PB_KEY_LANE_CLOSED));
    freeReplyObject(pb_redis_cmd(ctx->redis, "ZADD %s 0 j1",
                                 PB_KEY_JOBS_RETRY));
    CHECK(claim(ctx, &c) == PB_CLAIM_CLAIMED && strcmp(c.job_id, "j1") == 0,
          "j1 again, at its place");
    pb_slot_fail(ctx, c.job_id, c.token, 0, 3, "HTTP 503", &sr);
    CHECK(strcmp(sr.kind, "dead") == 0 && strcmp(sr.detail, "3") == 0,
          "third failure of 3 allowed: dead-lettered");
    CHECK(strcmp(outbox_statuses(ctx), "dead_lettered pending pending") == 0,
          "dead_lettered audited");
}


static void
test_throttle(pb_ctx_t *ctx)
{
    pb_claim_t        c;
    pb_slot_result_t  sr;

    reset(ctx, 5, 2);
    add(ctx, "j1", "A");
    add(ctx, "j2", "B");
    add(ctx, "j3", "C");

    CHECK(claim(ctx, &c) == PB_CLAIM_CLAIMED, "call 1 of 2 this minute");
    pb_slot_requeue(ctx, c.job_id, c.token, 0, "", "x", &sr);
    CHECK(claim(ctx, &c) == PB_CLAIM_CLAIMED, "call 2 of 2");
    CHECK(claim(ctx, &c) == PB_CLAIM_THROTTLED && c.wait_ms > 55000,
          "call 3 waits for the window");
    CHECK(test_int(ctx, "ZCARD %s", PB_KEY_JOBS_RUNNING) == 1,
          "a throttled claim takes no slot");
}


static void
test_recovery(pb_ctx_t *ctx)
{
    char  dead[256], *env;

    reset(ctx, 1, 0);
    add(ctx, "j1", "A");

    /* a worker that died holding an envelope */
    env = envelope("{\"agentId\":\"A\",\"containerId\":1,\"exitCode\":0,"
                   "\"exitMessage\":\"finished\"}");
    pb_processing_key(&test_cfg, "ghost", dead, sizeof(dead));
    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s %s", dead, env));
    freeReplyObject(pb_redis_cmd(ctx->redis, "SADD %s ghost",
                                 PB_KEY_WORKERS));
    pb_workers_reap(ctx);
    CHECK(test_int(ctx, "LLEN %s", dead) == 0
          && test_int(ctx, "LLEN %s", PB_DEFAULT_QUEUE) == 1,
          "dead worker's envelope back on the queue");
    CHECK(test_int(ctx, "SISMEMBER %s ghost", PB_KEY_WORKERS) == 0,
          "dead worker forgotten");

    /* our own leftover (a crash between BLMOVE and the apply) */
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT",
                                 PB_DEFAULT_QUEUE, PROCESSING));
    CHECK(pb_webhooks_step(ctx, 10) == 1
          && test_int(ctx, "LLEN %s", PROCESSING) == 0,
          "own leftover handled first");
    free(env);

    /* an envelope that is not one */
    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s %s", PB_DEFAULT_QUEUE,
                                 "{\"id\":\"x\"}"));
    CHECK(pb_webhooks_step(ctx, 10) == 1
          && test_int(ctx, "LLEN %s", PB_DEFAULT_QUEUE PB_INVALID_SUFFIX) == 1
          && test_int(ctx, "LLEN %s", PROCESSING) == 0,
          "invalid envelope parked, not lost, not blocking");
    CHECK(pb_webhooks_step(ctx, 10) == 0, "empty queue: nothing");
}


int
main(void)
{
    pb_ctx_t  *ctx = test_setup("test_slots");

    test_slot_count(ctx);
    test_fencing(ctx);
    test_webhook_paths(ctx);
    test_early_webhook(ctx);
    test_doubt(ctx);
    test_retry_and_lane(ctx);
    test_throttle(ctx);
    test_recovery(ctx);

    return CHECK_DONE("test_slots");
}
