
/*
 * Copyright (C) The phantombuster module authors
 */


#ifndef _NGX_HTTP_PHANTOMBUSTER_STATUS_H_INCLUDED_
#define _NGX_HTTP_PHANTOMBUSTER_STATUS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_phantombuster_redis.h"


/*
 * The operator's side of the module: the status JSON, the admin commands
 * and the Prometheus metrics (ngx_http_phantombuster_status.c,
 * _admin.c, _metrics.c), and the piece they share: a request that waits
 * for one Redis command (ngx_http_phantombuster_query.c).
 */


typedef struct ngx_http_phantombuster_query_s  ngx_http_phantombuster_query_t;

typedef ngx_int_t (*ngx_http_phantombuster_query_pt)(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q);


/* what became of the command */
#define NGX_HTTP_PHANTOMBUSTER_REPLY       0   /* str: string, integer */
#define NGX_HTTP_PHANTOMBUSTER_REPLY_NIL   1
#define NGX_HTTP_PHANTOMBUSTER_REPLY_FAIL  2   /* no Redis, error, timeout */


/*
 * A request waiting for one command.  Lives in the request pool; the op
 * that carries the command belongs to the Redis side once sent (see
 * ngx_http_phantombuster_redis.h), so the request may go first.
 */
struct ngx_http_phantombuster_query_s {
    ngx_http_request_t                *request;
    ngx_http_phantombuster_op_t       *op;
    ngx_http_phantombuster_query_pt    done;
    ngx_msec_t                         timeout;
    ngx_event_t                        timer;
    ngx_event_t                        resume;
    ngx_uint_t                         result;
    ngx_str_t                          reply;
};


ngx_int_t ngx_http_phantombuster_query(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q, ngx_uint_t argc, ngx_str_t *argv,
    const char *script);
void ngx_http_phantombuster_query_wait(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q, ngx_http_phantombuster_op_t *op);
void ngx_http_phantombuster_query_wake(ngx_http_phantombuster_query_t *q);
void ngx_http_phantombuster_query_detach(ngx_http_phantombuster_query_t *q);
ngx_int_t ngx_http_phantombuster_script_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_phantombuster_metrics_done(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q);
ngx_int_t ngx_http_phantombuster_pass_reply(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q);
ngx_int_t ngx_http_phantombuster_only_get(ngx_http_request_t *r);
ngx_int_t ngx_http_phantombuster_not_allowed(ngx_http_request_t *r,
    char *allow);
ngx_int_t ngx_http_phantombuster_unavailable(ngx_http_request_t *r);
ngx_int_t ngx_http_phantombuster_json(ngx_http_request_t *r,
    ngx_uint_t status, const char *body);


/* the content handlers and directives of the three locations */
ngx_int_t ngx_http_phantombuster_admin_handler(ngx_http_request_t *r);

char *ngx_http_phantombuster_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_phantombuster_admin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_phantombuster_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_phantombuster_admin_token(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

ngx_int_t ngx_http_phantombuster_status_init(ngx_conf_t *cf);
ngx_int_t ngx_http_phantombuster_metrics_init(ngx_conf_t *cf);

extern u_char  ngx_http_phantombuster_status_sha[41];
extern u_char  ngx_http_phantombuster_metrics_sha[41];


/* counters in shared memory, for phantombuster_metrics */
#define NGX_HTTP_PHANTOMBUSTER_REDIS_ERROR    0   /* an error reply */
#define NGX_HTTP_PHANTOMBUSTER_REDIS_LOST     1   /* no reply: connection */
#define NGX_HTTP_PHANTOMBUSTER_REDIS_TIMEOUT  2   /* a request gave up */
#define NGX_HTTP_PHANTOMBUSTER_REDIS_CONNECT  3   /* a connect failed */
#define NGX_HTTP_PHANTOMBUSTER_REDIS_NEVENTS  4

void ngx_http_phantombuster_count_redis(ngx_uint_t event);
void ngx_http_phantombuster_count_push(ngx_msec_t ms);


#endif /* _NGX_HTTP_PHANTOMBUSTER_STATUS_H_INCLUDED_ */
