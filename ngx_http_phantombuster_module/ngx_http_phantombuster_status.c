
/*
 * Copyright (C) The phantombuster module authors
 *
 * The directives of the operator's locations and their configuration-time
 * set-up.  phantombuster_status: the queue's status as JSON, computed by
 * Redis with the script of common/pb_status.c that pbctl status runs too,
 * and passed on as it comes (ngx_http_phantombuster_query.c); without
 * Redis it is 503 {"error":"queue unavailable"}.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include "pb_status.h"
#include "ngx_http_phantombuster_module.h"
#include "ngx_http_phantombuster_status.h"


static char *ngx_http_phantombuster_set_handler(ngx_conf_t *cf,
    ngx_flag_t *flag, ngx_http_handler_pt handler);


/* EVALSHA needs the digests before Redis has seen the scripts */
u_char  ngx_http_phantombuster_status_sha[41];
u_char  ngx_http_phantombuster_metrics_sha[41];


char *
ngx_http_phantombuster_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_phantombuster_loc_conf_t *plcf = conf;

    return ngx_http_phantombuster_set_handler(cf, &plcf->status,
                                       ngx_http_phantombuster_script_handler);
}


char *
ngx_http_phantombuster_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_phantombuster_loc_conf_t *plcf = conf;

    return ngx_http_phantombuster_set_handler(cf, &plcf->admin,
                                        ngx_http_phantombuster_admin_handler);
}


char *
ngx_http_phantombuster_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_phantombuster_loc_conf_t *plcf = conf;

    return ngx_http_phantombuster_set_handler(cf, &plcf->metrics,
                                       ngx_http_phantombuster_script_handler);
}


static char *
ngx_http_phantombuster_set_handler(ngx_conf_t *cf, ngx_flag_t *flag,
    ngx_http_handler_pt handler)
{
    ngx_http_core_loc_conf_t  *clcf;

    if (*flag) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != NULL) {
        return "conflicts with another content handler in this location";
    }

    clcf->handler = handler;
    *flag = 1;

    return NGX_CONF_OK;
}


static void
ngx_http_phantombuster_sha(const char *script, u_char *out)
{
    u_char      digest[20];
    ngx_sha1_t  sha1;

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, script, ngx_strlen(script));
    ngx_sha1_final(digest, &sha1);

    ngx_hex_dump(out, digest, sizeof(digest));
    out[40] = '\0';
}


/* postconfiguration */

ngx_int_t
ngx_http_phantombuster_status_init(ngx_conf_t *cf)
{
    ngx_http_phantombuster_sha(pb_lua_status,
                               ngx_http_phantombuster_status_sha);
    ngx_http_phantombuster_sha(pb_lua_metrics,
                               ngx_http_phantombuster_metrics_sha);

    return ngx_http_phantombuster_metrics_init(cf);
}
