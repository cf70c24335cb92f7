
/*
 * Copyright (C) The phantombuster module authors
 */


#ifndef _NGX_HTTP_PHANTOMBUSTER_MODULE_H_INCLUDED_
#define _NGX_HTTP_PHANTOMBUSTER_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "pb_payload.h"
#include "ngx_http_phantombuster_redis.h"
#include "ngx_http_phantombuster_status.h"


#define NGX_HTTP_PHANTOMBUSTER_DEFAULT_REDIS    "127.0.0.1:6379"
#define NGX_HTTP_PHANTOMBUSTER_DEFAULT_PORT     6379
#define NGX_HTTP_PHANTOMBUSTER_SECRET_MAX       4096


typedef struct {
    ngx_array_t                        servers;    /* redis_t * */
    ngx_flag_t                         webhooks;   /* a webhook location */
    ngx_int_t                          request_id_index;
    u_char                             script_sha[41];
} ngx_http_phantombuster_main_conf_t;


typedef struct {
    ngx_flag_t                         enable;     /* never inherited */
    ngx_http_phantombuster_redis_t    *redis;
    ngx_msec_t                         timeout;
    ngx_str_t                          queue;
    ngx_str_t                          secret;
    ngx_flag_t                         secret_off;
    ngx_msec_t                         dedupe;
    ngx_int_t                          max_queue;
    ngx_flag_t                         status;     /* never inherited */
    ngx_flag_t                         admin;      /* never inherited */
    ngx_flag_t                         metrics;    /* never inherited */
    ngx_str_t                          admin_token;
} ngx_http_phantombuster_loc_conf_t;


typedef struct {
    ngx_str_t                          result;
    ngx_str_t                          container_id;
    ngx_str_t                          request_id;
    ngx_uint_t                         push_result;
    ngx_uint_t                         refuse_status;
    const char                        *refuse_reason;
    ngx_http_phantombuster_query_t     query;      /* the push in flight */
} ngx_http_phantombuster_ctx_t;


ngx_int_t ngx_http_phantombuster_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_phantombuster_redact_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_phantombuster_send(ngx_http_request_t *r,
    ngx_uint_t status, u_char *body, size_t len);
ngx_uint_t ngx_http_phantombuster_secret_equal(ngx_str_t *expected,
    ngx_str_t *given);
ngx_int_t ngx_http_phantombuster_body_length(ngx_http_request_t *r,
    size_t *len);
ngx_int_t ngx_http_phantombuster_body_copy(ngx_http_request_t *r,
    u_char *dst, size_t len);
void ngx_http_phantombuster_id_init(ngx_cycle_t *cycle);
ngx_int_t ngx_http_phantombuster_request_id(ngx_http_request_t *r,
    ngx_int_t index, ngx_str_t *id);
char *ngx_http_phantombuster_read_secret_file(ngx_conf_t *cf,
    const ngx_str_t *name, ngx_str_t *out);


extern ngx_module_t  ngx_http_phantombuster_module;


#endif /* _NGX_HTTP_PHANTOMBUSTER_MODULE_H_INCLUDED_ */
