/*
 * The PhantomBuster API v2 client (libcurl, blocking, one handle reused
 * for keep-alive).  Calls return a result that pb_api_classify() turns into
 * what the caller should do; the key goes in X-Phantombuster-Key and is
 * never logged.
 */

#ifndef PB_API_H
#define PB_API_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

typedef struct pb_api_s  pb_api_t;

typedef enum {
    PB_API_OK = 0,
    PB_API_RATE_LIMITED,    /* 429 */
    PB_API_REFUSED,         /* "maxParallelismReached", whatever the status */
    PB_API_AUTH,            /* 401/403: our configuration, not the job */
    PB_API_NOT_FOUND,       /* 404 */
    PB_API_TRANSIENT,       /* 5xx, 408, or a request that never left */
    PB_API_AMBIGUOUS,       /* sent, no answer (or a gateway's 502/504):
                               it may have happened */
    PB_API_PERMANENT        /* any other 4xx */
} pb_api_class_t;

typedef struct {
    long      http_status;      /* 0 when no response */
    int       curl_code;        /* CURLcode */
    int64_t   retry_after_ms;   /* from Retry-After, -1 when absent */
    char     *body;             /* NUL-terminated response body, or NULL */
    size_t    body_len;
    json_t   *json;             /* the body parsed, when it is JSON */
    char      error[256];       /* one line for logs and dead letters */
} pb_api_result_t;

pb_api_t *pb_api_new(const char *base_url, const char *api_key,
    int64_t timeout_ms, int64_t retry_after_cap_ms);
void pb_api_free(pb_api_t *api);

/* POST /api/v2/agents/launch {"id","argument","maxInstanceCount"}. */
void pb_api_launch(pb_api_t *api, const char *agent, const char *argument,
    int max_instances, pb_api_result_t *res);

/* GET /api/v2/containers/fetch?id=...&withResultObject=true */
void pb_api_fetch_container(pb_api_t *api, const char *container,
    pb_api_result_t *res);

/* POST /api/v2/agents/stop {"id": agent} (stops every run of the agent). */
void pb_api_stop_agent(pb_api_t *api, const char *agent,
    pb_api_result_t *res);

/*
 * GET /api/v2/agents/fetch-output?id=... : the agent's most recent
 * container ("containerId", "status"), the evidence for a launch whose
 * answer was lost.
 */
void pb_api_agent_output(pb_api_t *api, const char *agent,
    pb_api_result_t *res);

/* GET /api/v2/agents/fetch?id=... : the agent's settings. */
void pb_api_agent_fetch(pb_api_t *api, const char *agent,
    pb_api_result_t *res);

/* POST /api/v2/agents/save with body (its "id" names the agent). */
void pb_api_agent_save(pb_api_t *api, json_t *body, pb_api_result_t *res);

void pb_api_result_free(pb_api_result_t *res);

/* Pure: the class of a result (tested without a server). */
pb_api_class_t pb_api_classify(const pb_api_result_t *res);
const char *pb_api_class_name(pb_api_class_t c);

#endif /* PB_API_H */
