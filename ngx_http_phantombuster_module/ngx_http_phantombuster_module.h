
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


#define NGX_HTTP_PHANTOMBUSTER_DEFAULT_REDIS    "127.0.0.1:6379"
#define NGX_HTTP_PHANTOMBUSTER_DEFAULT_PORT     6379


typedef struct {
    ngx_array_t                        servers;    /* redis_t * */
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
} ngx_http_phantombuster_loc_conf_t;


typedef struct {
    ngx_str_t                          result;
    ngx_str_t                          container_id;
    ngx_str_t                          request_id;
    ngx_http_phantombuster_op_t       *op;
    ngx_uint_t                         push_result;
    ngx_msec_t                         timeout;
    ngx_event_t                        timer;
    ngx_event_t                        resume;
} ngx_http_phantombuster_ctx_t;


ngx_int_t ngx_http_phantombuster_handler(ngx_http_request_t *r);


extern ngx_module_t  ngx_http_phantombuster_module;


#endif /* _NGX_HTTP_PHANTOMBUSTER_MODULE_H_INCLUDED_ */
