
/*
 * Copyright (C) The phantombuster module authors
 *
 * phantombuster_metrics: Prometheus text.  nginx's own counters (webhooks
 * by result, the Redis push latency histogram, Redis failures) live in a
 * shared memory zone, so every worker adds to the same numbers and a
 * reload keeps them; the worker's side (queue, runs, 429s, failures by
 * exit message...) comes from Redis, formatted there by the script of
 * common/pb_status.c.  Without Redis the nginx part is still served, with
 * phantombuster_redis_up 0.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "pb_status.h"
#include "ngx_http_phantombuster_module.h"
#include "ngx_http_phantombuster_status.h"


#define NGX_HTTP_PHANTOMBUSTER_NBUCKETS  12

/* the nginx part's size: fixed lines, each far below 128 bytes */
#define NGX_HTTP_PHANTOMBUSTER_METRICS_MAX  8192


typedef struct {
    ngx_str_t                          result;     /* $phantombuster_result */
    ngx_str_t                          label;
} ngx_http_phantombuster_result_t;


/* every other result is a validation failure: the last entry */
static ngx_http_phantombuster_result_t  ngx_http_phantombuster_results[] = {
    { ngx_string("queued"), ngx_string("queued") },
    { ngx_string("duplicate"), ngx_string("duplicate") },
    { ngx_string("queue full"), ngx_string("queue_full") },
    { ngx_string("queue unavailable"), ngx_string("queue_unavailable") },
    { ngx_string("client closed request"), ngx_string("client_closed") },
    { ngx_string("method not allowed"), ngx_string("method_not_allowed") },
    { ngx_string("missing secret"), ngx_string("missing_secret") },
    { ngx_string("invalid secret"), ngx_string("invalid_secret") },
    { ngx_string("request body too large"), ngx_string("body_too_large") },
    { ngx_null_string, ngx_string("invalid_payload") }
};

#define NGX_HTTP_PHANTOMBUSTER_NRESULTS                                       \
    (sizeof(ngx_http_phantombuster_results)                                   \
     / sizeof(ngx_http_phantombuster_result_t))


/* upper bounds of the push latency buckets, in ms; then +Inf */
static ngx_msec_t  ngx_http_phantombuster_buckets[] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000
};


static char  *ngx_http_phantombuster_redis_events[] = {
    "error_reply", "connection_lost", "timeout", "connect_failed"
};


typedef struct {
    ngx_atomic_t    webhooks[NGX_HTTP_PHANTOMBUSTER_NRESULTS];
    ngx_atomic_t    push[NGX_HTTP_PHANTOMBUSTER_NBUCKETS + 1];
    ngx_atomic_t    push_ms;
    ngx_atomic_t    redis[NGX_HTTP_PHANTOMBUSTER_REDIS_NEVENTS];
} ngx_http_phantombuster_counters_t;


static ngx_int_t ngx_http_phantombuster_metrics_zone(ngx_shm_zone_t *zone,
    void *data);
static ngx_int_t ngx_http_phantombuster_metrics_log(ngx_http_request_t *r);
static u_char *ngx_http_phantombuster_metrics_nginx(u_char *p, u_char *last);


/* set in the master by the zone's init; workers inherit it */
static ngx_http_phantombuster_counters_t  *ngx_http_phantombuster_counters;


ngx_int_t
ngx_http_phantombuster_metrics_init(ngx_conf_t *cf)
{
    ngx_str_t                   name;
    ngx_shm_zone_t             *zone;
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    ngx_str_set(&name, "phantombuster_metrics");

    /* the smallest zone a slab pool fits in */

    zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                 &ngx_http_phantombuster_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_http_phantombuster_metrics_zone;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_phantombuster_metrics_log;

    return NGX_OK;
}


/*
 * On a reload the zone is kept (same name, size and module) and its old
 * counters are adopted, so the numbers keep growing as Prometheus
 * expects of counters.
 */

static ngx_int_t
ngx_http_phantombuster_metrics_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t                    *shpool;
    ngx_http_phantombuster_counters_t  *counters;

    if (data) {
        zone->data = data;
        ngx_http_phantombuster_counters = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        zone->data = shpool->data;
        ngx_http_phantombuster_counters = shpool->data;
        return NGX_OK;
    }

    counters = ngx_slab_calloc(shpool,
                               sizeof(ngx_http_phantombuster_counters_t));
    if (counters == NULL) {
        return NGX_ERROR;
    }

    shpool->data = counters;
    zone->data = counters;
    ngx_http_phantombuster_counters = counters;

    return NGX_OK;
}


/* Counts each webhook the module handled, by its $phantombuster_result. */

static ngx_int_t
ngx_http_phantombuster_metrics_log(ngx_http_request_t *r)
{
    ngx_uint_t                          i;
    ngx_http_phantombuster_ctx_t       *ctx;
    ngx_http_phantombuster_result_t    *res;
    ngx_http_phantombuster_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_phantombuster_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_phantombuster_module);

    if (!plcf->enable || ctx == NULL || ctx->result.len == 0
        || ngx_http_phantombuster_counters == NULL)
    {
        return NGX_OK;
    }

    res = ngx_http_phantombuster_results;

    for (i = 0; i < NGX_HTTP_PHANTOMBUSTER_NRESULTS - 1; i++) {
        if (res[i].result.len == ctx->result.len
            && ngx_strncmp(res[i].result.data, ctx->result.data,
                           ctx->result.len)
               == 0)
        {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&ngx_http_phantombuster_counters->webhooks[i],
                                1);

    return NGX_OK;
}


void
ngx_http_phantombuster_count_redis(ngx_uint_t event)
{
    if (ngx_http_phantombuster_counters) {
        (void) ngx_atomic_fetch_add(
                             &ngx_http_phantombuster_counters->redis[event], 1);
    }
}


void
ngx_http_phantombuster_count_push(ngx_msec_t ms)
{
    ngx_uint_t  i;

    if (ngx_http_phantombuster_counters == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_PHANTOMBUSTER_NBUCKETS; i++) {
        if (ms <= ngx_http_phantombuster_buckets[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&ngx_http_phantombuster_counters->push[i], 1);
    (void) ngx_atomic_fetch_add(&ngx_http_phantombuster_counters->push_ms,
                                ms);
}


/* The answer of a phantombuster_metrics location. */

ngx_int_t
ngx_http_phantombuster_metrics_done(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q)
{
    u_char      *body, *p, *last;
    size_t       size;
    ngx_uint_t   up;

    up = (q->result == NGX_HTTP_PHANTOMBUSTER_REPLY);

    size = NGX_HTTP_PHANTOMBUSTER_METRICS_MAX + (up ? q->reply.len : 0);

    body = ngx_pnalloc(r->pool, size);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = body + size;

    p = ngx_http_phantombuster_metrics_nginx(body, last);

    p = ngx_slprintf(p, last,
                     "# HELP phantombuster_redis_up 1 when nginx could read "
                     "the worker's metrics from Redis.\n"
                     "# TYPE phantombuster_redis_up gauge\n"
                     "phantombuster_redis_up %ui\n", up);

    if (up && (size_t) (last - p) >= q->reply.len) {
        p = ngx_cpymem(p, q->reply.data, q->reply.len);
    }

    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    return ngx_http_phantombuster_send(r, NGX_HTTP_OK, body, p - body);
}


static u_char *
ngx_http_phantombuster_metrics_nginx(u_char *p, u_char *last)
{
    ngx_uint_t                          i;
    ngx_atomic_uint_t                   n;
    ngx_http_phantombuster_counters_t  *c;

    c = ngx_http_phantombuster_counters;

    if (c == NULL) {
        return p;
    }

    p = ngx_slprintf(p, last,
                     "# HELP phantombuster_webhook_requests_total Webhook "
                     "requests nginx handled, by result.\n"
                     "# TYPE phantombuster_webhook_requests_total counter\n");

    for (i = 0; i < NGX_HTTP_PHANTOMBUSTER_NRESULTS; i++) {
        p = ngx_slprintf(p, last,
                         "phantombuster_webhook_requests_total"
                         "{result=\"%V\"} %uA\n",
                         &ngx_http_phantombuster_results[i].label,
                         c->webhooks[i]);
    }

    p = ngx_slprintf(p, last,
                     "# HELP phantombuster_redis_push_duration_seconds From "
                     "sending a webhook's push to Redis's reply.\n"
                     "# TYPE phantombuster_redis_push_duration_seconds "
                     "histogram\n");

    n = 0;

    for (i = 0; i <= NGX_HTTP_PHANTOMBUSTER_NBUCKETS; i++) {
        n += c->push[i];

        if (i == NGX_HTTP_PHANTOMBUSTER_NBUCKETS) {
            p = ngx_slprintf(p, last,
                             "phantombuster_redis_push_duration_seconds_bucket"
                             "{le=\"+Inf\"} %uA\n", n);
            break;
        }

        p = ngx_slprintf(p, last,
                         "phantombuster_redis_push_duration_seconds_bucket"
                         "{le=\"%M.%03M\"} %uA\n",
                         ngx_http_phantombuster_buckets[i] / 1000,
                         ngx_http_phantombuster_buckets[i] % 1000, n);
    }

    p = ngx_slprintf(p, last,
                     "phantombuster_redis_push_duration_seconds_sum "
                     "%uA.%03uA\n"
                     "phantombuster_redis_push_duration_seconds_count %uA\n"
                     "# HELP phantombuster_redis_errors_total Redis failures "
                     "seen by nginx, by kind.\n"
                     "# TYPE phantombuster_redis_errors_total counter\n",
                     c->push_ms / 1000, c->push_ms % 1000, n);

    for (i = 0; i < NGX_HTTP_PHANTOMBUSTER_REDIS_NEVENTS; i++) {
        p = ngx_slprintf(p, last,
                         "phantombuster_redis_errors_total{kind=\"%s\"} "
                         "%uA\n",
                         ngx_http_phantombuster_redis_events[i], c->redis[i]);
    }

    return p;
}
