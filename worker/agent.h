/*
 * Agent configuration (pbctl configure-agent): points a PhantomBuster
 * agent's completion webhook at our nginx and caps its parallelism.  The
 * agent is read with agents/fetch, the change saved with agents/save (the
 * existing notifications object merged, since the API does not say
 * whether a partial one replaces or merges), and read back to verify.
 *
 * The webhook URL carries the module's secret in its query string: every
 * URL this code prints or logs goes through pb_url_mask() first.
 */

#ifndef PB_AGENT_H
#define PB_AGENT_H

#include <stddef.h>
#include <jansson.h>

#include "api.h"

/* notifications.webhook's maxLength in PhantomBuster's API spec */
#define PB_WEBHOOK_URL_MAX  2000

typedef struct {
    const char  *agent;
    const char  *webhook_url;
    long         max_parallelism;
    int          dry_run;           /* read and compare, save nothing */
} pb_agent_conf_t;

/*
 * NULL when url is an http(s) URL with a host, at most PB_WEBHOOK_URL_MAX
 * characters, no whitespace or control characters, and a non-empty
 * "secret" query parameter; otherwise what is wrong with it.
 */
const char *pb_webhook_url_problem(const char *url);

/*
 * url with the value of every query parameter and the password of its
 * user information replaced by "***" (truncated to cap - 1 characters).
 */
void pb_url_mask(const char *url, char *out, size_t cap);

/*
 * The fields that differ between two agent objects, one level into
 * object-valued fields ("notifications.webhook"), in before's order then
 * after's: [{"field", "before", "after"}], a side absent when the field
 * is; URL values masked.
 */
json_t *pb_agent_diff(const json_t *before, const json_t *after);

/*
 * One side ("before" or "after") of a change as text: a string as it is,
 * another value as JSON, "(none)" when absent.
 */
const char *pb_change_text(const json_t *change, const char *side,
    char *buf, size_t cap);

/*
 * Reads, saves (unless nothing would change, or dry run) and reads back.
 * PB_CMD_OK with *result = {"agent", "dry_run", "saved", "changes"};
 * PB_CMD_FAILED with err when PhantomBuster refused or failed, or the
 * read-back differs from what was saved.
 */
int pb_agent_configure(pb_api_t *api, const pb_agent_conf_t *conf,
    json_t **result, char *err, size_t err_len);

#endif /* PB_AGENT_H */
