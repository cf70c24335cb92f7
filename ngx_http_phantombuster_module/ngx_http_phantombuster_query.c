
/*
 * Copyright (C) The phantombuster module authors
 *
 * A request that waits for one Redis command on the worker's shared
 * connection: the webhook's push and the status, admin and metrics
 * locations' commands.  The command travels in an op the Redis side owns
 * once sent; the reply is recorded from inside hiredis's callback, and the
 * request resumes from a posted event, or from its timer, whichever comes
 * first; a request that goes away only detaches from its op.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "pb_status.h"
#include "ngx_http_phantombuster_module.h"
#include "ngx_http_phantombuster_status.h"


static ngx_int_t ngx_http_phantombuster_query_script(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q, const char *script, u_char *sha);
static void ngx_http_phantombuster_query_reply(
    ngx_http_phantombuster_op_t *op, redisReply *rr);
static void ngx_http_phantombuster_query_resume(ngx_event_t *ev);
static void ngx_http_phantombuster_query_timeout(ngx_event_t *ev);
static void ngx_http_phantombuster_query_cleanup(void *data);
static void ngx_http_phantombuster_query_finish(
    ngx_http_phantombuster_query_t *q);


/*
 * Sends argv (copied: the op may outlive the request).  script is the
 * text to EVAL when argv is an EVALSHA that Redis does not know, or NULL.
 * Returns NGX_DONE while waiting, q->done's answer when it could not be
 * sent (no connection: the request is answered at once), or an error.
 */

ngx_int_t
ngx_http_phantombuster_query(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q, ngx_uint_t argc, ngx_str_t *argv,
    const char *script)
{
    u_char                             *p;
    size_t                              size;
    ngx_uint_t                          i;
    ngx_http_cleanup_t                 *hcln;
    ngx_http_phantombuster_op_t        *op;
    ngx_http_phantombuster_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_phantombuster_module);

    size = sizeof(ngx_http_phantombuster_op_t) + argc * sizeof(ngx_str_t);

    for (i = 0; i < argc; i++) {
        size += argv[i].len;
    }

    op = ngx_alloc(size, r->connection->log);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(op, sizeof(ngx_http_phantombuster_op_t));

    op->argc = argc;
    op->argv = (ngx_str_t *) (op + 1);
    op->script = script;
    op->data = q;
    op->reply = ngx_http_phantombuster_query_reply;

    p = (u_char *) (op->argv + argc);

    for (i = 0; i < argc; i++) {
        op->argv[i].data = p;
        op->argv[i].len = argv[i].len;
        p = ngx_cpymem(p, argv[i].data, argv[i].len);
    }

    hcln = ngx_http_cleanup_add(r, 0);
    if (hcln == NULL) {
        ngx_free(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    hcln->handler = ngx_http_phantombuster_query_cleanup;
    hcln->data = q;

    op->request = r;

    if (ngx_http_phantombuster_redis_command(plcf->redis, op) != NGX_OK) {
        ngx_free(op);
        q->request = r;
        q->result = NGX_HTTP_PHANTOMBUSTER_REPLY_FAIL;
        return q->done(r, q);
    }

    ngx_http_phantombuster_query_wait(r, q, op);

    return NGX_DONE;
}


/*
 * The op is on its way: wait for ngx_http_phantombuster_query_wake() or
 * for the location's phantombuster_redis_timeout.  The timer is not
 * cancelable: a worker that shuts down gracefully answers what is in
 * flight before it exits.
 */

void
ngx_http_phantombuster_query_wait(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q, ngx_http_phantombuster_op_t *op)
{
    ngx_http_phantombuster_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_phantombuster_module);

    q->request = r;
    q->op = op;
    q->timeout = plcf->timeout;

    q->timer.handler = ngx_http_phantombuster_query_timeout;
    q->timer.data = q;
    q->timer.log = r->connection->log;

    q->resume.handler = ngx_http_phantombuster_query_resume;
    q->resume.data = q;
    q->resume.log = r->connection->log;

    ngx_add_timer(&q->timer, q->timeout);

    /* a client that goes away now terminates the request (cleanup) */

    r->read_event_handler = ngx_http_test_reading;
}


/*
 * Called from inside hiredis's callback once the reply is recorded: the
 * request resumes from the event loop once hiredis has unwound.
 */

void
ngx_http_phantombuster_query_wake(ngx_http_phantombuster_query_t *q)
{
    q->op->request = NULL;
    q->op = NULL;

    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    ngx_post_event(&q->resume, &ngx_posted_events);
}


/*
 * The content handler of the status and metrics locations: GET or HEAD,
 * then the location's script of common/pb_status.c.
 */

ngx_int_t
ngx_http_phantombuster_script_handler(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    ngx_http_phantombuster_query_t     *q;
    ngx_http_phantombuster_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_phantombuster_module);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "phantombuster %s handler",
                   plcf->metrics ? "metrics" : "status");

    rc = ngx_http_phantombuster_only_get(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    q = ngx_pcalloc(r->pool, sizeof(ngx_http_phantombuster_query_t));
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (plcf->metrics) {
        q->done = ngx_http_phantombuster_metrics_done;
        rc = ngx_http_phantombuster_query_script(r, q, pb_lua_metrics,
                                            ngx_http_phantombuster_metrics_sha);

    } else {
        q->done = ngx_http_phantombuster_pass_reply;
        rc = ngx_http_phantombuster_query_script(r, q, pb_lua_status,
                                             ngx_http_phantombuster_status_sha);
    }

    if (rc == NGX_DONE) {
        /* held until the resume or the timer finalizes it */
        r->main->count++;
    }

    return rc;
}


/* EVALSHA of one of common/pb_status.c's scripts, over their keys. */

static ngx_int_t
ngx_http_phantombuster_query_script(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q, const char *script, u_char *sha)
{
    ngx_str_t                           argv[3 + PB_STATUS_NKEYS
                                             + PB_STATUS_NARGS];
    ngx_uint_t                          i, n;
    pb_status_keys_t                   *keys;
    ngx_http_phantombuster_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_phantombuster_module);

    keys = ngx_palloc(r->pool, sizeof(pb_status_keys_t));
    if (keys == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (pb_status_keys(keys, (char *) plcf->queue.data, plcf->queue.len)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "phantombuster: queue name \"%V\" is too long for "
                      "the status", &plcf->queue);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&argv[0], "EVALSHA");
    argv[1].data = sha;
    argv[1].len = 40;
    ngx_str_set(&argv[2], "16");

    n = 3;

    for (i = 0; keys->keys[i] != NULL; i++, n++) {
        argv[n].data = (u_char *) keys->keys[i];
        argv[n].len = ngx_strlen(keys->keys[i]);
    }

    for (i = 0; pb_status_argv[i] != NULL; i++, n++) {
        argv[n].data = (u_char *) pb_status_argv[i];
        argv[n].len = ngx_strlen(pb_status_argv[i]);
    }

    return ngx_http_phantombuster_query(r, q, n, argv, script);
}


/* Called from inside hiredis's callback, exactly once per sent command. */

static void
ngx_http_phantombuster_query_reply(ngx_http_phantombuster_op_t *op,
    redisReply *rr)
{
    u_char                          *p;
    ngx_http_request_t              *r;
    ngx_http_phantombuster_query_t  *q;

    q = op->data;
    r = op->request;

    q->result = NGX_HTTP_PHANTOMBUSTER_REPLY_FAIL;

    if (rr == NULL || rr->type == REDIS_REPLY_ERROR) {
        /* logged by the Redis side */

    } else if (rr->type == REDIS_REPLY_NIL) {
        q->result = NGX_HTTP_PHANTOMBUSTER_REPLY_NIL;

    } else if (rr->type == REDIS_REPLY_INTEGER) {
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);

        if (p != NULL) {
            q->reply.data = p;
            q->reply.len = ngx_sprintf(p, "%L", (int64_t) rr->integer) - p;
            q->result = NGX_HTTP_PHANTOMBUSTER_REPLY;
        }

    } else if (rr->type == REDIS_REPLY_STRING
               || rr->type == REDIS_REPLY_STATUS)
    {
        p = ngx_pnalloc(r->pool, rr->len);

        if (p != NULL) {
            ngx_memcpy(p, rr->str, rr->len);
            q->reply.data = p;
            q->reply.len = rr->len;
            q->result = NGX_HTTP_PHANTOMBUSTER_REPLY;
        }

    } else {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "phantombuster: unexpected redis reply type %d",
                      rr->type);
    }

    ngx_http_phantombuster_query_wake(q);
}


static void
ngx_http_phantombuster_query_resume(ngx_event_t *ev)
{
    ngx_http_phantombuster_query_finish(ev->data);
}


static void
ngx_http_phantombuster_query_timeout(ngx_event_t *ev)
{
    ngx_uint_t                       generation;
    ngx_http_request_t              *r;
    ngx_http_phantombuster_query_t  *q;
    ngx_http_phantombuster_redis_t  *rs;

    q = ev->data;
    r = q->request;

    ngx_http_set_log_request(r->connection->log, r);

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "phantombuster: redis did not answer within %M ms",
                  q->timeout);

    rs = NULL;
    generation = 0;

    if (q->op) {
        rs = q->op->redis;
        generation = q->op->generation;
    }

    ngx_http_phantombuster_query_detach(q);

    if (rs) {
        ngx_http_phantombuster_redis_stalled(rs, generation, q->timeout);
    }

    q->result = NGX_HTTP_PHANTOMBUSTER_REPLY_FAIL;

    ngx_http_phantombuster_query_finish(q);
}


static void
ngx_http_phantombuster_query_finish(ngx_http_phantombuster_query_t *q)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = q->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "phantombuster query done: %ui", q->result);

    rc = q->done(r, q);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_phantombuster_query_cleanup(void *data)
{
    ngx_http_phantombuster_query_t *q = data;

    ngx_http_phantombuster_query_detach(q);
}


/* The op stays with hiredis, which frees it when the reply comes. */

void
ngx_http_phantombuster_query_detach(ngx_http_phantombuster_query_t *q)
{
    if (q->op) {
        q->op->request = NULL;
        q->op = NULL;
    }

    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    if (q->resume.posted) {
        ngx_delete_posted_event(&q->resume);
    }
}


/*
 * The status and metrics locations answer GET and HEAD; a request body,
 * if any, is discarded.
 */

ngx_int_t
ngx_http_phantombuster_only_get(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_phantombuster_not_allowed(r, "GET, HEAD");
    }

    rc = ngx_http_discard_request_body(r);

    return rc == NGX_OK ? NGX_DECLINED : rc;
}


ngx_int_t
ngx_http_phantombuster_not_allowed(ngx_http_request_t *r, char *allow)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *h;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Allow");
    h->value.data = (u_char *) allow;
    h->value.len = ngx_strlen(allow);

    return ngx_http_phantombuster_json(r, NGX_HTTP_NOT_ALLOWED,
                                       "{\"error\":\"method not allowed\"}");
}


/* Redis's string reply as the answer (it is JSON), uncached. */

ngx_int_t
ngx_http_phantombuster_pass_reply(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q)
{
    ngx_table_elt_t  *h;

    if (q->result != NGX_HTTP_PHANTOMBUSTER_REPLY) {
        return ngx_http_phantombuster_unavailable(r);
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    return ngx_http_phantombuster_send(r, NGX_HTTP_OK, q->reply.data,
                                       q->reply.len);
}


ngx_int_t
ngx_http_phantombuster_unavailable(ngx_http_request_t *r)
{
    return ngx_http_phantombuster_json(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "{\"error\":\"queue unavailable\"}");
}


/* A fixed JSON answer (a literal: nothing to escape). */

ngx_int_t
ngx_http_phantombuster_json(ngx_http_request_t *r, ngx_uint_t status,
    const char *body)
{
    return ngx_http_phantombuster_send(r, status, (u_char *) body,
                                       ngx_strlen(body));
}
