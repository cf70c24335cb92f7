
/*
 * Copyright (C) The phantombuster module authors
 *
 * The webhook request path: method and secret checks, the request body,
 * validation with the shared common/ code, the push, and the answer, which
 * is sent only once Redis has replied (or could not).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "pb_envelope.h"
#include "pb_keys.h"
#include "pb_payload.h"
#include "ngx_http_phantombuster_module.h"


#define NGX_HTTP_PHANTOMBUSTER_RETRY_AFTER  "1"


static ngx_int_t ngx_http_phantombuster_refuse(ngx_http_request_t *r,
    ngx_http_phantombuster_ctx_t *ctx, ngx_uint_t status, const char *reason);
#if (NGX_HTTP_V2)
static void ngx_http_phantombuster_refuse_handler(ngx_http_request_t *r);
#endif
static ngx_int_t ngx_http_phantombuster_redact(ngx_http_request_t *r);
static ngx_int_t ngx_http_phantombuster_check_secret(ngx_http_request_t *r,
    ngx_http_phantombuster_loc_conf_t *plcf);
static void ngx_http_phantombuster_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_phantombuster_process(ngx_http_request_t *r,
    ngx_http_phantombuster_ctx_t *ctx);
static void ngx_http_phantombuster_push_done(ngx_http_phantombuster_op_t *op,
    ngx_uint_t result);
static ngx_int_t ngx_http_phantombuster_pushed(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q);
static void ngx_http_phantombuster_cleanup(void *data);
static ngx_int_t ngx_http_phantombuster_answer(ngx_http_request_t *r,
    ngx_http_phantombuster_ctx_t *ctx);
static ngx_int_t ngx_http_phantombuster_reject(ngx_http_request_t *r,
    ngx_http_phantombuster_ctx_t *ctx, ngx_uint_t status, const char *reason);


ngx_int_t
ngx_http_phantombuster_handler(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    ngx_table_elt_t                    *h;
    ngx_http_phantombuster_ctx_t       *ctx;
    ngx_http_phantombuster_loc_conf_t  *plcf;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "phantombuster webhook handler");

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_phantombuster_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_phantombuster_module);

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_phantombuster_module);

    if (r->method != NGX_HTTP_POST) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        ngx_str_set(&h->value, "POST");

        return ngx_http_phantombuster_refuse(r, ctx, NGX_HTTP_NOT_ALLOWED,
                                             "method not allowed");
    }

    rc = ngx_http_phantombuster_check_secret(r, plcf);

    if (rc == NGX_HTTP_UNAUTHORIZED) {
        return ngx_http_phantombuster_refuse(r, ctx, rc, "missing secret");
    }

    if (rc == NGX_HTTP_FORBIDDEN) {
        return ngx_http_phantombuster_refuse(r, ctx, rc, "invalid secret");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * The body API takes its own reference on the request; the content
     * phase's NGX_DONE drops it, and the body handler finalizes, at once
     * or once Redis has replied.
     */

    rc = ngx_http_read_client_request_body(r,
                                        ngx_http_phantombuster_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
            ngx_str_set(&ctx->result, "request body too large");
        }

        return rc;
    }

    return NGX_DONE;
}


/*
 * Refuses a webhook before its body is read.  Over HTTP/1.x the body is
 * discarded as usual.  Over HTTP/2 an answer that goes out before the
 * client has sent its whole body makes nginx reset the stream
 * (RST_STREAM NO_ERROR), which clients such as curl report as a failed
 * request instead of the 401/403/405: there the body is read first (it is
 * bounded by client_max_body_size), then refused.
 */

static ngx_int_t
ngx_http_phantombuster_refuse(ngx_http_request_t *r,
    ngx_http_phantombuster_ctx_t *ctx, ngx_uint_t status, const char *reason)
{
#if (NGX_HTTP_V2)
    ngx_int_t  rc;

    if (r->stream) {
        ctx->refuse_status = status;
        ctx->refuse_reason = reason;

        rc = ngx_http_read_client_request_body(r,
                                     ngx_http_phantombuster_refuse_handler);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }
#endif

    return ngx_http_phantombuster_reject(r, ctx, status, reason);
}


#if (NGX_HTTP_V2)

static void
ngx_http_phantombuster_refuse_handler(ngx_http_request_t *r)
{
    ngx_http_phantombuster_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_phantombuster_module);

    ngx_http_finalize_request(r,
                              ngx_http_phantombuster_reject(r, ctx,
                                                        ctx->refuse_status,
                                                        ctx->refuse_reason));
}

#endif


/*
 * nginx appends the request line to every error log line about a request,
 * and $request puts it in the access log: mask the "secret" argument there
 * so that no log line written after this point shows it.  It runs in the
 * POST_READ phase, on every request of a configuration with a webhook
 * location: the location is not known yet, and nginx itself logs the
 * request line before any content handler runs, e.g. when a Content-Length
 * over client_max_body_size is refused with 413.  Only the copy that is
 * logged changes; $args and the request keep the secret.
 */

ngx_int_t
ngx_http_phantombuster_redact_handler(ngx_http_request_t *r)
{
    if (ngx_http_phantombuster_redact(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_phantombuster_redact(ngx_http_request_t *r)
{
    u_char  *p, *last, *q, *dst, *start;
    size_t   n;

    if (r->request_line.len == 0 || r->args.len == 0) {
        return NGX_OK;
    }

    p = r->request_line.data;
    last = p + r->request_line.len;

    /* count the arguments to mask */

    n = 0;

    for (q = p; q + 8 <= last; q++) {
        if ((*q == '?' || *q == '&')
            && ngx_strncmp(q + 1, "secret=", 7) == 0)
        {
            n++;
        }
    }

    if (n == 0) {
        return NGX_OK;
    }

    dst = ngx_pnalloc(r->pool, r->request_line.len + n * 3);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    start = dst;

    while (p < last) {
        if ((*p == '?' || *p == '&')
            && last - p >= 8
            && ngx_strncmp(p + 1, "secret=", 7) == 0)
        {
            dst = ngx_cpymem(dst, p, 8);
            dst = ngx_cpymem(dst, "***", 3);

            for (p += 8; p < last; p++) {
                if (*p == '&' || *p == ' ' || *p == '#') {
                    break;
                }
            }

            continue;
        }

        *dst++ = *p++;
    }

    r->request_line.data = start;
    r->request_line.len = dst - start;

    return NGX_OK;
}


/*
 * The secret comes in the X-Webhook-Secret header or, as PhantomBuster can
 * only do, in the "secret" query argument.  It is never logged.
 */

static ngx_int_t
ngx_http_phantombuster_check_secret(ngx_http_request_t *r,
    ngx_http_phantombuster_loc_conf_t *plcf)
{
    u_char           *dst, *src;
    ngx_str_t         given, arg;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (plcf->secret_off == 1) {
        return NGX_OK;
    }

    ngx_str_null(&given);

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("X-Webhook-Secret") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Webhook-Secret",
                               sizeof("X-Webhook-Secret") - 1)
               == 0)
        {
            given = h[i].value;
            break;
        }
    }

    if (given.len == 0
        && ngx_http_arg(r, (u_char *) "secret", 6, &arg) == NGX_OK
        && arg.len > 0)
    {
        dst = ngx_pnalloc(r->pool, arg.len);
        if (dst == NULL) {
            return NGX_ERROR;
        }

        given.data = dst;
        src = arg.data;

        ngx_unescape_uri(&dst, &src, arg.len, 0);

        given.len = dst - given.data;
    }

    if (given.len == 0) {
        return NGX_HTTP_UNAUTHORIZED;
    }

    if (!ngx_http_phantombuster_secret_equal(&plcf->secret, &given)) {
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/*
 * Constant time in the length of the expected secret: every byte is
 * looked at whatever the others are.
 */

ngx_uint_t
ngx_http_phantombuster_secret_equal(ngx_str_t *expected, ngx_str_t *given)
{
    size_t           i;
    volatile u_char  diff;

    diff = (expected->len != given->len);

    for (i = 0; i < expected->len; i++) {
        diff |= expected->data[i]
                ^ (i < given->len ? given->data[i] : (u_char) 0);
    }

    return diff == 0;
}


static void
ngx_http_phantombuster_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_http_phantombuster_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_phantombuster_module);

    rc = ngx_http_phantombuster_process(r, ctx);

    if (rc == NGX_DONE) {
        /* waiting for Redis */
        return;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_phantombuster_process(ngx_http_request_t *r,
    ngx_http_phantombuster_ctx_t *ctx)
{
    u_char                              *p, *last, *queue, *seen, *envelope,
                                        *body;
    size_t                               len, size, head_len, seen_cap;
    int64_t                              now;
    ngx_int_t                            rc;
    ngx_time_t                          *tp;
    const char                          *reason;
    pb_payload_t                         payload;
    ngx_http_cleanup_t                  *hcln;
    ngx_str_t                           *args;
    ngx_http_phantombuster_op_t         *op;
    ngx_http_phantombuster_loc_conf_t   *plcf;
    ngx_http_phantombuster_main_conf_t  *pmcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_phantombuster_module);
    pmcf = ngx_http_get_module_main_conf(r, ngx_http_phantombuster_module);

    if (ngx_http_phantombuster_body_length(r, &len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_phantombuster_request_id(r, pmcf->request_id_index,
                                          &ctx->request_id)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * One allocation holds everything the push needs for as long as it is
     * in flight, however long the request itself lives: the queue name,
     * the seen key, the envelope (head, body as received, tail) and the
     * numeric arguments.
     */

    seen_cap = plcf->queue.len + sizeof(PB_SEEN_INFIX) + PB_ID_MAX_LEN + 1;
    head_len = PB_ENVELOPE_HEAD_MAX(ctx->request_id.len, plcf->queue.len);

    size = sizeof(ngx_http_phantombuster_op_t)
           + plcf->queue.len + 1
           + seen_cap
           + head_len + len + PB_ENVELOPE_TAIL_LEN
           + 2 * NGX_INT64_LEN
           + ctx->request_id.len;

    op = ngx_alloc(size, r->connection->log);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(op, sizeof(ngx_http_phantombuster_op_t));

    p = (u_char *) (op + 1);

    queue = p;
    p = ngx_cpymem(p, plcf->queue.data, plcf->queue.len);
    *p++ = '\0';

    seen = p;
    p += seen_cap;

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000 + tp->msec;

    envelope = p;
    head_len = pb_envelope_head((char *) envelope, head_len,
                                (char *) ctx->request_id.data,
                                ctx->request_id.len, now,
                                (char *) queue, plcf->queue.len);
    if (head_len == 0) {
        ngx_free(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body = envelope + head_len;

    if (ngx_http_phantombuster_body_copy(r, body, len) != NGX_OK) {
        ngx_free(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (pb_payload_parse((char *) body, len, &payload, &reason) != 0) {
        ngx_free(op);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "phantombuster: webhook rejected: %s", reason);

        return ngx_http_phantombuster_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                             reason);
    }

    ctx->container_id.len = ngx_strlen(payload.container_id);
    ctx->container_id.data = ngx_pnalloc(r->pool, ctx->container_id.len);

    if (ctx->container_id.data == NULL) {
        pb_payload_free(&payload);
        ngx_free(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ctx->container_id.data, payload.container_id,
               ctx->container_id.len);

    if (pb_key_join((char *) seen, seen_cap, (char *) queue, PB_SEEN_INFIX,
                    payload.container_id)
        == 0)
    {
        pb_payload_free(&payload);
        ngx_free(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    pb_payload_free(&payload);

    p = body + len;
    p = ngx_cpymem(p, PB_ENVELOPE_TAIL, PB_ENVELOPE_TAIL_LEN);

    args = op->args;

    args[NGX_HTTP_PHANTOMBUSTER_ARG_QUEUE].data = queue;
    args[NGX_HTTP_PHANTOMBUSTER_ARG_QUEUE].len = plcf->queue.len;

    args[NGX_HTTP_PHANTOMBUSTER_ARG_SEEN].data = seen;
    args[NGX_HTTP_PHANTOMBUSTER_ARG_SEEN].len = ngx_strlen(seen);

    args[NGX_HTTP_PHANTOMBUSTER_ARG_ENVELOPE].data = envelope;
    args[NGX_HTTP_PHANTOMBUSTER_ARG_ENVELOPE].len = p - envelope;

    args[NGX_HTTP_PHANTOMBUSTER_ARG_DEDUPE].data = p;
    last = ngx_sprintf(p, "%M", plcf->dedupe);
    args[NGX_HTTP_PHANTOMBUSTER_ARG_DEDUPE].len = last - p;
    p = last;

    args[NGX_HTTP_PHANTOMBUSTER_ARG_MAX].data = p;
    last = ngx_sprintf(p, "%i", plcf->max_queue);
    args[NGX_HTTP_PHANTOMBUSTER_ARG_MAX].len = last - p;
    p = last;

    args[NGX_HTTP_PHANTOMBUSTER_ARG_ID].data = p;
    ngx_memcpy(p, ctx->request_id.data, ctx->request_id.len);
    args[NGX_HTTP_PHANTOMBUSTER_ARG_ID].len = ctx->request_id.len;

    op->request = r;
    op->handler = ngx_http_phantombuster_push_done;

    hcln = ngx_http_cleanup_add(r, 0);
    if (hcln == NULL) {
        ngx_free(op);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    hcln->handler = ngx_http_phantombuster_cleanup;
    hcln->data = r;

    rc = ngx_http_phantombuster_redis_push(plcf->redis, op);

    if (rc != NGX_OK) {
        ngx_free(op);
        ctx->push_result = NGX_HTTP_PHANTOMBUSTER_UNAVAILABLE;
        return ngx_http_phantombuster_answer(r, ctx);
    }

    /* the answer if phantombuster_redis_timeout comes first */

    ctx->push_result = NGX_HTTP_PHANTOMBUSTER_UNAVAILABLE;
    ctx->query.done = ngx_http_phantombuster_pushed;

    ngx_http_phantombuster_query_wait(r, &ctx->query, op);

    return NGX_DONE;
}


ngx_int_t
ngx_http_phantombuster_body_length(ngx_http_request_t *r, size_t *len)
{
    off_t         total;
    ngx_chain_t  *cl;

    total = 0;

    if (r->request_body != NULL) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            total += ngx_buf_size(cl->buf);
        }
    }

    if (total < 0 || (uint64_t) total > NGX_MAX_SIZE_T_VALUE / 2) {
        return NGX_ERROR;
    }

    *len = (size_t) total;

    return NGX_OK;
}


/*
 * The body may sit in memory, in several buffers, or in a temporary file
 * when it outgrew client_body_buffer_size.
 */

ngx_int_t
ngx_http_phantombuster_body_copy(ngx_http_request_t *r, u_char *dst,
    size_t len)
{
    size_t        size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (r->request_body == NULL) {
        return NGX_OK;
    }

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            size = b->last - b->pos;

            if (size > len) {
                return NGX_ERROR;
            }

            dst = ngx_cpymem(dst, b->pos, size);
            len -= size;
            continue;
        }

        if (b->in_file) {
            size = (size_t) (b->file_last - b->file_pos);

            if (size > len) {
                return NGX_ERROR;
            }

            n = ngx_read_file(b->file, dst, size, b->file_pos);

            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }

            if ((size_t) n != size) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              ngx_read_file_n " read only %z of %uz bytes "
                              "from the request body file", n, size);
                return NGX_ERROR;
            }

            dst += size;
            len -= size;
        }
    }

    return (len == 0) ? NGX_OK : NGX_ERROR;
}


/*
 * Called from inside hiredis's reply callback: record the outcome and let
 * the event loop resume the request once hiredis has unwound.
 */

static void
ngx_http_phantombuster_push_done(ngx_http_phantombuster_op_t *op,
    ngx_uint_t result)
{
    ngx_http_phantombuster_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(op->request, ngx_http_phantombuster_module);

    ctx->push_result = result;

    ngx_http_phantombuster_query_wake(&ctx->query);
}


/* Resumed (or timed out: push_result says unavailable), answer. */

static ngx_int_t
ngx_http_phantombuster_pushed(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q)
{
    ngx_http_phantombuster_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_phantombuster_module);

    return ngx_http_phantombuster_answer(r, ctx);
}


/*
 * Runs when the request is freed or terminated, e.g. the client went away
 * while its push was pending: detach from the op, so the reply callback
 * frees it without touching the request, and drop the timer and the
 * resume event.
 */

static void
ngx_http_phantombuster_cleanup(void *data)
{
    ngx_http_request_t *r = data;

    ngx_http_phantombuster_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_phantombuster_module);
    if (ctx == NULL) {
        return;
    }

    if (ctx->query.op) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "phantombuster: client closed the request while its "
                      "push was pending");

        ngx_str_set(&ctx->result, "client closed request");
    }

    ngx_http_phantombuster_query_detach(&ctx->query);
}


static ngx_int_t
ngx_http_phantombuster_answer(ngx_http_request_t *r,
    ngx_http_phantombuster_ctx_t *ctx)
{
    u_char  *body, *p;
    size_t   len;

    switch (ctx->push_result) {

    case NGX_HTTP_PHANTOMBUSTER_QUEUED:
        ngx_str_set(&ctx->result, "queued");

        len = sizeof("{\"status\":\"queued\",\"id\":\"\"}") - 1
              + ctx->request_id.len;

        body = ngx_pnalloc(r->pool, len);
        if (body == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_sprintf(body, "{\"status\":\"queued\",\"id\":\"%V\"}",
                        &ctx->request_id);

        return ngx_http_phantombuster_send(r, NGX_HTTP_ACCEPTED, body,
                                           p - body);

    case NGX_HTTP_PHANTOMBUSTER_DUPLICATE:
        ngx_str_set(&ctx->result, "duplicate");

        return ngx_http_phantombuster_send(r, NGX_HTTP_OK,
                                       (u_char *) "{\"status\":\"duplicate\"}",
                                       sizeof("{\"status\":\"duplicate\"}")
                                       - 1);

    case NGX_HTTP_PHANTOMBUSTER_FULL:
        return ngx_http_phantombuster_reject(r, ctx,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "queue full");

    default: /* NGX_HTTP_PHANTOMBUSTER_UNAVAILABLE */
        return ngx_http_phantombuster_reject(r, ctx,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "queue unavailable");
    }
}


/*
 * {"error":"<reason>"}.  Reasons are fixed lowercase strings (common/'s
 * never contain input bytes), so they need no escaping.
 */

static ngx_int_t
ngx_http_phantombuster_reject(ngx_http_request_t *r,
    ngx_http_phantombuster_ctx_t *ctx, ngx_uint_t status, const char *reason)
{
    u_char     *body, *p;
    size_t      len;
    ngx_int_t   rc;

    ctx->result.data = (u_char *) reason;
    ctx->result.len = ngx_strlen(reason);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    len = sizeof("{\"error\":\"\"}") - 1 + ctx->result.len;

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(body, "{\"error\":\"%V\"}", &ctx->result);

    return ngx_http_phantombuster_send(r, status, body, p - body);
}


/*
 * A JSON answer, unless the caller set another type; 503s tell the client
 * when to come back.
 */

ngx_int_t
ngx_http_phantombuster_send(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    if (r->headers_out.content_type.len == 0) {
        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
        r->headers_out.content_type_lowcase = NULL;
    }

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        ngx_str_set(&h->value, NGX_HTTP_PHANTOMBUSTER_RETRY_AFTER);
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
