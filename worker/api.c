/*
 * PhantomBuster API v2 client.  See api.h; the contract we follow is
 * shared/research/phantombuster-api.md (endpoints, the undocumented 429 and
 * "maxParallelismReached" refusals).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>

#include "api.h"
#include "backoff.h"
#include "log.h"

#define PB_API_MAX_BODY  ((size_t) 4 << 20)

struct pb_api_s {
    CURL     *curl;
    char      base[512];
    char      key_header[300];      /* "X-Phantombuster-Key: ..." (secret) */
    int64_t   timeout_ms;
    int64_t   retry_after_cap_ms;
};


pb_api_t *
pb_api_new(const char *base_url, const char *api_key, int64_t timeout_ms,
    int64_t retry_after_cap_ms)
{
    pb_api_t  *api;
    size_t     n;

    api = calloc(1, sizeof(*api));
    if (api == NULL) {
        return NULL;
    }

    api->curl = curl_easy_init();
    if (api->curl == NULL) {
        free(api);
        return NULL;
    }

    snprintf(api->base, sizeof(api->base), "%s", base_url);
    n = strlen(api->base);
    while (n > 0 && api->base[n - 1] == '/') {
        api->base[--n] = '\0';
    }

    snprintf(api->key_header, sizeof(api->key_header),
             "X-Phantombuster-Key: %s", api_key);
    api->timeout_ms = timeout_ms;
    api->retry_after_cap_ms = retry_after_cap_ms;

    return api;
}


void
pb_api_free(pb_api_t *api)
{
    if (api == NULL) {
        return;
    }

    curl_easy_cleanup(api->curl);
    memset(api->key_header, 0, sizeof(api->key_header));
    free(api);
}


void
pb_api_result_free(pb_api_result_t *res)
{
    free(res->body);
    json_decref(res->json);
    memset(res, 0, sizeof(*res));
}


static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
    pb_api_result_t  *res = arg;
    size_t            len = size * n;
    char             *body;

    if (res->body_len + len > PB_API_MAX_BODY) {
        return 0;   /* aborts the transfer: no sane answer is this big */
    }

    body = realloc(res->body, res->body_len + len + 1);
    if (body == NULL) {
        return 0;
    }

    memcpy(body + res->body_len, data, len);
    res->body = body;
    res->body_len += len;
    res->body[res->body_len] = '\0';

    return len;
}


/* Holds the result and the retry cap for the header callback. */
typedef struct {
    pb_api_result_t  *res;
    int64_t           cap_ms;
} header_ctx_t;


static size_t
on_header(char *data, size_t size, size_t n, void *arg)
{
    header_ctx_t  *h = arg;
    size_t         len = size * n;
    char           value[128];
    const size_t   name_len = sizeof("Retry-After:") - 1;

    if (len > name_len && len - name_len < sizeof(value)
        && strncasecmp(data, "Retry-After:", name_len) == 0)
    {
        memcpy(value, data + name_len, len - name_len);
        value[len - name_len] = '\0';
        value[strcspn(value, "\r\n")] = '\0';
        h->res->retry_after_ms = pb_retry_after_ms(value, pb_now_ms(),
                                                   h->cap_ms);
    }

    return len;
}


/* The error field PhantomBuster (and the simulator) put in a JSON body. */
static const char *
body_error(const pb_api_result_t *res)
{
    const char  *s;

    if (!json_is_object(res->json)) {
        return NULL;
    }

    s = json_string_value(json_object_get(res->json, "message"));
    if (s == NULL) {
        s = json_string_value(json_object_get(res->json, "error"));
    }

    return s;
}


static void
call(pb_api_t *api, const char *method, const char *path, const char *id,
    json_t *body, pb_api_result_t *res)
{
    char                url[1024];
    char               *text = NULL, *escaped = NULL;
    const char         *msg;
    CURL               *c = api->curl;
    CURLcode            rc;
    header_ctx_t        h;
    struct curl_slist  *headers = NULL;

    memset(res, 0, sizeof(*res));
    res->retry_after_ms = -1;
    h.res = res;
    h.cap_ms = api->retry_after_cap_ms;

    if (id != NULL) {
        escaped = curl_easy_escape(c, id, 0);
        snprintf(url, sizeof(url), "%s/api/v2/%s%cid=%s", api->base, path,
                 strchr(path, '?') ? '&' : '?', escaped ? escaped : "");
        curl_free(escaped);

    } else {
        snprintf(url, sizeof(url), "%s/api/v2/%s", api->base, path);
    }

    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) api->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) (api->timeout_ms < 3000 ? api->timeout_ms : 3000));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, res);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "pb-worker/1");
    /* PhantomBuster's guide: never follow redirects on these calls */
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);

    headers = curl_slist_append(headers, api->key_header);
    headers = curl_slist_append(headers, "Accept: application/json");

    if (strcmp(method, "POST") == 0) {
        text = json_dumps(body, JSON_COMPACT);
        headers = curl_slist_append(headers,
                                    "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, text ? text : "{}");
    }

    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

    rc = curl_easy_perform(c);
    res->curl_code = (int) rc;

    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->http_status);
        if (res->body != NULL) {
            res->json = json_loadb(res->body, res->body_len, JSON_DECODE_ANY,
                                   NULL);
        }

        msg = body_error(res);
        if (res->http_status >= 300) {
            snprintf(res->error, sizeof(res->error),
                     "HTTP %ld from %.60s%s%.160s", res->http_status, path,
                     msg ? ": " : "", msg ? msg : "");
        }

    } else {
        snprintf(res->error, sizeof(res->error), "%.60s: %s", path,
                 curl_easy_strerror(rc));
    }

    /* the handle outlives the list: leave no dangling pointer in it */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    free(text);
}


void
pb_api_launch(pb_api_t *api, const char *agent, const char *argument,
    int max_instances, pb_api_result_t *res)
{
    json_t  *body, *arg;

    body = json_pack("{s:s, s:i}", "id", agent, "maxInstanceCount",
                     max_instances);

    if (argument != NULL && argument[0] != '\0') {
        /* stored as JSON text at enqueue; sent as the JSON value it is */
        arg = json_loads(argument, JSON_DECODE_ANY, NULL);
        json_object_set_new(body, "argument",
                            arg ? arg : json_string(argument));
    }

    call(api, "POST", "agents/launch", NULL, body, res);
    json_decref(body);
}


void
pb_api_fetch_container(pb_api_t *api, const char *container,
    pb_api_result_t *res)
{
    call(api, "GET", "containers/fetch?withResultObject=true", container, NULL,
         res);
}


void
pb_api_stop_agent(pb_api_t *api, const char *agent, pb_api_result_t *res)
{
    json_t  *body = json_pack("{s:s}", "id", agent);

    call(api, "POST", "agents/stop", NULL, body, res);
    json_decref(body);
}


void
pb_api_agent_output(pb_api_t *api, const char *agent, pb_api_result_t *res)
{
    call(api, "GET", "agents/fetch-output", agent, NULL, res);
}


void
pb_api_agent_fetch(pb_api_t *api, const char *agent, pb_api_result_t *res)
{
    call(api, "GET", "agents/fetch", agent, NULL, res);
}


void
pb_api_agent_save(pb_api_t *api, json_t *body, pb_api_result_t *res)
{
    call(api, "POST", "agents/save", NULL, body, res);
}


pb_api_class_t
pb_api_classify(const pb_api_result_t *res)
{
    const char  *error;

    switch (res->curl_code) {

    case CURLE_OK:
        break;

    /* the request never left: safe to try again */
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
        return PB_API_TRANSIENT;

    default:
        /* timeouts, resets, empty replies: the server may have acted */
        return PB_API_AMBIGUOUS;
    }

    /* the simulator and public clients see this as a JSON error field */
    error = json_is_object(res->json)
            ? json_string_value(json_object_get(res->json, "error")) : NULL;
    if ((error != NULL && strcmp(error, "maxParallelismReached") == 0)
        || (res->http_status >= 400 && res->body != NULL
            && strstr(res->body, "maxParallelismReached") != NULL))
    {
        return PB_API_REFUSED;
    }

    if (res->http_status >= 200 && res->http_status < 300) {
        return PB_API_OK;
    }

    if (res->http_status == 429) {
        return PB_API_RATE_LIMITED;
    }

    if (res->http_status == 401 || res->http_status == 403) {
        return PB_API_AUTH;
    }

    if (res->http_status == 404) {
        return PB_API_NOT_FOUND;
    }

    /*
     * A gateway that timed out on, or lost, the origin's answer: the origin
     * may have acted.  (500 and 503 are the server saying it did not.)
     */
    if (res->http_status == 502 || res->http_status == 504) {
        return PB_API_AMBIGUOUS;
    }

    if (res->http_status >= 400 && res->http_status < 500
        && res->http_status != 408)
    {
        return PB_API_PERMANENT;
    }

    return PB_API_TRANSIENT;
}


const char *
pb_api_class_name(pb_api_class_t c)
{
    static const char  *names[] = { "ok", "rate_limited", "refused", "auth",
                                    "not_found", "transient", "ambiguous",
                                    "permanent" };

    return names[c];
}
