/*
 * The consuming end of the webhook queue, in batches: one step takes many
 * envelopes, handles them oldest first, this worker's leftovers before
 * anything new; a worker killed at random points mid-batch loses none and
 * applies none twice.  Envelopes are of containers no job owns: each
 * becomes one audit row naming its container, so the outbox shows what was
 * applied and in which order.
 */

#include "jobs.h"
#include "pb_envelope.h"
#include "pb_keys.h"
#include "slots.h"
#include "testkill.h"
#include "webhooks.h"
#include "workers.h"

#define QUEUE  PB_DEFAULT_QUEUE


/* LPUSHes the module's envelope of container (a run of agent 9). */
static void
queue_webhook(pb_ctx_t *ctx, long container)
{
    char    id[32], env[1024];
    size_t  n;

    snprintf(id, sizeof(id), "r%ld", container);
    n = pb_envelope_head(env, sizeof(env), id, strlen(id), 1700000000000LL,
                         QUEUE, strlen(QUEUE));
    snprintf(env + n, sizeof(env) - n, "{\"agentId\":\"9\",\"containerId\":"
             "%ld,\"exitCode\":0,\"exitMessage\":\"finished\"}}", container);

    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s %s", QUEUE, env));
}


/* 1 when the outbox holds exactly containers first..last, oldest first. */
static int
outbox_in_order(pb_ctx_t *ctx, long first, long last)
{
    int          ok;
    long         i, c;
    json_t      *row;
    const char  *s;
    redisReply  *r = pb_redis_cmd(ctx->redis, "LRANGE %s 0 -1",
                                  PB_KEY_OUTBOX);

    ok = r != NULL && r->type == REDIS_REPLY_ARRAY
         && (long) r->elements == last - first + 1;

    /* the newest row is at the head */
    for (i = 0; ok && i < (long) r->elements; i++) {
        row = json_loads(r->element[r->elements - 1 - i]->str, 0, NULL);
        s = json_string_value(json_object_get(row, "container_id"));
        c = s ? strtol(s, NULL, 10) : -1;
        ok = c == first + i;
        json_decref(row);
    }
    freeReplyObject(r);

    return ok;
}


static void
test_batches(pb_ctx_t *ctx, const char *processing)
{
    long  c;

    test_flush(ctx);
    for (c = 1; c <= 250; c++) {
        queue_webhook(ctx, c);
    }

    CHECK(pb_webhooks_step(ctx, 10) == 100, "one step: one batch of 100");
    CHECK(test_int(ctx, "LLEN %s", QUEUE) == 150
          && test_int(ctx, "LLEN %s", processing) == 0,
          "taken from the queue, none left in flight");
    CHECK(outbox_in_order(ctx, 1, 100), "applied oldest first");

    /* a crash mid-batch left three envelopes in our processing list */
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));
    CHECK(pb_webhooks_step(ctx, 10) == 100, "leftovers and new ones, 100");
    CHECK(outbox_in_order(ctx, 1, 200), "leftovers first, order kept");

    CHECK(pb_webhooks_step(ctx, 10) == 50, "the rest");
    CHECK(pb_webhooks_step(ctx, 10) == 0, "then nothing: waited, none came");
    CHECK(outbox_in_order(ctx, 1, 250), "every envelope once, in order");
    CHECK(strcmp(test_hget(ctx, PB_KEY_METRICS, "webhooks"), "250") == 0,
          "counted once each");

    /* an invalid envelope in a batch is parked, the others applied */
    queue_webhook(ctx, 251);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s %s", QUEUE,
                                 "{\"id\":\"x\"}"));
    queue_webhook(ctx, 252);
    CHECK(pb_webhooks_step(ctx, 10) == 3, "a batch with an invalid one");
    CHECK(test_int(ctx, "LLEN %s", QUEUE PB_INVALID_SUFFIX) == 1
          && outbox_in_order(ctx, 1, 252), "parked; the others applied");
}


/* The outbox's newest row, parsed (NULL when none). */
static json_t *
newest_row(pb_ctx_t *ctx)
{
    return test_json(ctx, "LINDEX %s 0", PB_KEY_OUTBOX);
}


/*
 * An envelope the module wrote is read without jansson; one of another
 * shape (keys in another order) with jansson.  Both come to the same.
 */
static void
test_two_readers(pb_ctx_t *ctx)
{
    static const char  payload[] = "{\"agentId\":\"9\",\"containerId\":77,"
        "\"exitCode\":0,\"exitMessage\":\"finished\",\"resultObject\":"
        "\"[{\\\"url\\\":\\\"https:\\\\/\\\\/x\\\"}]\"}";
    char         head[256], env[1024];
    size_t       n;
    json_t      *fast, *slow;
    const char  *keys[] = { "webhook_payload", "job_id", "agent_id",
                            "status", "container_id" };
    size_t       i;
    int          same = 1;

    test_flush(ctx);
    n = pb_envelope_head(head, sizeof(head), "r77", 3, 1700000000000LL,
                         QUEUE, strlen(QUEUE));
    snprintf(env, sizeof(env), "%.*s%s}", (int) n, head, payload);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s %s", QUEUE, env));
    CHECK(pb_webhooks_step(ctx, 10) == 1, "module envelope");
    fast = newest_row(ctx);

    snprintf(env, sizeof(env), "{\"queue\":\"%s\",\"received_at\":"
             "1700000000000,\"id\":\"r77\",\"payload\":%s}", QUEUE, payload);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s %s", QUEUE, env));
    CHECK(pb_webhooks_step(ctx, 10) == 1, "envelope of another shape");
    slow = newest_row(ctx);

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        same = same && fast != NULL && slow != NULL
               && json_equal(json_object_get(fast, keys[i]),
                             json_object_get(slow, keys[i]));
    }
    same = same && json_equal(json_object_get(fast, "metadata"),
                              json_object_get(slow, "metadata"));
    CHECK(same, "the same audit row either way");
    CHECK(fast != NULL && strcmp(json_string_value(json_object_get(fast,
          "webhook_payload")), payload) == 0, "the payload verbatim");
    json_decref(fast);
    json_decref(slow);
}


/*
 * A run's webhook with an exit message longer than the module's scanner
 * keeps: the worker still has all of it (jansson's reading).
 */
static void
test_long_exit_message(pb_ctx_t *ctx)
{
    char                 message[200], payload[512], head[256], env[1024];
    char                 metric[256];
    size_t               n;
    pb_enqueue_result_t  er;
    pb_claim_t           c;
    pb_slot_result_t     r;

    test_flush(ctx);
    test_cfg.max_running = 1;
    test_cfg.calls_per_minute = 0;
    memset(message, 'x', 150);
    message[150] = '\0';

    pb_job_enqueue(ctx, "long", "9", NULL, 0, "test", &er);
    CHECK(pb_slot_claim(ctx, 60000, &c) == 0 && c.kind == PB_CLAIM_CLAIMED
          && pb_slot_mark_launching(ctx, "long", c.token, &r) == 0
          && pb_slot_record(ctx, "long", c.token, "555", "launch", &r) == 0,
          "a running job");
    pb_claim_free(&c);

    snprintf(payload, sizeof(payload), "{\"agentId\":\"9\",\"containerId\":"
             "555,\"exitCode\":1,\"exitMessage\":\"%s\"}", message);
    n = pb_envelope_head(head, sizeof(head), "rl", 2, 1700000000000LL,
                         QUEUE, strlen(QUEUE));
    snprintf(env, sizeof(env), "%.*s%s}", (int) n, head, payload);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s %s", QUEUE, env));

    CHECK(pb_webhooks_step(ctx, 10) == 1, "its webhook");
    snprintf(metric, sizeof(metric), "exit:%s", message);
    CHECK(strcmp(test_hget(ctx, PB_KEY_METRICS, metric), "1") == 0,
          "the whole exit message, not a cut one");
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "long", "state"), "done")
          == 0, "the run completed");
}


/*
 * Envelopes that are no longer at the end of the processing list (a
 * worker that took us for dead put them back on the queue): nothing is
 * applied, nothing removed; they are the other worker's.
 */
static void
test_stale(pb_ctx_t *ctx, const char *processing)
{
    pb_outcome_t      o;
    pb_slot_result_t  r;

    test_flush(ctx);
    queue_webhook(ctx, 1);
    queue_webhook(ctx, 2);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));

    memset(&o, 0, sizeof(o));
    o.status = "success";
    o.container = "2";
    CHECK(pb_slot_webhook(ctx, processing, "not the oldest", "9", &o, &r)
          == 1, "stale: said so");
    CHECK(test_int(ctx, "LLEN %s", processing) == 1
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) <= 0
          && test_hget(ctx, PB_KEY_METRICS, "webhooks")[0] == '\0',
          "stale: nothing applied, nothing removed");
    CHECK(pb_webhooks_step(ctx, 10) == 2 && outbox_in_order(ctx, 1, 2),
          "the list's own envelopes still go through");
}


/*
 * A script error half way through a batch (here a job key of the wrong
 * type): the webhooks applied before it keep their audit rows, the batch
 * stays in the processing list and is applied again once the cause is
 * gone, which the ones already applied take as a no-op (one more
 * idempotent audit row for a container nobody owns).
 */
static void
test_error_half_way(pb_ctx_t *ctx, const char *processing)
{
    test_flush(ctx);
    queue_webhook(ctx, 1);
    queue_webhook(ctx, 2);
    queue_webhook(ctx, 3);
    freeReplyObject(pb_redis_cmd(ctx->redis, "HSET %s 2 broken",
                                 PB_KEY_CONTAINERS));
    freeReplyObject(pb_redis_cmd(ctx->redis, "SET %sbroken x",
                                 PB_KEY_JOB_PREFIX));

    CHECK(pb_webhooks_step(ctx, 10) == -1, "error: reported");
    CHECK(test_int(ctx, "LLEN %s", processing) == 3,
          "error: the batch is still in flight");
    CHECK(outbox_in_order(ctx, 1, 1),
          "error: the webhook applied before it kept its audit row");

    freeReplyObject(pb_redis_cmd(ctx->redis, "DEL %sbroken",
                                 PB_KEY_JOB_PREFIX));
    CHECK(pb_webhooks_step(ctx, 10) == 3
          && test_int(ctx, "LLEN %s", processing) == 0,
          "error gone: the batch goes through");
}


static void
consume_all(pb_ctx_t *ctx, void *arg)
{
    (void) arg;

    while (pb_webhooks_step(ctx, 10) > 0) {
        /* until killed or the queue is empty */
    }
}

static long long
queued(pb_ctx_t *ctx)
{
    return test_int(ctx, "LLEN %s", QUEUE);
}

/*
 * Workers killed at random moments while consuming (one worker id, as a
 * supervisor restarts it): every envelope is applied exactly once and in
 * order, in the end, whichever point each kill hit.
 */
static void
test_killed(pb_ctx_t *ctx, const char *processing)
{
    const long  n = 3000;
    long        c;
    int         kills;

    test_flush(ctx);
    for (c = 1; c <= n; c++) {
        queue_webhook(ctx, c);
    }

    kills = test_kill_loop(ctx, 200, 20, consume_all, NULL, queued);
    consume_all(ctx, NULL);

    CHECK(kills > 0, "workers were killed while consuming");
    CHECK(test_int(ctx, "LLEN %s", QUEUE) == 0
          && test_int(ctx, "LLEN %s", processing) == 0,
          "nothing left queued or in flight");
    CHECK(strtol(test_hget(ctx, PB_KEY_METRICS, "webhooks"), NULL, 10) == n
          && outbox_in_order(ctx, 1, n),
          "every envelope applied exactly once, in order");
}


int
main(void)
{
    char       processing[512];
    pb_ctx_t  *ctx = test_setup("test_webhooks");

    pb_processing_key(&test_cfg, test_cfg.worker_id, processing,
                      sizeof(processing));

    test_batches(ctx, processing);
    test_two_readers(ctx);
    test_long_exit_message(ctx);
    test_stale(ctx, processing);
    test_error_half_way(ctx, processing);
    test_killed(ctx, processing);

    return CHECK_DONE("test_webhooks");
}
