
/*
 * Copyright (C) The phantombuster module authors
 *
 * phantombuster_admin: admin commands from the status page.  A POST
 * carries {"cmd": ..., "id": ...}; the module checks the token and the
 * command (common/pb_admin.c) and pushes it onto the worker's command
 * list, answering 202 with the request id once Redis has it.  pb-worker
 * runs the command (worker/commands.c, as pbctl does) and stores its
 * answer, which GET ?result=<request id> returns.  Job state is only ever
 * changed by the worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "pb_admin.h"
#include "pb_keys.h"
#include "ngx_http_phantombuster_module.h"
#include "ngx_http_phantombuster_status.h"


#define NGX_HTTP_PHANTOMBUSTER_TOKEN_VAR  "http_x_phantombuster_token"


typedef struct {
    ngx_http_phantombuster_query_t     query;      /* first: see done */
    ngx_str_t                          request_id;
} ngx_http_phantombuster_admin_ctx_t;


static ngx_int_t ngx_http_phantombuster_admin_check(ngx_http_request_t *r);
static ngx_int_t ngx_http_phantombuster_admin_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *body);
static void ngx_http_phantombuster_admin_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_phantombuster_admin_push(ngx_http_request_t *r);
static ngx_int_t ngx_http_phantombuster_admin_pushed(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q);
static ngx_int_t ngx_http_phantombuster_admin_result(ngx_http_request_t *r);
static ngx_int_t ngx_http_phantombuster_admin_answer(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q);


ngx_int_t
ngx_http_phantombuster_admin_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "phantombuster admin handler");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST))) {
        return ngx_http_phantombuster_not_allowed(r, "GET, HEAD, POST");
    }

    rc = ngx_http_phantombuster_admin_check(r);

    if (rc == NGX_HTTP_UNAUTHORIZED) {
        return ngx_http_phantombuster_admin_refuse(r, rc,
                                             "{\"error\":\"missing token\"}");
    }

    if (rc == NGX_HTTP_FORBIDDEN) {
        return ngx_http_phantombuster_admin_refuse(r, rc,
                                             "{\"error\":\"invalid token\"}");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method != NGX_HTTP_POST) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_phantombuster_admin_result(r);

        if (rc == NGX_DONE) {
            r->main->count++;
        }

        return rc;
    }

    rc = ngx_http_read_client_request_body(r,
                                        ngx_http_phantombuster_admin_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * The token comes in the X-Phantombuster-Token header and is compared in
 * constant time, as the webhook secret is.
 */

static ngx_int_t
ngx_http_phantombuster_admin_check(ngx_http_request_t *r)
{
    ngx_str_t                           name, given;
    ngx_http_variable_value_t          *vv;
    ngx_http_phantombuster_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_phantombuster_module);

    ngx_str_set(&name, NGX_HTTP_PHANTOMBUSTER_TOKEN_VAR);

    vv = ngx_http_get_variable(r, &name, ngx_hash_key(name.data, name.len));
    if (vv == NULL) {
        return NGX_ERROR;
    }

    if (vv->not_found || vv->len == 0) {
        return NGX_HTTP_UNAUTHORIZED;
    }

    given.data = vv->data;
    given.len = vv->len;

    if (!ngx_http_phantombuster_secret_equal(&plcf->admin_token, &given)) {
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_phantombuster_admin_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *body)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_phantombuster_json(r, status, body);
}


static void
ngx_http_phantombuster_admin_body(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_phantombuster_admin_push(r);

    if (rc == NGX_DONE) {
        /* waiting for Redis */
        return;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_phantombuster_admin_push(ngx_http_request_t *r)
{
    char                                *out;
    u_char                              *body, *by, *p;
    size_t                               len;
    ngx_int_t                            rc;
    ngx_str_t                            argv[3], *user;
    const char                          *reason;
    ngx_http_variable_value_t           *vv;
    ngx_http_phantombuster_admin_ctx_t  *ctx;
    ngx_http_phantombuster_main_conf_t  *pmcf;

    pmcf = ngx_http_get_module_main_conf(r, ngx_http_phantombuster_module);

    if (ngx_http_phantombuster_body_length(r, &len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (len > PB_ADMIN_BODY_MAX) {
        return ngx_http_phantombuster_json(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "{\"error\":\"command too large\"}");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_phantombuster_admin_ctx_t));
    body = ngx_pnalloc(r->pool, len + 1);

    if (ctx == NULL || body == NULL
        || ngx_http_phantombuster_body_copy(r, body, len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    vv = ngx_http_get_indexed_variable(r, pmcf->request_id_index);
    if (vv == NULL || vv->not_found || vv->len == 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* who: the auth_basic user if any, else the client address */

    user = &r->connection->addr_text;

    if (ngx_http_auth_basic_user(r) == NGX_OK && r->headers_in.user.len) {
        user = &r->headers_in.user;
    }

    ctx->request_id.len = vv->len;
    ctx->request_id.data = ngx_pnalloc(r->pool, vv->len + 1);
    by = ngx_pnalloc(r->pool, sizeof("admin:") + user->len);

    if (ctx->request_id.data == NULL || by == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_cpymem(ctx->request_id.data, vv->data, vv->len) = '\0';
    *ngx_sprintf(by, "admin:%V", user) = '\0';

    if (pb_admin_command((char *) body, len, (char *) ctx->request_id.data,
                         (char *) by, &out, &reason)
        != 0)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "phantombuster: admin command refused: %s", reason);

        p = ngx_pnalloc(r->pool, sizeof("{\"error\":\"\"}")
                                 + ngx_strlen(reason));
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ngx_sprintf(p, "{\"error\":\"%s\"}", reason) = '\0';

        return ngx_http_phantombuster_json(r, NGX_HTTP_BAD_REQUEST,
                                           (char *) p);
    }

    ngx_str_set(&argv[0], "LPUSH");
    ngx_str_set(&argv[1], PB_KEY_COMMANDS);
    argv[2].data = (u_char *) out;
    argv[2].len = ngx_strlen(out);

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "phantombuster: admin command %s", out);

    ctx->query.done = ngx_http_phantombuster_admin_pushed;

    rc = ngx_http_phantombuster_query(r, &ctx->query, 3, argv, NULL);

    free(out);

    return rc;
}


static ngx_int_t
ngx_http_phantombuster_admin_pushed(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q)
{
    u_char                              *p, *last;
    ngx_http_phantombuster_admin_ctx_t  *ctx;

    ctx = (ngx_http_phantombuster_admin_ctx_t *) q;

    if (q->result != NGX_HTTP_PHANTOMBUSTER_REPLY) {
        return ngx_http_phantombuster_unavailable(r);
    }

    p = ngx_pnalloc(r->pool, sizeof("{\"status\":\"accepted\","
                                    "\"request_id\":\"\"}")
                             + ctx->request_id.len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = ngx_sprintf(p, "{\"status\":\"accepted\",\"request_id\":\"%V\"}",
                       &ctx->request_id);

    return ngx_http_phantombuster_send(r, NGX_HTTP_ACCEPTED, p, last - p);
}


/* GET ?result=<request id>: the worker's answer, once it has run it. */

static ngx_int_t
ngx_http_phantombuster_admin_result(ngx_http_request_t *r)
{
    ngx_str_t                        id, argv[2];
    ngx_http_phantombuster_query_t  *q;

    if (ngx_http_arg(r, (u_char *) "result", 6, &id) != NGX_OK
        || !pb_admin_id_valid((char *) id.data, id.len))
    {
        return ngx_http_phantombuster_json(r, NGX_HTTP_BAD_REQUEST,
                             "{\"error\":\"want ?result=<request id>\"}");
    }

    q = ngx_pcalloc(r->pool, sizeof(ngx_http_phantombuster_query_t));
    argv[1].data = ngx_pnalloc(r->pool,
                               sizeof(PB_KEY_RESULT_PREFIX) - 1 + id.len);

    if (q == NULL || argv[1].data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&argv[0], "GET");
    argv[1].len = ngx_sprintf(argv[1].data, PB_KEY_RESULT_PREFIX "%V", &id)
                  - argv[1].data;

    q->done = ngx_http_phantombuster_admin_answer;

    return ngx_http_phantombuster_query(r, q, 2, argv, NULL);
}


static ngx_int_t
ngx_http_phantombuster_admin_answer(ngx_http_request_t *r,
    ngx_http_phantombuster_query_t *q)
{
    if (q->result == NGX_HTTP_PHANTOMBUSTER_REPLY_NIL) {
        return ngx_http_phantombuster_json(r, NGX_HTTP_NOT_FOUND,
                                           "{\"error\":\"no result yet\"}");
    }

    return ngx_http_phantombuster_pass_reply(r, q);
}


/*
 * phantombuster_admin_token string and phantombuster_admin_token_file
 * file, as phantombuster_secret and phantombuster_secret_file.
 */

char *
ngx_http_phantombuster_admin_token(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_phantombuster_loc_conf_t *plcf = conf;

    ngx_str_t  *value;

    if (plcf->admin_token.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cmd->name.len == sizeof("phantombuster_admin_token_file") - 1) {
        return ngx_http_phantombuster_read_secret_file(cf, &value[1],
                                                       &plcf->admin_token);
    }

    if (value[1].len == 0) {
        return "must not be empty";
    }

    plcf->admin_token = value[1];

    return NGX_CONF_OK;
}
