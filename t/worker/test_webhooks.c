/*
 * The consuming end of the webhook queue, in batches: one step takes many
 * envelopes, handles them oldest first, this worker's leftovers before
 * anything new; a worker killed at random points mid-batch loses none and
 * applies none twice.  Envelopes are of containers no job owns: each
 * becomes one audit row naming its container, so the outbox shows what was
 * applied and in which order.
 */

#include "pb_envelope.h"
#include "pb_keys.h"
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
    test_killed(ctx, processing);

    return CHECK_DONE("test_webhooks");
}
