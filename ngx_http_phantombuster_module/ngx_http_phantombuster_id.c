
/*
 * Copyright (C) The phantombuster module authors
 *
 * $request_id for webhook requests.  nginx makes it from 16 fresh bytes of
 * OpenSSL's RAND_bytes(), which costs about a tenth of a webhook's CPU in
 * nginx.  An id only has to be unique, not secret, so each worker draws 16
 * random bytes once and then counts: the id is the first 8 bytes, then the
 * counter mixed with the other 8 by a bijection (SplitMix64's finalizer),
 * in the same 32 hex digits as nginx's.  Unique within a worker because
 * the counter never repeats; across workers, hosts and restarts because
 * their random halves differ (a collision needs two equal 64-bit draws).
 *
 * The value is stored as the request's $request_id, unless something
 * asked for $request_id first: logs, headers and the envelope all show the
 * same id.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_phantombuster_module.h"


static uint64_t  ngx_http_phantombuster_id_key[2];
static uint64_t  ngx_http_phantombuster_id_count;


static uint64_t ngx_http_phantombuster_id_mix(uint64_t x);


void
ngx_http_phantombuster_id_init(ngx_cycle_t *cycle)
{
    ssize_t    n;
    ngx_fd_t   fd;
    ngx_uint_t i;

    n = -1;
    fd = ngx_open_file("/dev/urandom", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd != NGX_INVALID_FILE) {
        n = read(fd, ngx_http_phantombuster_id_key,
                 sizeof(ngx_http_phantombuster_id_key));
        (void) ngx_close_file(fd);
    }

    if (n != (ssize_t) sizeof(ngx_http_phantombuster_id_key)) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "phantombuster: could not read /dev/urandom, request "
                      "ids are seeded from the time and pid");

        for (i = 0; i < 2; i++) {
            ngx_http_phantombuster_id_key[i] =
                ngx_http_phantombuster_id_mix((uint64_t) ngx_time() << 32
                                              ^ (uint64_t) ngx_pid << 8 ^ i
                                              ^ (uint64_t) ngx_random());
        }
    }

    ngx_http_phantombuster_id_count = 0;
}


/*
 * The request's $request_id, made here unless it already has one.
 * Returns NGX_ERROR only when out of memory.
 */

ngx_int_t
ngx_http_phantombuster_request_id(ngx_http_request_t *r, ngx_int_t index,
    ngx_str_t *id)
{
    u_char                     *p;
    uint64_t                    half[2];
    ngx_http_variable_value_t  *vv;

    vv = &r->variables[index];

    if (!vv->valid || vv->not_found || vv->len == 0) {
        p = ngx_pnalloc(r->pool, 32);
        if (p == NULL) {
            return NGX_ERROR;
        }

        half[0] = ngx_http_phantombuster_id_key[0];
        half[1] = ngx_http_phantombuster_id_mix(
                                    ngx_http_phantombuster_id_key[1]
                                    + ngx_http_phantombuster_id_count++);

        ngx_hex_dump(p, (u_char *) half, sizeof(half));

        vv->data = p;
        vv->len = 32;
        vv->valid = 1;
        vv->no_cacheable = 0;
        vv->not_found = 0;
        vv->escape = 0;
    }

    id->data = vv->data;
    id->len = vv->len;

    return NGX_OK;
}


static uint64_t
ngx_http_phantombuster_id_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;

    return x ^ (x >> 31);
}
