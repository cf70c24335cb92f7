
/*
 * Copyright (C) The phantombuster module authors
 */


#ifndef _NGX_HTTP_PHANTOMBUSTER_REDIS_H_INCLUDED_
#define _NGX_HTTP_PHANTOMBUSTER_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


/* what became of one push, as seen by the request that asked for it */
#define NGX_HTTP_PHANTOMBUSTER_QUEUED       0
#define NGX_HTTP_PHANTOMBUSTER_DUPLICATE    1
#define NGX_HTTP_PHANTOMBUSTER_FULL         2
#define NGX_HTTP_PHANTOMBUSTER_UNAVAILABLE  3


/* the push script's keys and arguments, in the order it takes them */
#define NGX_HTTP_PHANTOMBUSTER_ARG_QUEUE     0
#define NGX_HTTP_PHANTOMBUSTER_ARG_SEEN      1
#define NGX_HTTP_PHANTOMBUSTER_ARG_ENVELOPE  2
#define NGX_HTTP_PHANTOMBUSTER_ARG_DEDUPE    3
#define NGX_HTTP_PHANTOMBUSTER_ARG_MAX       4
#define NGX_HTTP_PHANTOMBUSTER_ARG_ID        5
#define NGX_HTTP_PHANTOMBUSTER_NARGS         6


typedef struct ngx_http_phantombuster_op_s  ngx_http_phantombuster_op_t;
typedef struct ngx_http_phantombuster_redis_s  ngx_http_phantombuster_redis_t;

typedef void (*ngx_http_phantombuster_op_pt)(ngx_http_phantombuster_op_t *op,
    ngx_uint_t result);
typedef void (*ngx_http_phantombuster_reply_pt)(
    ngx_http_phantombuster_op_t *op, redisReply *reply);


/*
 * One push in flight.  It is allocated with ngx_alloc() by the request and
 * owned by the Redis side once ngx_http_phantombuster_redis_push() has
 * returned NGX_OK: it waits in the worker's batch until the end of the
 * event loop iteration, then goes out with the batch, and the batch's
 * reply callback (exactly once, never from inside the push call) tells
 * the handler and frees it.  A request that goes away first only clears
 * "request", so a late reply finds nobody to tell and just frees the op.
 */
struct ngx_http_phantombuster_op_s {
    ngx_http_request_t                *request;
    ngx_http_phantombuster_op_pt       handler;
    ngx_http_phantombuster_redis_t    *redis;
    ngx_uint_t                         generation;
    ngx_str_t                          args[NGX_HTTP_PHANTOMBUSTER_NARGS];
    ngx_msec_t                         start;
    ngx_http_phantombuster_op_t       *next;       /* in the same batch */
    ngx_uint_t                         result;     /* once Redis replied */

    /*
     * Any other command (ngx_http_phantombuster_redis_command()): reply
     * gets Redis's answer, or NULL, before the op is freed.  When argv is
     * an EVALSHA that Redis does not know, it is sent again as an EVAL of
     * script.
     */
    ngx_http_phantombuster_reply_pt    reply;
    ngx_uint_t                         argc;
    ngx_str_t                         *argv;
    const char                        *script;
    void                              *data;

    unsigned                           retried:1;
};


/* pushes to one queue waiting for the end of the event loop iteration */
typedef struct {
    ngx_http_phantombuster_op_t       *first;
    ngx_http_phantombuster_op_t      **last;
    ngx_uint_t                         n;
    size_t                             size;       /* of the envelopes */
} ngx_http_phantombuster_batch_t;


/* queues that can gather pushes at once; one more sends the oldest early */
#define NGX_HTTP_PHANTOMBUSTER_BATCHES  4


/*
 * One distinct Redis server (address, db, user, password) named in the
 * configuration.  It lives in the cycle pool; every worker has its own copy
 * of the runtime part, i.e. its own persistent connection.
 */
struct ngx_http_phantombuster_redis_s {
    ngx_str_t                          name;       /* as configured */
    ngx_str_t                          host;       /* numeric, or a path */
    in_port_t                          port;
    ngx_uint_t                         db;
    ngx_str_t                          user;       /* Redis 6 ACL user */
    ngx_str_t                          password;   /* empty: no AUTH */
    ngx_msec_t                         connect_timeout;
    u_char                            *script_sha; /* 40 hex digits */

    unsigned                           is_unix:1;
    unsigned                           used:1;

    /* per worker */
    ngx_log_t                         *log;
    redisAsyncContext                 *ac;
    ngx_connection_t                  *connection;
    ngx_event_t                        connect_timer;
    ngx_event_t                        reconnect_timer;
    ngx_msec_t                         backoff;
    ngx_uint_t                         generation;

    /*
     * The pushes of this event loop iteration, one batch per queue (and
     * dedupe window and limit), each in arrival order: a batch goes out
     * as one transaction or script call from a posted event, which then
     * writes them at once (see redis.c).
     */
    ngx_http_phantombuster_batch_t     batches[NGX_HTTP_PHANTOMBUSTER_BATCHES];
    ngx_uint_t                         nbatches;
    ngx_event_t                        flush;

    unsigned                           ready:1;
    unsigned                           exiting:1;
    unsigned                           holding_write:1; /* in the flush */
    unsigned                           write_held:1;
};


void ngx_http_phantombuster_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_phantombuster_redis_t *rs);
void ngx_http_phantombuster_redis_exit_process(
    ngx_http_phantombuster_redis_t *rs);
ngx_int_t ngx_http_phantombuster_redis_push(ngx_http_phantombuster_redis_t *rs,
    ngx_http_phantombuster_op_t *op);
ngx_int_t ngx_http_phantombuster_redis_command(
    ngx_http_phantombuster_redis_t *rs, ngx_http_phantombuster_op_t *op);
void ngx_http_phantombuster_redis_stalled(ngx_http_phantombuster_redis_t *rs,
    ngx_uint_t generation, ngx_msec_t timeout);


#endif /* _NGX_HTTP_PHANTOMBUSTER_REDIS_H_INCLUDED_ */
