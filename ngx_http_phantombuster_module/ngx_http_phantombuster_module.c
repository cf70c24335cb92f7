
/*
 * Copyright (C) The phantombuster module authors
 *
 * Directives, configuration, variables and the per-worker Redis lifecycle
 * of the PhantomBuster webhook receiver.  The request path lives in
 * ngx_http_phantombuster_handler.c, the hiredis adapter in
 * ngx_http_phantombuster_redis.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include "pb_keys.h"
#include "ngx_http_phantombuster_module.h"
#include "ngx_http_phantombuster_status.h"


static ngx_int_t ngx_http_phantombuster_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_phantombuster_result_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_phantombuster_container_id_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static void *ngx_http_phantombuster_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_phantombuster_init_main_conf(ngx_conf_t *cf,
    void *conf);
static void *ngx_http_phantombuster_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_phantombuster_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_phantombuster_webhook(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_phantombuster_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_phantombuster_queue(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_phantombuster_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_phantombuster_secret_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_phantombuster_dedupe(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_phantombuster_max_queue(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_http_phantombuster_redis_t *ngx_http_phantombuster_add_redis(
    ngx_conf_t *cf, ngx_str_t *address, ngx_uint_t db, ngx_str_t *user,
    ngx_str_t *password);
static ngx_uint_t ngx_http_phantombuster_same(ngx_str_t *a, ngx_str_t *b);
static ngx_int_t ngx_http_phantombuster_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_phantombuster_init_process(ngx_cycle_t *cycle);
static void ngx_http_phantombuster_exit_process(ngx_cycle_t *cycle);


static ngx_conf_num_bounds_t  ngx_http_phantombuster_timeout_bounds = {
    ngx_conf_check_num_bounds, 1, 3600000
};


static ngx_command_t  ngx_http_phantombuster_commands[] = {

    { ngx_string("phantombuster_webhook"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_phantombuster_webhook,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("phantombuster_redis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_phantombuster_redis,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("phantombuster_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_phantombuster_loc_conf_t, timeout),
      &ngx_http_phantombuster_timeout_bounds },

    { ngx_string("phantombuster_queue"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_phantombuster_queue,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("phantombuster_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_phantombuster_secret,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("phantombuster_secret_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_phantombuster_secret_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("phantombuster_dedupe"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_phantombuster_dedupe,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("phantombuster_max_queue"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_phantombuster_max_queue,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* the operator's locations: ngx_http_phantombuster_status.c */

    { ngx_string("phantombuster_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_phantombuster_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("phantombuster_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_phantombuster_admin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("phantombuster_admin_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_phantombuster_admin_token,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("phantombuster_admin_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_phantombuster_admin_token,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("phantombuster_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_phantombuster_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_phantombuster_module_ctx = {
    ngx_http_phantombuster_add_variables,  /* preconfiguration */
    ngx_http_phantombuster_init,           /* postconfiguration */

    ngx_http_phantombuster_create_main_conf, /* create main configuration */
    ngx_http_phantombuster_init_main_conf, /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_phantombuster_create_loc_conf, /* create location configuration */
    ngx_http_phantombuster_merge_loc_conf  /* merge location configuration */
};


ngx_module_t  ngx_http_phantombuster_module = {
    NGX_MODULE_V1,
    &ngx_http_phantombuster_module_ctx,    /* module context */
    ngx_http_phantombuster_commands,       /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_phantombuster_init_process,   /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_phantombuster_exit_process,   /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_phantombuster_vars[] = {

    { ngx_string("phantombuster_result"), NULL,
      ngx_http_phantombuster_result_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("phantombuster_container_id"), NULL,
      ngx_http_phantombuster_container_id_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_phantombuster_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_phantombuster_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_phantombuster_str_variable(ngx_http_variable_value_t *v,
    ngx_str_t *s)
{
    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_phantombuster_result_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_phantombuster_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_phantombuster_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_phantombuster_str_variable(v, &ctx->result);
}


static ngx_int_t
ngx_http_phantombuster_container_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_phantombuster_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_phantombuster_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_phantombuster_str_variable(v, &ctx->container_id);
}


static void *
ngx_http_phantombuster_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_phantombuster_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_phantombuster_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&pmcf->servers, cf->pool, 2,
                       sizeof(ngx_http_phantombuster_redis_t *))
        != NGX_OK)
    {
        return NULL;
    }

    pmcf->request_id_index = NGX_ERROR;

    return pmcf;
}


static char *
ngx_http_phantombuster_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_phantombuster_main_conf_t *pmcf = conf;

    u_char         digest[20];
    ngx_str_t      name;
    ngx_sha1_t     sha1;

    /* EVALSHA needs the digest before SCRIPT LOAD has answered */

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, pb_lua_push_webhooks,
                    ngx_strlen(pb_lua_push_webhooks));
    ngx_sha1_final(digest, &sha1);

    ngx_hex_dump(pmcf->script_sha, digest, sizeof(digest));
    pmcf->script_sha[40] = '\0';

    ngx_str_set(&name, "request_id");

    pmcf->request_id_index = ngx_http_get_variable_index(cf, &name);
    if (pmcf->request_id_index == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_phantombuster_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_phantombuster_loc_conf_t  *plcf;

    plcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_phantombuster_loc_conf_t));
    if (plcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     plcf->enable = 0;
     *     plcf->redis = NULL;
     *     plcf->queue = { 0, NULL };
     *     plcf->secret = { 0, NULL };
     *     plcf->status = 0;
     *     plcf->admin = 0;
     *     plcf->metrics = 0;
     *     plcf->admin_token = { 0, NULL };
     */

    plcf->timeout = NGX_CONF_UNSET_MSEC;
    plcf->secret_off = NGX_CONF_UNSET;
    plcf->dedupe = NGX_CONF_UNSET_MSEC;
    plcf->max_queue = NGX_CONF_UNSET;

    return plcf;
}


static char *
ngx_http_phantombuster_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_phantombuster_loc_conf_t *prev = parent;
    ngx_http_phantombuster_loc_conf_t *conf = child;

    ngx_str_t                        address;
    ngx_http_core_loc_conf_t        *clcf;
    ngx_http_phantombuster_redis_t  *rs;

    if (conf->redis == NULL) {
        conf->redis = prev->redis;
    }

    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 2000);
    ngx_conf_merge_str_value(conf->queue, prev->queue, PB_DEFAULT_QUEUE);

    if (conf->secret.data == NULL && conf->secret_off == NGX_CONF_UNSET) {
        conf->secret = prev->secret;
        conf->secret_off = prev->secret_off;
    }

    ngx_conf_merge_msec_value(conf->dedupe, prev->dedupe, 86400000);
    ngx_conf_merge_value(conf->max_queue, prev->max_queue, 0);
    ngx_conf_merge_str_value(conf->admin_token, prev->admin_token, "");

    if (!conf->enable && !conf->status && !conf->admin && !conf->metrics) {
        return NGX_CONF_OK;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (conf->admin && conf->admin_token.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "phantombuster_admin location \"%V\" has no "
                           "token: set \"phantombuster_admin_token\" or "
                           "\"phantombuster_admin_token_file\"",
                           &clcf->name);
        return NGX_CONF_ERROR;
    }

    if (conf->enable && conf->secret.data == NULL && conf->secret_off != 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "phantombuster_webhook location \"%V\" has no "
                           "secret: set \"phantombuster_secret\" or "
                           "\"phantombuster_secret_file\", or disable the "
                           "check explicitly with \"phantombuster_secret off\"",
                           &clcf->name);
        return NGX_CONF_ERROR;
    }

    if (conf->redis == NULL) {
        ngx_str_set(&address, NGX_HTTP_PHANTOMBUSTER_DEFAULT_REDIS);

        conf->redis = ngx_http_phantombuster_add_redis(cf, &address, 0, NULL,
                                                     NULL);
        if (conf->redis == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rs = conf->redis;
    rs->used = 1;

    /* the connection's connect timeout is the tightest of its users' */

    if (rs->connect_timeout == NGX_CONF_UNSET_MSEC
        || rs->connect_timeout > conf->timeout)
    {
        rs->connect_timeout = conf->timeout;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_phantombuster_webhook(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_phantombuster_loc_conf_t *plcf = conf;

    ngx_http_core_loc_conf_t            *clcf;
    ngx_http_phantombuster_main_conf_t  *pmcf;

    if (plcf->enable) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != NULL) {
        return "conflicts with another content handler in this location";
    }

    clcf->handler = ngx_http_phantombuster_handler;
    plcf->enable = 1;

    pmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_phantombuster_module);
    pmcf->webhooks = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_phantombuster_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_phantombuster_loc_conf_t *plcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value, user, password, file;
    ngx_uint_t  i, db;

    if (plcf->redis != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    db = 0;
    ngx_str_null(&user);
    ngx_str_null(&password);
    ngx_str_null(&file);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            n = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (n == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid redis database number \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            db = (ngx_uint_t) n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "user=", 5) == 0
            && value[i].len > 5)
        {
            user.data = value[i].data + 5;
            user.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            file.data = value[i].data + 14;
            file.len = value[i].len - 14;

            if (ngx_http_phantombuster_read_secret_file(cf, &file, &password)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    /* a Redis 6 ACL user: AUTH user password */

    if (user.len && password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "redis \"user=\" needs \"password_file=\"");
        return NGX_CONF_ERROR;
    }

    plcf->redis = ngx_http_phantombuster_add_redis(cf, &value[1], db, &user,
                                                   &password);
    if (plcf->redis == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_http_phantombuster_redis_t *
ngx_http_phantombuster_add_redis(ngx_conf_t *cf, ngx_str_t *address,
    ngx_uint_t db, ngx_str_t *user, ngx_str_t *password)
{
    u_char                              *p;
    size_t                               len;
    ngx_url_t                            u;
    ngx_str_t                            none;
    ngx_uint_t                           i;
    ngx_http_phantombuster_redis_t      *rs, **rsp;
    ngx_http_phantombuster_main_conf_t  *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_phantombuster_module);

    ngx_str_null(&none);

    if (user == NULL) {
        user = &none;
    }

    if (password == NULL) {
        password = &none;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *address;
    u.default_port = NGX_HTTP_PHANTOMBUSTER_DEFAULT_PORT;

    /* resolved here, once: hiredis would resolve names with a blocking call */

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in redis address \"%V\"", u.err, address);
        }

        return NULL;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "redis address \"%V\" has no address", address);
        return NULL;
    }

    rs = ngx_pcalloc(cf->pool, sizeof(ngx_http_phantombuster_redis_t));
    if (rs == NULL) {
        return NULL;
    }

    rs->name = *address;
    rs->db = db;
    rs->user = *user;
    rs->password = *password;
    rs->connect_timeout = NGX_CONF_UNSET_MSEC;
    rs->script_sha = pmcf->script_sha;

#if (NGX_HAVE_UNIX_DOMAIN)
    if (u.family == AF_UNIX) {
        rs->is_unix = 1;

        /* "unix:" and the path; ngx_parse_url() checked the length */

        len = address->len - 5;

        p = ngx_pnalloc(cf->pool, len + 1);
        if (p == NULL) {
            return NULL;
        }

        ngx_memcpy(p, address->data + 5, len);
        p[len] = '\0';

        rs->host.data = p;
        rs->host.len = len;

    } else
#endif
    {
        p = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
        if (p == NULL) {
            return NULL;
        }

        len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p,
                            NGX_SOCKADDR_STRLEN, 0);
        p[len] = '\0';

        rs->host.data = p;
        rs->host.len = len;
        rs->port = u.port;
    }

    /* one connection per distinct server, however many locations use it */

    rsp = pmcf->servers.elts;

    for (i = 0; i < pmcf->servers.nelts; i++) {
        if (rsp[i]->port == rs->port
            && rsp[i]->db == rs->db
            && rsp[i]->is_unix == rs->is_unix
            && ngx_http_phantombuster_same(&rsp[i]->host, &rs->host)
            && ngx_http_phantombuster_same(&rsp[i]->user, &rs->user)
            && ngx_http_phantombuster_same(&rsp[i]->password, &rs->password))
        {
            return rsp[i];
        }
    }

    rsp = ngx_array_push(&pmcf->servers);
    if (rsp == NULL) {
        return NULL;
    }

    *rsp = rs;

    return rs;
}


static ngx_uint_t
ngx_http_phantombuster_same(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || ngx_strncmp(a->data, b->data, a->len) == 0);
}


static char *
ngx_http_phantombuster_queue(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_phantombuster_loc_conf_t *plcf = conf;

    u_char     *p, *last;
    ngx_str_t  *value;

    if (plcf->queue.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "must not be empty";
    }

    /* the name goes into every envelope, which must stay valid JSON */

    p = value[1].data;
    last = p + value[1].len;

    while (p < last) {
        if (*p < 0x20 || *p == 0x7f) {
            return "must not contain control characters";
        }

        if (*p < 0x80) {
            p++;
            continue;
        }

        if (ngx_utf8_decode(&p, last - p) > 0x10ffff) {
            return "must be valid UTF-8";
        }
    }

    plcf->queue = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_phantombuster_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_phantombuster_loc_conf_t *plcf = conf;

    ngx_str_t  *value;

    if (plcf->secret.data != NULL || plcf->secret_off != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        plcf->secret_off = 1;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "must not be empty";
    }

    plcf->secret = value[1];
    plcf->secret_off = 0;

    return NGX_CONF_OK;
}


static char *
ngx_http_phantombuster_secret_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_phantombuster_loc_conf_t *plcf = conf;

    ngx_str_t  *value;

    if (plcf->secret.data != NULL || plcf->secret_off != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_phantombuster_read_secret_file(cf, &value[1], &plcf->secret)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    plcf->secret_off = 0;

    return NGX_CONF_OK;
}


/*
 * Reads a secret (or a Redis password) from a file at configuration time.
 * Trailing whitespace and line ends are dropped; the content is never
 * logged.
 */

char *
ngx_http_phantombuster_read_secret_file(ngx_conf_t *cf,
    const ngx_str_t *name, ngx_str_t *out)
{
    u_char           *buf;
    size_t            len;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t         path;
    ngx_file_info_t   fi;

    path = *name;

    if (path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty secret file name");
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &path);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", &path);
        goto failed;
    }

    len = (size_t) ngx_file_size(&fi);

    if (len > NGX_HTTP_PHANTOMBUSTER_SECRET_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "secret file \"%V\" is too large", &path);
        goto failed;
    }

    buf = ngx_pnalloc(cf->pool, len + 1);
    if (buf == NULL) {
        goto failed;
    }

    n = ngx_read_fd(fd, buf, len);
    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_fd_n " \"%V\" failed", &path);
        goto failed;
    }

    if ((size_t) n != len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           ngx_read_fd_n " \"%V\" returned only %z bytes",
                           &path, n);
        goto failed;
    }

    ngx_close_file(fd);

    while (len > 0
           && (buf[len - 1] == '\n' || buf[len - 1] == '\r'
               || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
    {
        len--;
    }

    if (len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "secret file \"%V\" is empty", &path);
        return NGX_CONF_ERROR;
    }

    buf[len] = '\0';

    out->data = buf;
    out->len = len;

    return NGX_CONF_OK;

failed:

    ngx_close_file(fd);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_phantombuster_dedupe(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_phantombuster_loc_conf_t *plcf = conf;

    ngx_int_t   ms;
    ngx_str_t  *value;

    if (plcf->dedupe != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        plcf->dedupe = 0;
        return NGX_CONF_OK;
    }

    ms = ngx_parse_time(&value[1], 0);

    if (ms == NGX_ERROR || ms == 0) {
        return "invalid value";
    }

    plcf->dedupe = (ngx_msec_t) ms;

    return NGX_CONF_OK;
}


static char *
ngx_http_phantombuster_max_queue(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_phantombuster_loc_conf_t *plcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (plcf->max_queue != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        plcf->max_queue = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n == 0) {
        return "invalid value";
    }

    plcf->max_queue = n;

    return NGX_CONF_OK;
}


/*
 * With a webhook location anywhere, secrets are masked in the request line
 * from the first phase on (see ngx_http_phantombuster_redact()).
 */

static ngx_int_t
ngx_http_phantombuster_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt                 *h;
    ngx_http_core_main_conf_t           *cmcf;
    ngx_http_phantombuster_main_conf_t  *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_phantombuster_module);

    if (pmcf->webhooks) {
        cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

        h = ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = ngx_http_phantombuster_redact_handler;
    }

    return ngx_http_phantombuster_status_init(cf);
}


static ngx_int_t
ngx_http_phantombuster_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                           i;
    ngx_http_phantombuster_redis_t     **rsp;
    ngx_http_phantombuster_main_conf_t  *pmcf;

    /* cache manager and loader processes have nothing to push */

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NGX_OK;
    }

    ngx_http_phantombuster_id_init(cycle);

    /* with an http{} block, every module has its main conf */

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_phantombuster_module);

    rsp = pmcf->servers.elts;

    for (i = 0; i < pmcf->servers.nelts; i++) {
        if (rsp[i]->used) {
            ngx_http_phantombuster_redis_init_process(cycle, rsp[i]);
        }
    }

    return NGX_OK;
}


static void
ngx_http_phantombuster_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                           i;
    ngx_http_phantombuster_redis_t     **rsp;
    ngx_http_phantombuster_main_conf_t  *pmcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return;
    }

    /* with an http{} block, every module has its main conf */

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_phantombuster_module);

    rsp = pmcf->servers.elts;

    for (i = 0; i < pmcf->servers.nelts; i++) {
        ngx_http_phantombuster_redis_exit_process(rsp[i]);
    }
}
