/*
 * The audit log: one service_audit_logs row per job, moved forward through
 * pending -> phantom_launched -> webhook_received -> success | failed
 * (or timed_out, dead_lettered).  Two backends behind one interface:
 * SQLite (the embedded default, "sqlite:PATH") and PostgreSQL
 * ("postgresql://..." or "postgres://...").
 *
 * Every update is an idempotent upsert keyed on job_id: replaying an update
 * (a worker that died after writing but before acknowledging in Redis)
 * changes nothing, and a status never moves backwards.
 */

#ifndef PB_AUDIT_H
#define PB_AUDIT_H

#include <stddef.h>

typedef struct pb_audit_s  pb_audit_t;

typedef enum {
    PB_AUDIT_OK = 0,
    PB_AUDIT_RETRY = -1,    /* transient: database unreachable; try later */
    PB_AUDIT_FAIL = -2      /* permanent: bad input or schema */
} pb_audit_rc_t;

typedef struct {
    const char  *job_id;            /* required */
    const char  *agent_id;          /* may be NULL on later updates */
    const char  *status;            /* pending, phantom_launched, ... */
    const char  *container_id;      /* phantom_container_id, or NULL */
    const char  *webhook_payload;   /* JSON text, or NULL to keep */
    const char  *metadata;          /* JSON object text merged into the
                                       row's metadata, or NULL */
} pb_audit_update_t;

/* Opens the backend named by url; NULL with err filled on failure. */
pb_audit_t *pb_audit_open(const char *url, char *err, size_t err_len);

/* Applies the idempotent migrations (scripts/migrations/). */
pb_audit_rc_t pb_audit_migrate(pb_audit_t *audit, char *err, size_t err_len);

pb_audit_rc_t pb_audit_apply(pb_audit_t *audit, const pb_audit_update_t *u,
    char *err, size_t err_len);

void pb_audit_close(pb_audit_t *audit);

#endif /* PB_AUDIT_H */
