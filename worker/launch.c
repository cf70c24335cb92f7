/*
 * One launch.  See launch.h.
 */

#include <stdio.h>
#include <string.h>

#include "backoff.h"
#include "lane.h"
#include "launch.h"
#include "log.h"
#include "monitor.h"
#include "slots.h"


int64_t
pb_launch_lease_ms(const pb_config_t *cfg)
{
    /* one HTTP call plus a generous margin for Redis round trips */
    return 2 * cfg->http_timeout_ms + 5000;
}


static void
log_result(const char *what, const pb_claim_t *claim,
    const pb_slot_result_t *res, const char *error)
{
    pb_log(strcmp(res->kind, "fenced") == 0 ? PB_LOG_WARN : PB_LOG_INFO, what,
           "{s:s, s:s, s:s, s:s?}", "job", claim->job_id, "result", res->kind,
           "detail", res->detail, "error", error);
}


/* The containerId of a launch answer, or -1 when it has none. */
static int
container_of(const pb_api_result_t *res, char out[PB_ID_MAX_LEN + 1])
{
    json_t  *v = json_object_get(res->json, "containerId");

    return v != NULL && pb_id_from_json(v, out) == 0 ? 0 : -1;
}


static int
launch_claimed(pb_ctx_t *ctx, const pb_claim_t *claim)
{
    char              container[PB_ID_MAX_LEN + 1];
    int64_t           close_ms;
    pb_api_class_t    cls;
    pb_api_result_t   res;
    pb_slot_result_t  sr;
    int               rc;

    if (pb_slot_mark_launching(ctx, claim->job_id, claim->token, &sr) != 0) {
        return -1;
    }

    if (strcmp(sr.kind, "ok") != 0) {
        log_result("launch abandoned: lease lost", claim, &sr, NULL);
        return 0;
    }

    pb_api_launch(ctx->api, claim->agent, claim->argument,
                  ctx->cfg->max_running, &res);
    cls = pb_api_classify(&res);

    if (cls == PB_API_OK && container_of(&res, container) != 0) {
        /* 2xx without a containerId: something launched, or not */
        snprintf(res.error, sizeof(res.error), "launch answer without a "
                 "containerId");
        cls = PB_API_AMBIGUOUS;
    }

    switch (cls) {

    case PB_API_OK:
        rc = pb_slot_record(ctx, claim->job_id, claim->token, container,
                            "launch", &sr);
        if (rc == 0) {
            pb_log(PB_LOG_INFO, "launched", "{s:s, s:s, s:s, s:s}", "job",
                   claim->job_id, "agent", claim->agent, "container",
                   container, "result", sr.kind);
        }
        break;

    case PB_API_RATE_LIMITED:
    case PB_API_REFUSED:
    case PB_API_AUTH:
        /* not the job's fault: everyone waits, the job keeps its place */
        close_ms = pb_lane_backoff_ms(ctx, &res);
        rc = pb_slot_requeue(ctx, claim->job_id, claim->token, close_ms,
                             cls == PB_API_RATE_LIMITED ? "launch_429"
                             : cls == PB_API_REFUSED ? "launch_refusals"
                             : "launch_auth_errors", res.error, &sr);
        pb_log(cls == PB_API_AUTH ? PB_LOG_ERROR : PB_LOG_WARN,
               "launch refused; lane closed", "{s:s, s:s, s:I, s:s}", "job",
               claim->job_id, "class", pb_api_class_name(cls), "close_ms",
               (json_int_t) close_ms, "error", res.error);
        break;

    case PB_API_TRANSIENT:
        rc = pb_slot_fail(ctx, claim->job_id, claim->token,
                          pb_backoff_full_jitter(ctx->cfg->backoff_base_ms,
                                                 ctx->cfg->backoff_cap_ms,
                                                 (unsigned) claim->attempts,
                                                 pb_random64()),
                          ctx->cfg->max_attempts, res.error, &sr);
        log_result("launch failed", claim, &sr, res.error);
        break;

    case PB_API_AMBIGUOUS:
        /*
         * The launch may have happened.  Deciding now, before the webhook
         * consumer had its turn, is what launched quick runs twice: the
         * job waits in doubt for evidence instead.
         */
        rc = pb_monitor_doubt(ctx, claim->job_id, claim->token, res.error);
        break;

    default:
        /* PERMANENT, NOT_FOUND: retrying cannot help */
        rc = pb_slot_fail(ctx, claim->job_id, claim->token, 0, 0, res.error,
                          &sr);
        log_result("launch rejected; dead-lettered", claim, &sr, res.error);
        break;
    }

    pb_api_result_free(&res);

    return rc;
}


int
pb_launch_step(pb_ctx_t *ctx, int64_t *wait_ms)
{
    int               rc;
    pb_claim_t        claim;
    pb_slot_result_t  sr;

    *wait_ms = -1;

    if (pb_slot_claim(ctx, pb_launch_lease_ms(ctx->cfg), &claim) != 0) {
        return -1;
    }

    if (claim.kind != PB_CLAIM_CLAIMED) {
        *wait_ms = claim.wait_ms;
        return 0;
    }

    if (PB_STOPPING(ctx)) {
        rc = pb_slot_requeue(ctx, claim.job_id, claim.token, 0, "",
                             "worker stopping", &sr);

    } else {
        rc = launch_claimed(ctx, &claim);
    }

    pb_claim_free(&claim);

    return rc < 0 ? -1 : 1;
}
