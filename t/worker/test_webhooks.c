/*
 * The consuming end of the webhook queue, in batches: one step takes many
 * envelopes, handles them oldest first, this worker's leftovers before
 * anything new; a worker killed at random points mid-batch loses none and
 * applies none twice.  Envelopes are of containers no job owns: each
 * becomes one audit row naming its container, so the outbox shows what was
 * applied and in which order; a redelivery the module left behind (its
 * dedupe marker names another delivery) becomes none.
 */

#include "jobs.h"
#include "pb_envelope.h"
#include "pb_keys.h"
#include "slots.h"
#include "testkill.h"
#include "webhooks.h"
#include "workers.h"

#define QUEUE  PB_DEFAULT_QUEUE


/* LPUSHes the module's envelope of container (a run of agent 9), with
 * the request id id. */
static void
queue_delivery(pb_ctx_t *ctx, long container, const char *id)
{
    char    env[1024];
    size_t  n;

    n = pb_envelope_head(env, sizeof(env), id, strlen(id), 1700000000000LL,
                         QUEUE, strlen(QUEUE));
    snprintf(env + n, sizeof(env) - n, "{\"agentId\":\"9\",\"containerId\":"
             "%ld,\"exitCode\":0,\"exitMessage\":\"finished\"}}", container);

    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s %s", QUEUE, env));
}


/* queue_delivery with the request id "r<container>". */
static void
queue_webhook(pb_ctx_t *ctx, long container)
{
    char  id[32];

    snprintf(id, sizeof(id), "r%ld", container);
    queue_delivery(ctx, container, id);
}


/*
 * One field of every outbox row, oldest row first, joined by spaces ("?"
 * for a row without it); malloc'd.
 */
static char *
outbox_values(pb_ctx_t *ctx, const char *field)
{
    char        *out, *p;
    size_t       i;
    json_t      *row;
    const char  *v;
    redisReply  *r = pb_redis_cmd(ctx->redis, "LRANGE %s 0 -1",
                                  PB_KEY_OUTBOX);

    i = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    out = p = calloc(1, 32 * i + 1);

    /* the newest row is at the head */
    for ( ; out != NULL && i > 0; i--) {
        row = json_loads(r->element[i - 1]->str, 0, NULL);
        v = json_string_value(json_object_get(row, field));
        p += snprintf(p, 32, "%s%.30s", p > out ? " " : "", v ? v : "?");
        json_decref(row);
    }
    freeReplyObject(r);

    return out;
}


/* 1 when the outbox holds exactly containers first..last, oldest first. */
static int
outbox_in_order(pb_ctx_t *ctx, long first, long last)
{
    char  *got = outbox_values(ctx, "container_id");
    char  *want = calloc(1, 24 * (size_t) (last - first + 1) + 1), *p = want;
    long   c;
    int    ok;

    for (c = first; want != NULL && c <= last; c++) {
        p += snprintf(p, 24, "%s%ld", c > first ? " " : "", c);
    }

    ok = got != NULL && want != NULL && strcmp(got, want) == 0;
    free(got);
    free(want);

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
 * 1 when the outbox's newest row, as text, ends with the payload as its
 * "webhook_payload" value, byte for byte (the worker writes the rows of
 * containers nobody owns itself, the payload inside as it came).
 */
static int
ends_with_payload(pb_ctx_t *ctx, const char *payload)
{
    char         tail[1024];
    redisReply  *r = pb_redis_cmd(ctx->redis, "LINDEX %s 0", PB_KEY_OUTBOX);
    size_t       n;
    int          ok;

    n = (size_t) snprintf(tail, sizeof(tail), "\"webhook_payload\":%s}",
                          payload);
    ok = r != NULL && r->type == REDIS_REPLY_STRING && r->len >= n
         && memcmp(r->str + r->len - n, tail, n) == 0;
    freeReplyObject(r);

    return ok;
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
    CHECK(ends_with_payload(ctx, payload), "the payload verbatim, as the "
          "row's JSON value");
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
 * Containers 1, 2 and 3 queued, 2 owned by a job whose key is of the
 * wrong type: the webhooks script fails on it.
 */
static void
broken_batch(pb_ctx_t *ctx)
{
    test_flush(ctx);
    queue_webhook(ctx, 1);
    queue_webhook(ctx, 2);
    queue_webhook(ctx, 3);
    freeReplyObject(pb_redis_cmd(ctx->redis, "HSET %s 2 broken",
                                 PB_KEY_CONTAINERS));
    freeReplyObject(pb_redis_cmd(ctx->redis, "SET %sbroken x",
                                 PB_KEY_JOB_PREFIX));
}


/*
 * A script error half way through a batch (here a job key of the wrong
 * type).  A step applies a batch in runs (containers nobody owns the
 * cheap way, the others through the webhooks script): the runs before the
 * failing one are applied and gone, the failing run and those after it
 * stay in the processing list and go through once the cause is gone.
 * Inside the webhooks script, the webhooks applied before the error keep
 * their audit rows and the whole run stays in the list, to be applied
 * again, which the ones already applied take as a no-op (one more
 * idempotent audit row for a container nobody owns).
 */
static void
test_error_half_way(pb_ctx_t *ctx, const char *processing)
{
    redisReply        *r;
    pb_webhook_t       w[3];
    pb_slot_result_t   res[3];
    char               containers[3][8];
    size_t             i;

    broken_batch(ctx);

    CHECK(pb_webhooks_step(ctx, 10) == -1, "error: reported");
    CHECK(test_int(ctx, "LLEN %s", processing) == 2,
          "error: the failing run and the one after it still in flight");
    CHECK(outbox_in_order(ctx, 1, 1),
          "error: the run before it applied, with its audit row");

    freeReplyObject(pb_redis_cmd(ctx->redis, "DEL %sbroken",
                                 PB_KEY_JOB_PREFIX));
    CHECK(pb_webhooks_step(ctx, 10) == 2
          && test_int(ctx, "LLEN %s", processing) == 0
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 2,
          "error gone: the rest goes through (2 a duplicate of the job "
          "that owns it, 3 audited)");

    /* the three through the webhooks script, as one run */
    broken_batch(ctx);
    for (i = 0; i < 3; i++) {
        freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT",
                                     QUEUE, processing));
    }

    r = pb_redis_cmd(ctx->redis, "LRANGE %s 0 -1", processing);
    memset(w, 0, sizeof(w));
    for (i = 0; r != NULL && r->elements == 3 && i < 3; i++) {
        snprintf(containers[i], sizeof(containers[i]), "%zu", i + 1);
        w[i].envelope = r->element[2 - i]->str;
        w[i].agent = "9";
        w[i].outcome.status = "success";
        w[i].outcome.container = containers[i];
        w[i].outcome.payload = "{}";
        w[i].outcome.found_by = "webhook";
    }

    CHECK(r != NULL && r->elements == 3
          && pb_slot_webhooks(ctx, processing, w, 3, res) == -1,
          "script error: reported");
    CHECK(test_int(ctx, "LLEN %s", processing) == 3,
          "script error: the whole run is still in flight");
    CHECK(outbox_in_order(ctx, 1, 1),
          "script error: the webhook applied before it kept its audit row");
    freeReplyObject(r);

    freeReplyObject(pb_redis_cmd(ctx->redis, "DEL %sbroken",
                                 PB_KEY_JOB_PREFIX));
    CHECK(pb_webhooks_step(ctx, 10) == 3
          && test_int(ctx, "LLEN %s", processing) == 0,
          "error gone: the run goes through");
}


/* A job "j<container>" of agent 9, running with that container. */
static void
running_job(pb_ctx_t *ctx, const char *container)
{
    char                 id[32];
    pb_enqueue_result_t  er;
    pb_claim_t           c;
    pb_slot_result_t     r;

    test_cfg.max_running = 5;
    test_cfg.calls_per_minute = 0;
    snprintf(id, sizeof(id), "j%s", container);
    pb_job_enqueue(ctx, id, "9", NULL, 0, "test", &er);
    CHECK(pb_slot_claim(ctx, 60000, &c) == 0 && c.kind == PB_CLAIM_CLAIMED
          && pb_slot_mark_launching(ctx, id, c.token, &r) == 0
          && pb_slot_record(ctx, id, c.token, container, "launch", &r) == 0,
          "a running job");
    pb_claim_free(&c);
}


/*
 * The cheap way (containers nobody owns: the worker's rows, a check in
 * Redis) and the full one (the webhooks script) in one batch: applied in
 * order, each run after the one before it.  When the look no longer holds
 * at the apply (a container claimed in between) or the list changed, the
 * cheap run takes its rows back and changes nothing; the next step applies
 * the webhook the full way.
 */
static void
test_runs(pb_ctx_t *ctx, const char *processing)
{
    pb_webhook_t      w;
    pb_slot_result_t  res;
    const char        seen = 1;
    redisReply       *r;
    long long         outbox;
    char             *jobs;

    /* a batch of three runs: nobody's, a running job's, nobody's */
    test_flush(ctx);
    running_job(ctx, "500");
    freeReplyObject(pb_redis_cmd(ctx->redis, "DEL %s", PB_KEY_OUTBOX));
    queue_webhook(ctx, 1);
    queue_webhook(ctx, 500);
    queue_webhook(ctx, 3);
    CHECK(pb_webhooks_step(ctx, 10) == 3
          && test_int(ctx, "LLEN %s", processing) == 0,
          "three runs, one step");
    jobs = outbox_values(ctx, "job_id");
    CHECK(jobs != NULL
          && strcmp(jobs, "container:1 j500 j500 container:3") == 0,
          "their audit rows in the order of the webhooks");
    free(jobs);
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j500", "state"), "done")
          == 0 && strcmp(test_hget(ctx, PB_KEY_METRICS, "webhooks"), "3")
          == 0 && strcmp(test_hget(ctx, PB_KEY_METRICS, "webhooks_unknown"),
                         "2") == 0,
          "the job completed, every webhook counted once");

    /* seen nobody's, but a job owns the container by the apply */
    test_flush(ctx);
    running_job(ctx, "600");
    queue_webhook(ctx, 600);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));
    outbox = test_int(ctx, "LLEN %s", PB_KEY_OUTBOX);
    r = pb_redis_cmd(ctx->redis, "LINDEX %s 0", processing);

    memset(&w, 0, sizeof(w));
    w.envelope = r != NULL ? r->str : "";
    w.agent = "9";
    w.outcome.status = "success";
    w.outcome.container = "600";
    w.outcome.payload = "{}";
    w.unknown_row = "{\"job_id\":\"container:600\",\"status\":"
                    "\"webhook_received\"}";

    CHECK(pb_slot_webhooks_seen(ctx, processing, &w, 1, &seen, &res) == 1
          && res.kind[0] == '\0', "owned by the apply: not applied");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == outbox
          && test_int(ctx, "LLEN %s", processing) == 1
          && test_hget(ctx, PB_KEY_METRICS, "webhooks")[0] == '\0',
          "owned: its row taken back, the envelope still in flight");
    CHECK(pb_webhooks_step(ctx, 10) == 1
          && strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j600", "state"),
                    "done") == 0
          && test_int(ctx, "LLEN %s", processing) == 0,
          "owned: the next step completes the job");

    /* seen nobody's, but no longer the oldest in the list */
    test_flush(ctx);
    queue_webhook(ctx, 1);
    queue_webhook(ctx, 2);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));
    freeReplyObject(r);
    r = pb_redis_cmd(ctx->redis, "LINDEX %s 0", processing);
    w.envelope = r != NULL ? r->str : "";
    w.outcome.container = "2";
    CHECK(pb_slot_webhooks_seen(ctx, processing, &w, 1, &seen, &res) == 1
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) <= 0
          && test_int(ctx, "LLEN %s", processing) == 2,
          "stale: its row taken back, nothing removed");
    CHECK(pb_webhooks_step(ctx, 10) == 2 && outbox_in_order(ctx, 1, 2),
          "stale: the list's own envelopes still go through");
    freeReplyObject(r);
}


/*
 * The row the worker writes for a container nobody owns is the row the
 * webhooks script writes (audit_unknown), but for the payload, which is
 * the row's JSON value rather than a string holding it.
 */
static void
test_same_row(pb_ctx_t *ctx, const char *processing)
{
    static const char  *fields[] = { "job_id", "agent_id", "status",
                                     "container_id", "metadata" };
    pb_outcome_t        o;
    pb_slot_result_t    res;
    json_t             *script, *worker, *payload;
    redisReply         *r;
    size_t              i;
    int                 same;

    test_flush(ctx);
    queue_webhook(ctx, 88);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));
    r = pb_redis_cmd(ctx->redis, "LINDEX %s 0", processing);
    memset(&o, 0, sizeof(o));
    o.status = "success";
    o.container = "88";
    o.exit_code = "0";
    o.exit_message = "finished";
    o.payload = "{\"agentId\":\"9\",\"containerId\":88,\"exitCode\":0,"
                "\"exitMessage\":\"finished\"}";
    o.received_at = "2023-11-14T22:13:20.000Z";
    o.found_by = "webhook";
    CHECK(r != NULL && pb_slot_webhook(ctx, processing, r->str, "9", &o,
                                       &res) == 0
          && strcmp(res.kind, "unknown") == 0, "the script's row");
    freeReplyObject(r);
    script = test_json(ctx, "LINDEX %s 0", PB_KEY_OUTBOX);

    queue_webhook(ctx, 88);
    CHECK(pb_webhooks_step(ctx, 10) == 1, "the worker's row");
    worker = test_json(ctx, "LINDEX %s 0", PB_KEY_OUTBOX);

    same = script != NULL && worker != NULL;
    for (i = 0; same && i < sizeof(fields) / sizeof(fields[0]); i++) {
        same = json_equal(json_object_get(script, fields[i]),
                          json_object_get(worker, fields[i]));
    }
    payload = json_loads(json_string_value(json_object_get(script,
                         "webhook_payload")), 0, NULL);
    CHECK(same && json_equal(payload, json_object_get(worker,
                                                      "webhook_payload")),
          "the same row either way");
    json_decref(payload);
    json_decref(script);
    json_decref(worker);
}


/* Sets the module's dedupe marker of container to id. */
static void
mark(pb_ctx_t *ctx, long container, const char *id)
{
    char  key[256], c[24];

    snprintf(c, sizeof(c), "%ld", container);
    pb_key_join(key, sizeof(key), QUEUE, PB_SEEN_INFIX, c);
    freeReplyObject(pb_redis_cmd(ctx->redis, "SET %s %s PX 60000", key, id));
}


/* A metric's value as a number (0 when absent). */
static long
metric(pb_ctx_t *ctx, const char *name)
{
    return strtol(test_hget(ctx, PB_KEY_METRICS, name), NULL, 10);
}


/*
 * A redelivery the module pushed, answered "duplicate" and could not take
 * back out (nginx died before its LREM): its container is nobody's and its
 * dedupe marker holds another request id, that of the first delivery.  It
 * is dropped, counted as a duplicate, with no audit row.  With the marker
 * its own, or none (dedupe off, window over), the webhook is audited as
 * an unknown container, as ever.  queue_webhook's envelope of container c
 * has the request id "r<c>".
 */
static void
test_seen(pb_ctx_t *ctx, const char *processing)
{
    char              *jobs;
    redisReply        *r;
    pb_webhook_t       w;
    pb_slot_result_t   res;

    /* (1) the marker holds another id */
    test_flush(ctx);
    queue_webhook(ctx, 41);
    mark(ctx, 41, "r-first");
    CHECK(pb_webhooks_step(ctx, 10) == 1, "seen: handled");
    CHECK(test_int(ctx, "LLEN %s", processing) == 0
          && test_int(ctx, "LLEN %s", QUEUE) == 0,
          "seen: its envelope gone from the processing list");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0,
          "seen: no audit row");
    CHECK(metric(ctx, "webhooks_duplicate") == 1
          && metric(ctx, "webhooks") == 1
          && metric(ctx, "webhooks_unknown") == 0,
          "seen: counted as a duplicate, not as unknown");

    /* (2) the marker is its own: the first delivery */
    test_flush(ctx);
    queue_webhook(ctx, 42);
    mark(ctx, 42, "r42");
    CHECK(pb_webhooks_step(ctx, 10) == 1
          && test_int(ctx, "LLEN %s", processing) == 0
          && outbox_in_order(ctx, 42, 42)
          && metric(ctx, "webhooks_unknown") == 1
          && metric(ctx, "webhooks_duplicate") == 0,
          "own marker: audited as an unknown container");

    /* (3) no marker (dedupe off, or its window over) */
    test_flush(ctx);
    queue_webhook(ctx, 43);
    CHECK(pb_webhooks_step(ctx, 10) == 1
          && test_int(ctx, "LLEN %s", processing) == 0
          && outbox_in_order(ctx, 43, 43)
          && metric(ctx, "webhooks_unknown") == 1
          && metric(ctx, "webhooks_duplicate") == 0,
          "no marker: audited as an unknown container");

    /* a marker key of another type counts as none */
    test_flush(ctx);
    queue_webhook(ctx, 44);
    freeReplyObject(pb_redis_cmd(ctx->redis, "HSET %s f v",
                                 QUEUE PB_SEEN_INFIX "44"));
    CHECK(pb_webhooks_step(ctx, 10) == 1
          && test_int(ctx, "LLEN %s", processing) == 0
          && outbox_in_order(ctx, 44, 44),
          "a marker of another type: as none");

    /*
     * (4) a batch of all of them and a running job's webhook (whose
     * marker is another's too: a job's container is matched as ever):
     * order and results kept
     */
    test_flush(ctx);
    running_job(ctx, "500");
    freeReplyObject(pb_redis_cmd(ctx->redis, "DEL %s", PB_KEY_OUTBOX));
    queue_webhook(ctx, 51);
    queue_webhook(ctx, 52);
    mark(ctx, 52, "r-first");
    queue_webhook(ctx, 500);
    mark(ctx, 500, "r-first");
    queue_webhook(ctx, 53);
    mark(ctx, 53, "r53");
    queue_webhook(ctx, 54);
    mark(ctx, 54, "r-first");
    queue_webhook(ctx, 55);
    CHECK(pb_webhooks_step(ctx, 10) == 6
          && test_int(ctx, "LLEN %s", processing) == 0
          && test_int(ctx, "LLEN %s", QUEUE) == 0, "mixed: one step");
    jobs = outbox_values(ctx, "job_id");
    CHECK(jobs != NULL && strcmp(jobs, "container:51 j500 j500 container:53 "
                                 "container:55") == 0,
          "mixed: the audit rows in order, none for the duplicates");
    free(jobs);
    CHECK(strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "j500", "state"), "done")
          == 0 && metric(ctx, "webhooks") == 6
          && metric(ctx, "webhooks_unknown") == 3
          && metric(ctx, "webhooks_duplicate") == 2
          && metric(ctx, "completed_success") == 1,
          "mixed: the job completed, each counted once, as what it was");

    /* an envelope of another shape (jansson's reading) is checked too */
    test_flush(ctx);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s {\"queue\":\"%s\","
        "\"received_at\":1700000000000,\"id\":\"r61\",\"payload\":"
        "{\"agentId\":\"9\",\"containerId\":61,\"exitCode\":0,"
        "\"exitMessage\":\"finished\"}}", QUEUE, QUEUE));
    mark(ctx, 61, "r-first");
    CHECK(pb_webhooks_step(ctx, 10) == 1
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0
          && metric(ctx, "webhooks_duplicate") == 1,
          "seen: an envelope of another shape too");

    /* the result, as the step logs it */
    test_flush(ctx);
    queue_webhook(ctx, 62);
    mark(ctx, 62, "r-first");
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));
    r = pb_redis_cmd(ctx->redis, "LINDEX %s 0", processing);
    memset(&w, 0, sizeof(w));
    w.envelope = r != NULL && r->type == REDIS_REPLY_STRING ? r->str : "";
    w.agent = "9";
    w.outcome.status = "success";
    w.outcome.container = "62";
    w.outcome.payload = "{}";
    w.unknown_row = "{\"job_id\":\"container:62\"}";
    w.seen_key = QUEUE PB_SEEN_INFIX "62";
    w.request_id = "r62";
    CHECK(pb_slot_webhooks(ctx, processing, &w, 1, &res) == 0
          && strcmp(res.kind, "duplicate") == 0
          && strcmp(res.detail, "seen") == 0
          && test_int(ctx, "LLEN %s", processing) == 0
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0,
          "seen: the result is duplicate (detail seen)");
    freeReplyObject(r);
}


/*
 * The look and the apply disagree about a marker.  Only the webhooks
 * script (the full way) drops a webhook by its marker, reading it in its
 * atomic step; the cheap way only keeps.  And a stale redelivery for an
 * agent with a launch in flight is not held as that launch's webhook.
 */
static void
test_seen_races(pb_ctx_t *ctx, const char *processing)
{
    pb_webhook_t         w;
    pb_slot_result_t     res;
    pb_enqueue_result_t  er;
    pb_claim_t           c;
    redisReply          *r = NULL;
    const char           fast = 1, full = 0;

    memset(&w, 0, sizeof(w));
    w.agent = "9";
    w.outcome.status = "success";
    w.outcome.payload = "{}";
    w.outcome.found_by = "webhook";
    w.request_id = "r70";
    w.unknown_row = "{\"job_id\":\"container:70\"}";
    w.outcome.container = "70";
    w.seen_key = QUEUE PB_SEEN_INFIX "70";

    /* seen another's by the look, expired by the apply: audited */
    test_flush(ctx);
    queue_webhook(ctx, 70);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));
    r = pb_redis_cmd(ctx->redis, "LINDEX %s 0", processing);
    w.envelope = r != NULL && r->type == REDIS_REPLY_STRING ? r->str : "";
    CHECK(pb_slot_webhooks_seen(ctx, processing, &w, 1, &full, &res) == 0
          && strcmp(res.kind, "unknown") == 0
          && outbox_in_order(ctx, 70, 70)
          && test_int(ctx, "LLEN %s", processing) == 0,
          "marker gone by the apply: the script audits it as unknown");

    /* the full way with its own marker: audited, as the cheap way would */
    test_flush(ctx);
    queue_webhook(ctx, 70);
    mark(ctx, 70, "r70");
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));
    CHECK(pb_slot_webhooks_seen(ctx, processing, &w, 1, &full, &res) == 0
          && strcmp(res.kind, "unknown") == 0
          && outbox_in_order(ctx, 70, 70)
          && metric(ctx, "webhooks_duplicate") == 0,
          "own marker, the full way: the script audits it as unknown");

    /* seen its own by the look, another's by the apply: the cheap way
     * keeps it (one more row at worst, never a loss) */
    test_flush(ctx);
    queue_webhook(ctx, 70);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LMOVE %s %s RIGHT LEFT", QUEUE,
                                 processing));
    mark(ctx, 70, "r-newer");
    CHECK(pb_slot_webhooks_seen(ctx, processing, &w, 1, &fast, &res) == 0
          && strcmp(res.kind, "unknown") == 0
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 1
          && test_int(ctx, "LLEN %s", processing) == 0,
          "marker changed after the look: the cheap way keeps it");
    freeReplyObject(r);

    /* another's marker, the agent launching: dropped, not held early */
    test_flush(ctx);
    test_cfg.max_running = 1;
    test_cfg.calls_per_minute = 0;
    pb_job_enqueue(ctx, "jl", "9", NULL, 0, "test", &er);
    CHECK(pb_slot_claim(ctx, 60000, &c) == 0 && c.kind == PB_CLAIM_CLAIMED
          && pb_slot_mark_launching(ctx, "jl", c.token, &res) == 0,
          "a launching job of agent 9");
    pb_claim_free(&c);
    freeReplyObject(pb_redis_cmd(ctx->redis, "DEL %s", PB_KEY_OUTBOX));
    queue_webhook(ctx, 71);
    mark(ctx, 71, "r-first");
    CHECK(pb_webhooks_step(ctx, 10) == 1
          && test_int(ctx, "LLEN %s", processing) == 0
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0
          && test_hget(ctx, PB_KEY_JOB_PREFIX "jl", "early_container")[0]
             == '\0'
          && metric(ctx, "webhooks_duplicate") == 1,
          "launching agent: the stale redelivery dropped, not held early");
    queue_webhook(ctx, 72);
    mark(ctx, 72, "r72");
    CHECK(pb_webhooks_step(ctx, 10) == 1
          && strcmp(test_hget(ctx, PB_KEY_JOB_PREFIX "jl", "early_container"),
                    "72") == 0
          && metric(ctx, "webhooks_duplicate") == 1,
          "and one whose marker is its own is held, as ever");
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


/*
 * test_killed with redeliveries left behind: each container's first
 * delivery, its marker, and a redelivery the module could not take back;
 * every fifth container's marker expired and was set again by a newer
 * delivery, queued after it (the first one is then the duplicate).  Batches
 * of alternating runs, the cheap way and the full one.  Whichever points
 * the kills hit, each container is audited exactly once, in order, and
 * every other copy counted as a duplicate.
 */
static void
test_killed_seen(pb_ctx_t *ctx, const char *processing)
{
    const long  n = 1000;
    char        id[32];
    long        c;
    int         kills;

    test_flush(ctx);
    for (c = 1; c <= n; c++) {
        queue_webhook(ctx, c);
        if (c % 5 == 0) {
            snprintf(id, sizeof(id), "n%ld", c);
            mark(ctx, c, id);
        } else {
            snprintf(id, sizeof(id), "r%ld", c);
            mark(ctx, c, id);
            snprintf(id, sizeof(id), "d%ld", c);
        }
        queue_delivery(ctx, c, id);
    }

    kills = test_kill_loop(ctx, 200, 20, consume_all, NULL, queued);
    consume_all(ctx, NULL);

    CHECK(kills > 0, "seen, killed: workers were killed while consuming");
    CHECK(test_int(ctx, "LLEN %s", QUEUE) == 0
          && test_int(ctx, "LLEN %s", processing) == 0,
          "seen, killed: nothing left queued or in flight");
    CHECK(outbox_in_order(ctx, 1, n),
          "seen, killed: every container audited exactly once, in order");
    CHECK(metric(ctx, "webhooks") == 2 * n
          && metric(ctx, "webhooks_duplicate") == n
          && metric(ctx, "webhooks_unknown") == n,
          "seen, killed: every copy counted once, as what it was");
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
    test_runs(ctx, processing);
    test_same_row(ctx, processing);
    test_seen(ctx, processing);
    test_seen_races(ctx, processing);
    test_killed(ctx, processing);
    test_killed_seen(ctx, processing);

    return CHECK_DONE("test_webhooks");
}
