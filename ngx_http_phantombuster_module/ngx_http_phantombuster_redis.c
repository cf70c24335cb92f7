
/*
 * Copyright (C) The phantombuster module authors
 *
 * hiredis's async API wired into nginx's event loop: one persistent
 * connection per worker and Redis server, shared by every request of that
 * worker (their pushes are pipelined), reconnected with capped backoff and
 * jitter.  hiredis 0.14 has no timers of its own: the connect timeout here
 * and the per-request reply timeout in the handler are nginx timers.
 *
 * Ownership rules that keep this safe:
 *
 *  - hiredis owns the socket and closes it in redisFree(); our cleanup hook
 *    only gives back nginx's connection slot and sets its fd to -1, so the
 *    descriptor is never closed twice;
 *  - the context can be freed from inside any redisAsyncHandle*() call, so
 *    the event handlers never touch it, or the connection, afterwards;
 *  - events are registered level-triggered: hiredis reads at most 16 KiB
 *    per call, and a level-triggered descriptor is reported again for
 *    whatever was left, where an edge-triggered one would not be;
 *  - a request is never hiredis's privdata: an op is, and the request's
 *    cleanup detaches it (see ngx_http_phantombuster_redis.h).
 *
 * Pushes are batched: every webhook accepted during one event loop
 * iteration joins the worker's batch, and a posted event, which nginx runs
 * once that iteration's I/O handlers are done, sends the whole batch as
 * one call of the push script.  Redis then pays one script call, one
 * command parse and one reply per batch instead of per webhook, and no
 * webhook waits longer than it would have alone: the batch goes out in
 * the same iteration as its last member.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "pb_keys.h"
#include "ngx_http_phantombuster_redis.h"
#include "ngx_http_phantombuster_status.h"


#define NGX_HTTP_PHANTOMBUSTER_BACKOFF_MIN  100
#define NGX_HTTP_PHANTOMBUSTER_BACKOFF_MAX  5000
#define NGX_HTTP_PHANTOMBUSTER_MAX_ARGS     32

/* a batch goes out early once its envelopes reach this size */
#define NGX_HTTP_PHANTOMBUSTER_BATCH_SIZE   ((size_t) 1024 * 1024)

/* the push script's argv: command, script, numkeys, queue, dedupe, max */
#define NGX_HTTP_PHANTOMBUSTER_BATCH_ARGS   (6 + 3 * PB_PUSH_BATCH_MAX)


static ngx_int_t ngx_http_phantombuster_redis_ensure(
    ngx_http_phantombuster_redis_t *rs);
static ngx_int_t ngx_http_phantombuster_redis_connect(
    ngx_http_phantombuster_redis_t *rs);
static void ngx_http_phantombuster_redis_setup(
    ngx_http_phantombuster_redis_t *rs, redisAsyncContext *ac);
static void ngx_http_phantombuster_redis_setup_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_phantombuster_redis_connected(
    const redisAsyncContext *ac, int status);
static void ngx_http_phantombuster_redis_disconnected(
    const redisAsyncContext *ac, int status);
static ngx_http_phantombuster_batch_t *ngx_http_phantombuster_redis_batch(
    ngx_http_phantombuster_redis_t *rs, ngx_http_phantombuster_op_t *op,
    size_t size);
static ngx_uint_t ngx_http_phantombuster_redis_joins(
    ngx_http_phantombuster_op_t *batch, ngx_http_phantombuster_op_t *op);
static void ngx_http_phantombuster_redis_flush_handler(ngx_event_t *ev);
static void ngx_http_phantombuster_redis_flush(
    ngx_http_phantombuster_redis_t *rs);
static void ngx_http_phantombuster_redis_flush_batch(
    ngx_http_phantombuster_redis_t *rs, ngx_http_phantombuster_batch_t *b);
static ngx_int_t ngx_http_phantombuster_redis_send(
    ngx_http_phantombuster_redis_t *rs, redisAsyncContext *ac,
    ngx_http_phantombuster_op_t *batch);
static ngx_uint_t ngx_http_phantombuster_redis_length(
    ngx_http_phantombuster_op_t *batch);
static ngx_uint_t ngx_http_phantombuster_redis_off(
    ngx_http_phantombuster_op_t *op, ngx_uint_t arg);
static ngx_int_t ngx_http_phantombuster_redis_transaction(
    ngx_http_phantombuster_redis_t *rs, redisAsyncContext *ac,
    ngx_http_phantombuster_op_t *batch);
static void ngx_http_phantombuster_redis_exec_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static ngx_int_t ngx_http_phantombuster_redis_unpush(
    ngx_http_phantombuster_redis_t *rs, redisAsyncContext *ac,
    ngx_http_phantombuster_op_t *batch, ngx_uint_t duplicates);
static void ngx_http_phantombuster_redis_unpush_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static ngx_int_t ngx_http_phantombuster_redis_script(
    ngx_http_phantombuster_redis_t *rs, redisAsyncContext *ac,
    ngx_http_phantombuster_op_t *batch, ngx_uint_t eval);
static void ngx_http_phantombuster_redis_script_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static redisReply *ngx_http_phantombuster_redis_array(
    ngx_http_phantombuster_redis_t *rs, redisReply *rr);
static void ngx_http_phantombuster_redis_answer(
    ngx_http_phantombuster_op_t *batch);
static ngx_int_t ngx_http_phantombuster_redis_argv(
    ngx_http_phantombuster_redis_t *rs, redisAsyncContext *ac,
    redisCallbackFn *fn, ngx_http_phantombuster_op_t *op, int argc,
    const char **argv, const size_t *len);
static ngx_uint_t ngx_http_phantombuster_redis_noscript(redisReply *rr);
static ngx_int_t ngx_http_phantombuster_redis_send_command(
    ngx_http_phantombuster_redis_t *rs, redisAsyncContext *ac,
    ngx_http_phantombuster_op_t *op);
static void ngx_http_phantombuster_redis_command_reply(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_phantombuster_redis_read_handler(ngx_event_t *ev);
static void ngx_http_phantombuster_redis_write_handler(ngx_event_t *ev);
static void ngx_http_phantombuster_redis_add_read(void *privdata);
static void ngx_http_phantombuster_redis_del_read(void *privdata);
static void ngx_http_phantombuster_redis_add_write(void *privdata);
static void ngx_http_phantombuster_redis_del_write(void *privdata);
static void ngx_http_phantombuster_redis_cleanup(void *privdata);
static void ngx_http_phantombuster_redis_connect_timeout(ngx_event_t *ev);
static void ngx_http_phantombuster_redis_reconnect(ngx_event_t *ev);
static void ngx_http_phantombuster_redis_schedule(
    ngx_http_phantombuster_redis_t *rs);


void
ngx_http_phantombuster_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_phantombuster_redis_t *rs)
{
    rs->log = cycle->log;
    rs->ac = NULL;
    rs->connection = NULL;
    rs->backoff = 0;
    rs->generation = 0;
    rs->ready = 0;
    rs->exiting = 0;

    rs->connect_timer.handler = ngx_http_phantombuster_redis_connect_timeout;
    rs->connect_timer.data = rs;
    rs->connect_timer.log = cycle->log;
    rs->connect_timer.cancelable = 1;

    rs->reconnect_timer.handler = ngx_http_phantombuster_redis_reconnect;
    rs->reconnect_timer.data = rs;
    rs->reconnect_timer.log = cycle->log;
    rs->reconnect_timer.cancelable = 1;

    rs->nbatches = 0;

    rs->flush.handler = ngx_http_phantombuster_redis_flush_handler;
    rs->flush.data = rs;
    rs->flush.log = cycle->log;

    (void) ngx_http_phantombuster_redis_connect(rs);
}


void
ngx_http_phantombuster_redis_exit_process(ngx_http_phantombuster_redis_t *rs)
{
    if (rs->log == NULL) {
        /* never started in this process */
        return;
    }

    rs->exiting = 1;

    if (rs->reconnect_timer.timer_set) {
        ngx_del_timer(&rs->reconnect_timer);
    }

    if (rs->connect_timer.timer_set) {
        ngx_del_timer(&rs->connect_timer);
    }

    if (rs->flush.posted) {
        ngx_delete_posted_event(&rs->flush);
    }

    /* nobody waits for it any more; it still goes out if it can */

    ngx_http_phantombuster_redis_flush(rs);

    if (rs->ac) {
        /* fails whatever is pending, runs the cleanup hook, closes the fd */
        redisAsyncFree(rs->ac);
    }
}


/*
 * Returns NGX_OK when the push has joined the batch (the op now belongs to
 * this side), NGX_DECLINED when there is no usable connection (the caller
 * keeps the op and answers 503 at once).
 */

ngx_int_t
ngx_http_phantombuster_redis_push(ngx_http_phantombuster_redis_t *rs,
    ngx_http_phantombuster_op_t *op)
{
    size_t                           size;
    ngx_http_phantombuster_batch_t  *b;

    if (ngx_http_phantombuster_redis_ensure(rs) != NGX_OK) {
        return NGX_DECLINED;
    }

    size = op->args[NGX_HTTP_PHANTOMBUSTER_ARG_ENVELOPE].len;

    b = ngx_http_phantombuster_redis_batch(rs, op, size);

    op->redis = rs;
    op->generation = rs->generation;
    op->start = ngx_current_msec;
    op->next = NULL;
    op->result = NGX_HTTP_PHANTOMBUSTER_UNAVAILABLE;

    if (b->first == NULL) {
        b->last = &b->first;
    }

    *b->last = op;
    b->last = &op->next;
    b->n++;
    b->size += size;

    if (!rs->flush.posted) {
        ngx_post_event(&rs->flush, &ngx_posted_events);
    }

    return NGX_OK;
}


/*
 * The batch the push joins.  A batch that cannot take it goes out now,
 * without it: an op is never answered from inside its own push call,
 * before its request has started to wait.
 */

static ngx_http_phantombuster_batch_t *
ngx_http_phantombuster_redis_batch(ngx_http_phantombuster_redis_t *rs,
    ngx_http_phantombuster_op_t *op, size_t size)
{
    ngx_uint_t                       i;
    ngx_http_phantombuster_batch_t  *b, *empty;

    empty = NULL;

    for (i = 0; i < rs->nbatches; i++) {
        b = &rs->batches[i];

        if (b->first == NULL) {
            /* sent early; taken only if no batch of this queue is waiting */
            empty = empty ? empty : b;
            continue;
        }

        if (ngx_http_phantombuster_redis_joins(b->first, op)) {
            if (b->n == PB_PUSH_BATCH_MAX
                || b->size + size > NGX_HTTP_PHANTOMBUSTER_BATCH_SIZE)
            {
                ngx_http_phantombuster_redis_flush_batch(rs, b);
            }

            return b;
        }
    }

    if (empty) {
        return empty;
    }

    if (rs->nbatches < NGX_HTTP_PHANTOMBUSTER_BATCHES) {
        b = &rs->batches[rs->nbatches++];
        b->first = NULL;
        b->n = 0;
        b->size = 0;

        return b;
    }

    /* more queues in one iteration than batches: the first one goes now */

    b = &rs->batches[0];
    ngx_http_phantombuster_redis_flush_batch(rs, b);

    return b;
}


/* One script call serves one queue with one dedupe window and one limit. */

static ngx_uint_t
ngx_http_phantombuster_redis_joins(ngx_http_phantombuster_op_t *batch,
    ngx_http_phantombuster_op_t *op)
{
    static const ngx_uint_t  shared[] = {
        NGX_HTTP_PHANTOMBUSTER_ARG_QUEUE,
        NGX_HTTP_PHANTOMBUSTER_ARG_DEDUPE,
        NGX_HTTP_PHANTOMBUSTER_ARG_MAX
    };

    ngx_uint_t   i;
    ngx_str_t   *a, *b;

    for (i = 0; i < sizeof(shared) / sizeof(shared[0]); i++) {
        a = &batch->args[shared[i]];
        b = &op->args[shared[i]];

        if (a->len != b->len || ngx_memcmp(a->data, b->data, a->len) != 0) {
            return 0;
        }
    }

    return 1;
}


/*
 * The write interest hiredis asks for while the batches are formatted is
 * held back, and what they add up to is written right away, at the end of
 * the event loop pass that accepted them: not one pass later, after the
 * write event has been added and reported, and without adding and
 * deleting that event for every batch.  What the socket does not take
 * waits for the write event as before; a connection still being opened
 * gets its write event, which tells when it is open.
 */

static void
ngx_http_phantombuster_redis_flush_handler(ngx_event_t *ev)
{
    ngx_http_phantombuster_redis_t *rs = ev->data;

    rs->holding_write = 1;

    ngx_http_phantombuster_redis_flush(rs);

    rs->holding_write = 0;

    if (!rs->write_held) {
        return;
    }

    rs->write_held = 0;

    if (rs->ac == NULL) {
        return;
    }

    if (rs->ac->c.flags & REDIS_CONNECTED) {
        /* may free the context and, through cleanup, the connection */
        redisAsyncHandleWrite(rs->ac);
        return;
    }

    ngx_http_phantombuster_redis_add_write(rs);
}


static void
ngx_http_phantombuster_redis_flush(ngx_http_phantombuster_redis_t *rs)
{
    ngx_uint_t  i;

    for (i = 0; i < rs->nbatches; i++) {
        ngx_http_phantombuster_redis_flush_batch(rs, &rs->batches[i]);
    }

    rs->nbatches = 0;
}


/*
 * Sends one batch and empties it.  When it cannot go (no connection, or
 * one that is closing), its requests are told at once: they answer 503.
 */

static void
ngx_http_phantombuster_redis_flush_batch(ngx_http_phantombuster_redis_t *rs,
    ngx_http_phantombuster_batch_t *b)
{
    ngx_http_phantombuster_op_t  *first;

    first = b->first;

    b->first = NULL;
    b->n = 0;
    b->size = 0;

    if (first == NULL) {
        return;
    }

    if (ngx_http_phantombuster_redis_ensure(rs) != NGX_OK
        || ngx_http_phantombuster_redis_send(rs, rs->ac, first) != NGX_OK)
    {
        ngx_http_phantombuster_redis_answer(first);
    }
}


/* The same contract for any other command (op->argv, op->reply). */

ngx_int_t
ngx_http_phantombuster_redis_command(ngx_http_phantombuster_redis_t *rs,
    ngx_http_phantombuster_op_t *op)
{
    if (ngx_http_phantombuster_redis_ensure(rs) != NGX_OK) {
        return NGX_DECLINED;
    }

    op->redis = rs;
    op->generation = rs->generation;

    return ngx_http_phantombuster_redis_send_command(rs, rs->ac, op);
}


static ngx_int_t
ngx_http_phantombuster_redis_ensure(ngx_http_phantombuster_redis_t *rs)
{
    if (rs->ac) {
        return NGX_OK;
    }

    if (ngx_exiting || ngx_quit || ngx_terminate || rs->exiting) {
        return NGX_DECLINED;
    }

    /*
     * A request does not wait for the backoff: Redis may be back already,
     * and this is the cheapest way to find out.  A refused connect fails
     * at once; one in progress is bounded by the connect timer and by the
     * request's own timer.
     */

    if (rs->reconnect_timer.timer_set) {
        ngx_del_timer(&rs->reconnect_timer);
    }

    if (ngx_http_phantombuster_redis_connect(rs) != NGX_OK) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * A request gave up waiting for its reply.  If it was sent on the current
 * connection, that connection is stuck (or Redis is): drop it, which fails
 * every push still pending on it at once, and reconnect.
 */

void
ngx_http_phantombuster_redis_stalled(ngx_http_phantombuster_redis_t *rs,
    ngx_uint_t generation, ngx_msec_t timeout)
{
    ngx_http_phantombuster_count_redis(NGX_HTTP_PHANTOMBUSTER_REDIS_TIMEOUT);

    if (rs->ac == NULL || rs->generation != generation) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                  "phantombuster: redis \"%V\" did not reply within %M ms, "
                  "closing the connection", &rs->name, timeout);

    redisAsyncFree(rs->ac);
}


static ngx_int_t
ngx_http_phantombuster_redis_connect(ngx_http_phantombuster_redis_t *rs)
{
    ngx_connection_t   *c;
    redisAsyncContext  *ac;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rs->log, 0,
                   "phantombuster: connecting to redis \"%V\"", &rs->name);

    if (rs->is_unix) {
        ac = redisAsyncConnectUnix((char *) rs->host.data);

    } else {
        ac = redisAsyncConnect((char *) rs->host.data, rs->port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ALERT, rs->log, 0,
                      "phantombuster: redisAsyncConnect() failed");
        ngx_http_phantombuster_redis_schedule(rs);
        return NGX_ERROR;
    }

    if (ac->err) {
        ngx_http_phantombuster_count_redis(
                                        NGX_HTTP_PHANTOMBUSTER_REDIS_CONNECT);
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "phantombuster: could not connect to redis \"%V\": %s",
                      &rs->name, ac->errstr);
        redisAsyncFree(ac);
        ngx_http_phantombuster_redis_schedule(rs);
        return NGX_ERROR;
    }

    if (!rs->is_unix) {
        /* a peer that vanishes without a FIN is noticed eventually */
        (void) redisEnableKeepAlive(&ac->c);
    }

    c = ngx_get_connection(ac->c.fd, rs->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_phantombuster_redis_schedule(rs);
        return NGX_ERROR;
    }

    c->data = rs;
    c->read->handler = ngx_http_phantombuster_redis_read_handler;
    c->write->handler = ngx_http_phantombuster_redis_write_handler;
    c->read->log = rs->log;
    c->write->log = rs->log;

    ac->data = rs;
    ac->ev.data = rs;
    ac->ev.addRead = ngx_http_phantombuster_redis_add_read;
    ac->ev.delRead = ngx_http_phantombuster_redis_del_read;
    ac->ev.addWrite = ngx_http_phantombuster_redis_add_write;
    ac->ev.delWrite = ngx_http_phantombuster_redis_del_write;
    ac->ev.cleanup = ngx_http_phantombuster_redis_cleanup;

    rs->ac = ac;
    rs->connection = c;
    rs->generation++;
    rs->ready = 0;

    /* waits for the first write event, i.e. for connect() to complete */

    redisAsyncSetConnectCallback(ac, ngx_http_phantombuster_redis_connected);
    redisAsyncSetDisconnectCallback(ac,
                                    ngx_http_phantombuster_redis_disconnected);

    ngx_add_timer(&rs->connect_timer, rs->connect_timeout);

    /* pipelined ahead of any push: they are all sent once connected */

    ngx_http_phantombuster_redis_setup(rs, ac);

    return NGX_OK;
}


static void
ngx_http_phantombuster_redis_setup(ngx_http_phantombuster_redis_t *rs,
    redisAsyncContext *ac)
{
    u_char       db[NGX_INT_T_LEN];
    size_t       len[3];
    ngx_uint_t   n;
    const char  *argv[3];

    if (rs->password.len) {
        argv[0] = "AUTH";
        len[0] = 4;
        n = 1;

        if (rs->user.len) {
            argv[n] = (const char *) rs->user.data;
            len[n++] = rs->user.len;
        }

        argv[n] = (const char *) rs->password.data;
        len[n++] = rs->password.len;

        (void) redisAsyncCommandArgv(ac,
                                     ngx_http_phantombuster_redis_setup_reply,
                                     "AUTH", (int) n, argv, len);
    }

    if (rs->db) {
        argv[0] = "SELECT";
        len[0] = 6;
        argv[1] = (const char *) db;
        len[1] = ngx_sprintf(db, "%ui", rs->db) - db;

        (void) redisAsyncCommandArgv(ac,
                                     ngx_http_phantombuster_redis_setup_reply,
                                     "SELECT", 2, argv, len);
    }

    argv[0] = "SCRIPT";
    len[0] = 6;
    argv[1] = "LOAD";
    len[1] = 4;
    argv[2] = pb_lua_push_webhooks;
    len[2] = ngx_strlen(pb_lua_push_webhooks);

    (void) redisAsyncCommandArgv(ac, ngx_http_phantombuster_redis_setup_reply,
                                 "SCRIPT LOAD", 3, argv, len);
}


static void
ngx_http_phantombuster_redis_setup_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    char                            *command = privdata;
    redisReply                      *rr = reply;
    ngx_http_phantombuster_redis_t  *rs;

    rs = ac->data;

    if (rr == NULL) {
        /* the connection is going away; that is logged where it happens */
        return;
    }

    if (rr->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "phantombuster: redis \"%V\" refused %s: %*s",
                      &rs->name, command, (size_t) rr->len, rr->str);

        /* unusable: freed once this callback returns, and retried later */

        redisAsyncFree(ac);
        return;
    }

    if (ngx_strcmp(command, "SCRIPT LOAD") != 0) {
        return;
    }

    if (rr->type != REDIS_REPLY_STRING
        || rr->len != 40
        || ngx_strncmp(rr->str, rs->script_sha, 40) != 0)
    {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "phantombuster: redis \"%V\" returned an unexpected "
                      "digest for the push script", &rs->name);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, rs->log, 0,
                  "phantombuster: redis \"%V\" ready", &rs->name);

    rs->ready = 1;
    rs->backoff = 0;
}


static void
ngx_http_phantombuster_redis_connected(const redisAsyncContext *ac,
    int status)
{
    ngx_http_phantombuster_redis_t  *rs;

    rs = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context right after this; cleanup follows */
        ngx_http_phantombuster_count_redis(
                                        NGX_HTTP_PHANTOMBUSTER_REDIS_CONNECT);
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "phantombuster: could not connect to redis \"%V\": %s",
                      &rs->name, ac->errstr ? ac->errstr : "unknown error");
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rs->log, 0,
                   "phantombuster: connected to redis \"%V\"", &rs->name);

    if (rs->connect_timer.timer_set) {
        ngx_del_timer(&rs->connect_timer);
    }
}


static void
ngx_http_phantombuster_redis_disconnected(const redisAsyncContext *ac,
    int status)
{
    ngx_http_phantombuster_redis_t  *rs;

    rs = ac->data;

    if (status != REDIS_OK && !rs->exiting) {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "phantombuster: lost connection to redis \"%V\": %s",
                      &rs->name, ac->errstr ? ac->errstr : "unknown error");
    }
}


/*
 * A batch goes out in one of two ways, both atomic in Redis, both sent in
 * one write with one reply.  Without phantombuster_max_queue, a MULTI/EXEC
 * transaction of plain commands: one SET NX PX marker per webhook, then
 * one LPUSH of every envelope.  Redis cannot make the LPUSH depend on the
 * SETs, so a redelivery's envelope goes in too: it is answered "duplicate"
 * once it has been taken back out (rare, so it may cost a second round
 * trip).  Plain commands cost Redis about half of what the same work costs
 * inside a script, which copies and hashes every envelope into Lua.  With
 * a limit, the push script (common/pb_keys.h), which can refuse to push.
 *
 * hiredis copies every argument into its output buffer before its call
 * returns; ops are set to "unavailable" until a reply says otherwise.
 */

static ngx_int_t
ngx_http_phantombuster_redis_send(ngx_http_phantombuster_redis_t *rs,
    redisAsyncContext *ac, ngx_http_phantombuster_op_t *batch)
{
    ngx_http_phantombuster_op_t  *op;

    for (op = batch; op; op = op->next) {
        op->generation = rs->generation;
    }

    if (ngx_http_phantombuster_redis_off(batch, NGX_HTTP_PHANTOMBUSTER_ARG_MAX))
    {
        return ngx_http_phantombuster_redis_transaction(rs, ac, batch);
    }

    return ngx_http_phantombuster_redis_script(rs, ac, batch, 0);
}


static ngx_uint_t
ngx_http_phantombuster_redis_length(ngx_http_phantombuster_op_t *batch)
{
    ngx_uint_t  n;

    for (n = 0; batch; batch = batch->next) {
        n++;
    }

    return n;
}


/* "0": no dedupe window, or no limit */

static ngx_uint_t
ngx_http_phantombuster_redis_off(ngx_http_phantombuster_op_t *op,
    ngx_uint_t arg)
{
    return op->args[arg].len == 1 && op->args[arg].data[0] == '0';
}


/* MULTI, SET <seen> <id> PX <window> NX for each, LPUSH <queue> <all>, EXEC */

static ngx_int_t
ngx_http_phantombuster_redis_transaction(ngx_http_phantombuster_redis_t *rs,
    redisAsyncContext *ac, ngx_http_phantombuster_op_t *batch)
{
    size_t                        len[2 + PB_PUSH_BATCH_MAX];
    ngx_str_t                    *window;
    ngx_uint_t                    n, dedupe;
    const char                   *argv[2 + PB_PUSH_BATCH_MAX];
    ngx_http_phantombuster_op_t  *op;

    window = &batch->args[NGX_HTTP_PHANTOMBUSTER_ARG_DEDUPE];
    dedupe = !ngx_http_phantombuster_redis_off(batch,
                                            NGX_HTTP_PHANTOMBUSTER_ARG_DEDUPE);

    argv[0] = "MULTI";
    len[0] = 5;

    if (ngx_http_phantombuster_redis_argv(rs, ac, NULL, NULL, 1, argv, len)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    argv[0] = "SET";
    len[0] = 3;
    argv[3] = "PX";
    len[3] = 2;
    argv[4] = (const char *) window->data;
    len[4] = window->len;
    argv[5] = "NX";
    len[5] = 2;

    for (op = batch; op && dedupe; op = op->next) {
        argv[1] = (const char *) op->args[NGX_HTTP_PHANTOMBUSTER_ARG_SEEN].data;
        len[1] = op->args[NGX_HTTP_PHANTOMBUSTER_ARG_SEEN].len;
        argv[2] = (const char *) op->args[NGX_HTTP_PHANTOMBUSTER_ARG_ID].data;
        len[2] = op->args[NGX_HTTP_PHANTOMBUSTER_ARG_ID].len;

        if (ngx_http_phantombuster_redis_argv(rs, ac, NULL, NULL, 6, argv, len)
            != NGX_OK)
        {
            return NGX_DECLINED;
        }
    }

    argv[0] = "LPUSH";
    len[0] = 5;
    argv[1] = (const char *) batch->args[NGX_HTTP_PHANTOMBUSTER_ARG_QUEUE].data;
    len[1] = batch->args[NGX_HTTP_PHANTOMBUSTER_ARG_QUEUE].len;

    n = 2;

    for (op = batch; op; op = op->next) {
        argv[n] =
            (const char *) op->args[NGX_HTTP_PHANTOMBUSTER_ARG_ENVELOPE].data;
        len[n++] = op->args[NGX_HTTP_PHANTOMBUSTER_ARG_ENVELOPE].len;
    }

    if (ngx_http_phantombuster_redis_argv(rs, ac, NULL, NULL, (int) n, argv,
                                          len)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    argv[0] = "EXEC";
    len[0] = 4;

    return ngx_http_phantombuster_redis_argv(rs, ac,
                                     ngx_http_phantombuster_redis_exec_reply,
                                     batch, 1, argv, len);
}


/*
 * EXEC's reply: the SETs' (OK, or nil for a containerId already seen),
 * then the LPUSH's.  Called exactly once per batch, with NULL when the
 * connection failed or was freed first.
 */

static void
ngx_http_phantombuster_redis_exec_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_phantombuster_op_t *batch = privdata;

    size_t                           i, n;
    redisReply                      *rr, *e;
    ngx_uint_t                       dedupe, duplicates;
    ngx_http_phantombuster_op_t     *op;
    ngx_http_phantombuster_redis_t  *rs;

    rs = ac->data;
    rr = ngx_http_phantombuster_redis_array(rs, reply);
    duplicates = 0;

    dedupe = !ngx_http_phantombuster_redis_off(batch,
                                            NGX_HTTP_PHANTOMBUSTER_ARG_DEDUPE);

    n = ngx_http_phantombuster_redis_length(batch);

    if (rr == NULL) {
        goto done;
    }

    e = (rr->elements == (dedupe ? n : 0) + 1) ? rr->element[rr->elements - 1]
                                               : NULL;

    if (e == NULL || e->type != REDIS_REPLY_INTEGER) {
        if (e != NULL && e->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                          "phantombuster: redis \"%V\" push failed: %*s",
                          &rs->name, (size_t) e->len, e->str);

        } else {
            ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                          "phantombuster: redis \"%V\" returned an "
                          "unexpected transaction reply", &rs->name);
        }

        ngx_http_phantombuster_count_redis(NGX_HTTP_PHANTOMBUSTER_REDIS_ERROR);
        goto done;
    }

    for (op = batch, i = 0; op; op = op->next, i++) {
        e = dedupe ? rr->element[i] : NULL;

        if (e == NULL || e->type == REDIS_REPLY_STATUS) {
            op->result = NGX_HTTP_PHANTOMBUSTER_QUEUED;

        } else if (e->type == REDIS_REPLY_NIL) {
            op->result = NGX_HTTP_PHANTOMBUSTER_DUPLICATE;
            duplicates++;
        }
    }

    if (duplicates
        && ngx_http_phantombuster_redis_unpush(rs, ac, batch, duplicates)
           == NGX_OK)
    {
        /* answered once the duplicates are out of the list again */
        return;
    }

done:

    ngx_http_phantombuster_redis_answer(batch);
}


/*
 * Takes the duplicates' envelopes back out of the list, so that only what
 * was answered 202 stays queued: LREM from the head, where they were just
 * pushed, so it stops after the few envelopes pushed since.  Unique request
 * ids make each envelope unique.  Should this fail, or the worker be
 * faster, the worker skips them anyway: the first delivery, pushed before
 * them, has finished their job, or for a container no job owns, their
 * marker names that delivery (worker/slots.c).
 */

static ngx_int_t
ngx_http_phantombuster_redis_unpush(ngx_http_phantombuster_redis_t *rs,
    redisAsyncContext *ac, ngx_http_phantombuster_op_t *batch,
    ngx_uint_t duplicates)
{
    size_t                        len[4];
    const char                   *argv[4];
    redisCallbackFn              *fn;
    ngx_http_phantombuster_op_t  *op;

    argv[0] = "LREM";
    len[0] = 4;
    argv[1] = (const char *) batch->args[NGX_HTTP_PHANTOMBUSTER_ARG_QUEUE].data;
    len[1] = batch->args[NGX_HTTP_PHANTOMBUSTER_ARG_QUEUE].len;
    argv[2] = "1";
    len[2] = 1;

    for (op = batch; op; op = op->next) {
        if (op->result != NGX_HTTP_PHANTOMBUSTER_DUPLICATE) {
            continue;
        }

        argv[3] =
            (const char *) op->args[NGX_HTTP_PHANTOMBUSTER_ARG_ENVELOPE].data;
        len[3] = op->args[NGX_HTTP_PHANTOMBUSTER_ARG_ENVELOPE].len;

        /* the last one's reply answers the batch */

        fn = (--duplicates == 0) ? ngx_http_phantombuster_redis_unpush_reply
                                 : NULL;

        if (ngx_http_phantombuster_redis_argv(rs, ac, fn, batch, 4, argv, len)
            != NGX_OK)
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* The results stand whatever LREM said: the pushes themselves were done. */

static void
ngx_http_phantombuster_redis_unpush_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    redisReply                      *rr = reply;
    ngx_http_phantombuster_redis_t  *rs;

    rs = ac->data;

    if (rr != NULL && rr->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "phantombuster: redis \"%V\" could not take a "
                      "duplicate back: %*s", &rs->name, (size_t) rr->len,
                      rr->str);
    }

    ngx_http_phantombuster_redis_answer(privdata);
}


/*
 * The push script's call for a batch (see common/pb_keys.h): the queue and
 * every seen marker as keys; the dedupe window, the limit, then each
 * envelope and request id as arguments.
 */

static ngx_int_t
ngx_http_phantombuster_redis_script(ngx_http_phantombuster_redis_t *rs,
    redisAsyncContext *ac, ngx_http_phantombuster_op_t *batch,
    ngx_uint_t eval)
{
    u_char                        numkeys[NGX_INT_T_LEN];
    size_t                        len[NGX_HTTP_PHANTOMBUSTER_BATCH_ARGS];
    ngx_uint_t                    n, k, a;
    const char                   *argv[NGX_HTTP_PHANTOMBUSTER_BATCH_ARGS];
    ngx_http_phantombuster_op_t  *op;

    n = ngx_http_phantombuster_redis_length(batch);

    if (eval) {
        argv[0] = "EVAL";
        len[0] = 4;
        argv[1] = pb_lua_push_webhooks;
        len[1] = ngx_strlen(pb_lua_push_webhooks);

    } else {
        argv[0] = "EVALSHA";
        len[0] = 7;
        argv[1] = (const char *) rs->script_sha;
        len[1] = 40;
    }

    argv[2] = (const char *) numkeys;
    len[2] = ngx_sprintf(numkeys, "%ui", n + 1) - numkeys;

    argv[3] = (const char *) batch->args[NGX_HTTP_PHANTOMBUSTER_ARG_QUEUE].data;
    len[3] = batch->args[NGX_HTTP_PHANTOMBUSTER_ARG_QUEUE].len;

    /* the seen markers, then the shared arguments, then each webhook's */

    a = 4 + n;

    for (k = NGX_HTTP_PHANTOMBUSTER_ARG_DEDUPE;
         k <= NGX_HTTP_PHANTOMBUSTER_ARG_MAX;
         k++)
    {
        argv[a] = (const char *) batch->args[k].data;
        len[a++] = batch->args[k].len;
    }

    k = 4;

    for (op = batch; op; op = op->next) {
        argv[k] = (const char *) op->args[NGX_HTTP_PHANTOMBUSTER_ARG_SEEN].data;
        len[k++] = op->args[NGX_HTTP_PHANTOMBUSTER_ARG_SEEN].len;

        argv[a] =
            (const char *) op->args[NGX_HTTP_PHANTOMBUSTER_ARG_ENVELOPE].data;
        len[a++] = op->args[NGX_HTTP_PHANTOMBUSTER_ARG_ENVELOPE].len;
        argv[a] = (const char *) op->args[NGX_HTTP_PHANTOMBUSTER_ARG_ID].data;
        len[a++] = op->args[NGX_HTTP_PHANTOMBUSTER_ARG_ID].len;
    }

    return ngx_http_phantombuster_redis_argv(rs, ac,
                                  ngx_http_phantombuster_redis_script_reply,
                                  batch, (int) a, argv, len);
}


static ngx_int_t
ngx_http_phantombuster_redis_argv(ngx_http_phantombuster_redis_t *rs,
    redisAsyncContext *ac, redisCallbackFn *fn,
    ngx_http_phantombuster_op_t *op, int argc, const char **argv,
    const size_t *len)
{
    if (redisAsyncCommandArgv(ac, fn, op, argc, argv, len) != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "phantombuster: redis \"%V\" connection is closing",
                      &rs->name);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* Redis does not know the script: started afresh, or SCRIPT FLUSH. */

static ngx_uint_t
ngx_http_phantombuster_redis_noscript(redisReply *rr)
{
    return rr != NULL
           && rr->type == REDIS_REPLY_ERROR
           && rr->len >= 8
           && ngx_strncmp(rr->str, "NOSCRIPT", 8) == 0;
}


/* The script's reply: one integer per webhook (common/pb_keys.h). */

static void
ngx_http_phantombuster_redis_script_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_phantombuster_op_t *batch = privdata;

    size_t                           i;
    redisReply                      *rr, *e;
    ngx_http_phantombuster_op_t     *op;
    ngx_http_phantombuster_redis_t  *rs;

    rs = ac->data;
    rr = reply;

    if (!batch->retried && ngx_http_phantombuster_redis_noscript(rr)) {
        /* the script cache was flushed (or Redis restarted): send it whole */

        ngx_log_error(NGX_LOG_NOTICE, rs->log, 0,
                      "phantombuster: redis \"%V\" lost the push script, "
                      "falling back to EVAL", &rs->name);

        batch->retried = 1;

        if (ngx_http_phantombuster_redis_script(rs, ac, batch, 1) == NGX_OK) {
            return;
        }

        rr = NULL;
    }

    rr = ngx_http_phantombuster_redis_array(rs, rr);

    for (op = batch, i = 0; rr != NULL && op; op = op->next, i++) {
        e = (i < rr->elements) ? rr->element[i] : NULL;

        if (e == NULL || e->type != REDIS_REPLY_INTEGER) {
            ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                          "phantombuster: the push script returned no "
                          "result for webhook %uz of %uz", i + 1,
                          rr->elements);

        } else if (e->integer > 0) {
            op->result = NGX_HTTP_PHANTOMBUSTER_QUEUED;

        } else if (e->integer == PB_PUSH_DUPLICATE) {
            op->result = NGX_HTTP_PHANTOMBUSTER_DUPLICATE;

        } else if (e->integer == PB_PUSH_FULL) {
            op->result = NGX_HTTP_PHANTOMBUSTER_FULL;

        } else {
            ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                          "phantombuster: unexpected push script result %L",
                          (int64_t) e->integer);
        }
    }

    ngx_http_phantombuster_redis_answer(batch);
}


/*
 * The batch's reply if it is an array; NULL (logged and counted) if there
 * was no reply (no connection), an error, or anything else.
 */

static redisReply *
ngx_http_phantombuster_redis_array(ngx_http_phantombuster_redis_t *rs,
    redisReply *rr)
{
    if (rr == NULL) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rs->log, 0,
                       "phantombuster: push failed, no connection");

        ngx_http_phantombuster_count_redis(NGX_HTTP_PHANTOMBUSTER_REDIS_LOST);
        return NULL;
    }

    if (rr->type == REDIS_REPLY_ARRAY) {
        return rr;
    }

    if (rr->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "phantombuster: redis \"%V\" push failed: %*s",
                      &rs->name, (size_t) rr->len, rr->str);

        ngx_http_phantombuster_count_redis(NGX_HTTP_PHANTOMBUSTER_REDIS_ERROR);

    } else {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "phantombuster: unexpected redis reply type %d",
                      rr->type);
    }

    return NULL;
}


/* Tells each request of the batch what became of its push; frees the ops. */

static void
ngx_http_phantombuster_redis_answer(ngx_http_phantombuster_op_t *batch)
{
    ngx_http_phantombuster_op_t  *op, *next;

    for (op = batch; op; op = next) {
        next = op->next;

        if (op->result != NGX_HTTP_PHANTOMBUSTER_UNAVAILABLE) {
            ngx_http_phantombuster_count_push(ngx_current_msec - op->start);
        }

        if (op->request) {
            op->handler(op, op->result);

        } else {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, op->redis->log, 0,
                           "phantombuster: reply %ui for a request that is "
                           "gone", op->result);
        }

        ngx_free(op);
    }
}


static ngx_int_t
ngx_http_phantombuster_redis_send_command(ngx_http_phantombuster_redis_t *rs,
    redisAsyncContext *ac, ngx_http_phantombuster_op_t *op)
{
    size_t       len[NGX_HTTP_PHANTOMBUSTER_MAX_ARGS];
    ngx_uint_t   i;
    const char  *argv[NGX_HTTP_PHANTOMBUSTER_MAX_ARGS];

    if (op->argc > NGX_HTTP_PHANTOMBUSTER_MAX_ARGS) {
        ngx_log_error(NGX_LOG_ALERT, rs->log, 0,
                      "phantombuster: a redis command of %ui arguments",
                      op->argc);
        return NGX_DECLINED;
    }

    for (i = 0; i < op->argc; i++) {
        argv[i] = (const char *) op->argv[i].data;
        len[i] = op->argv[i].len;
    }

    return ngx_http_phantombuster_redis_argv(rs, ac,
                                    ngx_http_phantombuster_redis_command_reply,
                                    op, (int) op->argc, argv, len);
}


/* As ngx_http_phantombuster_redis_reply(), for any other command. */

static void
ngx_http_phantombuster_redis_command_reply(redisAsyncContext *ac,
    void *reply, void *privdata)
{
    ngx_http_phantombuster_op_t *op = privdata;

    redisReply                      *rr = reply;
    ngx_http_phantombuster_redis_t  *rs;

    rs = ac->data;

    if (op->script != NULL
        && !op->retried
        && ngx_http_phantombuster_redis_noscript(rr))
    {
        /* first use since Redis started, or its script cache was flushed */

        op->retried = 1;
        ngx_str_set(&op->argv[0], "EVAL");
        op->argv[1].data = (u_char *) op->script;
        op->argv[1].len = ngx_strlen(op->script);

        if (ngx_http_phantombuster_redis_send_command(rs, ac, op) == NGX_OK) {
            return;
        }

        rr = NULL;
    }

    if (rr == NULL) {
        ngx_http_phantombuster_count_redis(NGX_HTTP_PHANTOMBUSTER_REDIS_LOST);

    } else if (rr->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "phantombuster: redis \"%V\" %V failed: %*s",
                      &rs->name, &op->argv[0], (size_t) rr->len, rr->str);

        ngx_http_phantombuster_count_redis(NGX_HTTP_PHANTOMBUSTER_REDIS_ERROR);
    }

    if (op->request) {
        op->reply(op, rr);
    }

    ngx_free(op);
}


static void
ngx_http_phantombuster_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t                *c;
    ngx_http_phantombuster_redis_t  *rs;

    c = ev->data;
    rs = c->data;

    if (rs->ac == NULL || rs->connection != c) {
        return;
    }

    /* may free the context and, through cleanup, the connection */

    redisAsyncHandleRead(rs->ac);
}


static void
ngx_http_phantombuster_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t                *c;
    ngx_http_phantombuster_redis_t  *rs;

    c = ev->data;
    rs = c->data;

    if (rs->ac == NULL || rs->connection != c) {
        return;
    }

    redisAsyncHandleWrite(rs->ac);
}


/*
 * hiredis asks for read/write interest again after every read or write:
 * touch the event only when its state really changes (level-triggered, see
 * the top of this file).
 */

static void
ngx_http_phantombuster_redis_want(ngx_http_phantombuster_redis_t *rs,
    ngx_event_t *ev, ngx_int_t event, ngx_uint_t want)
{
    if (want && !ev->active) {
        if (ngx_add_event(ev, event, NGX_LEVEL_EVENT) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, rs->log, 0,
                          "phantombuster: could not add redis %s event",
                          event == NGX_READ_EVENT ? "read" : "write");
        }

    } else if (!want && ev->active) {
        (void) ngx_del_event(ev, event, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_phantombuster_redis_add_read(void *privdata)
{
    ngx_http_phantombuster_redis_t *rs = privdata;

    ngx_http_phantombuster_redis_want(rs, rs->connection->read,
                                      NGX_READ_EVENT, 1);
}


static void
ngx_http_phantombuster_redis_del_read(void *privdata)
{
    ngx_http_phantombuster_redis_t *rs = privdata;

    ngx_http_phantombuster_redis_want(rs, rs->connection->read,
                                      NGX_READ_EVENT, 0);
}


static void
ngx_http_phantombuster_redis_add_write(void *privdata)
{
    ngx_http_phantombuster_redis_t *rs = privdata;

    if (rs->holding_write) {
        rs->write_held = 1;
        return;
    }

    ngx_http_phantombuster_redis_want(rs, rs->connection->write,
                                      NGX_WRITE_EVENT, 1);
}


static void
ngx_http_phantombuster_redis_del_write(void *privdata)
{
    ngx_http_phantombuster_redis_t *rs = privdata;

    rs->write_held = 0;

    ngx_http_phantombuster_redis_want(rs, rs->connection->write,
                                      NGX_WRITE_EVENT, 0);
}


/*
 * hiredis is about to free the context and close its socket (it calls this
 * exactly once, whatever the reason).  Give back nginx's connection slot
 * without closing the descriptor, and plan the reconnect.
 */

static void
ngx_http_phantombuster_redis_cleanup(void *privdata)
{
    ngx_http_phantombuster_redis_t *rs = privdata;

    ngx_uint_t         flags;
    ngx_connection_t  *c;

    c = rs->connection;

    if (c) {
        /* while exiting the event module may be gone: just mark inactive */
        flags = rs->exiting ? NGX_CLOSE_EVENT : NGX_LEVEL_EVENT;

        if (c->read->active) {
            (void) ngx_del_event(c->read, NGX_READ_EVENT, flags);
        }

        if (c->write->active) {
            (void) ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        ngx_free_connection(c);

        c->fd = (ngx_socket_t) -1;
    }

    rs->connection = NULL;
    rs->ac = NULL;
    rs->ready = 0;
    rs->write_held = 0;

    if (rs->connect_timer.timer_set) {
        ngx_del_timer(&rs->connect_timer);
    }

    ngx_http_phantombuster_redis_schedule(rs);
}


static void
ngx_http_phantombuster_redis_connect_timeout(ngx_event_t *ev)
{
    ngx_http_phantombuster_redis_t *rs = ev->data;

    if (rs->ac == NULL) {
        return;
    }

    ngx_http_phantombuster_count_redis(NGX_HTTP_PHANTOMBUSTER_REDIS_CONNECT);

    ngx_log_error(NGX_LOG_ERR, rs->log, NGX_ETIMEDOUT,
                  "phantombuster: connecting to redis \"%V\" timed out",
                  &rs->name);

    redisAsyncFree(rs->ac);
}


static void
ngx_http_phantombuster_redis_reconnect(ngx_event_t *ev)
{
    ngx_http_phantombuster_redis_t *rs = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate || rs->exiting) {
        return;
    }

    if (rs->ac == NULL) {
        (void) ngx_http_phantombuster_redis_connect(rs);
    }
}


/*
 * Capped exponential backoff with jitter, so that the workers of a fleet
 * do not all knock at once when Redis comes back.
 */

static void
ngx_http_phantombuster_redis_schedule(ngx_http_phantombuster_redis_t *rs)
{
    ngx_msec_t  delay;

    if (ngx_exiting || ngx_quit || ngx_terminate || rs->exiting) {
        return;
    }

    if (rs->reconnect_timer.timer_set) {
        return;
    }

    if (rs->backoff == 0) {
        rs->backoff = NGX_HTTP_PHANTOMBUSTER_BACKOFF_MIN;

    } else {
        rs->backoff = ngx_min(rs->backoff * 2,
                              NGX_HTTP_PHANTOMBUSTER_BACKOFF_MAX);
    }

    delay = rs->backoff / 2 + (ngx_msec_t) ngx_random() % (rs->backoff / 2 + 1);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rs->log, 0,
                   "phantombuster: reconnecting to redis \"%V\" in %M ms",
                   &rs->name, delay);

    ngx_add_timer(&rs->reconnect_timer, delay);
}
