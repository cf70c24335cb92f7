/*
 * The audit log: one service_audit_logs row per job, moved forward through
 * pending -> phantom_launched -> webhook_received -> success | failed
 * (or timed_out, dead_lettered).  Two backends behind one interface:
 * SQLite (the embedded default, "sqlite:PATH") and PostgreSQL
 * ("postgresql://..." or "postgres://...").
 *
 * Every update is an idempotent upsert keyed on job_id: replaying an update
 * (a worker that died after writing but before acknowledging in Redis)
 * changes nothing, and a status never moves backwards.  Schema, status
 * ranks and metadata keys: docs/audit-log.md.
 *
 * A handle is not thread-safe: one per thread.  Errors never contain the
 * database URL (it may hold a password).
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

/*
 * Opens the backend named by url; NULL with err filled on failure (bad or
 * unsupported URL, SQLite file that cannot be opened).  PostgreSQL
 * connects lazily: an unreachable server is not an open failure, the
 * calls below return PB_AUDIT_RETRY until it is back.
 */
pb_audit_t *pb_audit_open(const char *url, char *err, size_t err_len);

/*
 * Applies the idempotent migrations (scripts/migrations/, embedded at build
 * time).  Safe to run on every start, by several processes at once, and on
 * the Rails app's existing table.
 */
pb_audit_rc_t pb_audit_migrate(pb_audit_t *audit, char *err, size_t err_len);

/*
 * Upserts the job's row.  status must be one of the statuses above and only
 * moves forward (pending < phantom_launched < webhook_received < the
 * terminal statuses, which are final); an older status still merges its
 * other fields.  NULL fields keep what the row has; metadata must be a
 * JSON object and is merged key by key.  PB_AUDIT_FAIL for bad input
 * (unknown status, metadata not an object, payload not JSON).
 */
pb_audit_rc_t pb_audit_apply(pb_audit_t *audit, const pb_audit_update_t *u,
    char *err, size_t err_len);

/*
 * The one way back: moves a job whose status is failed, timed_out or
 * dead_lettered to pending again (pbctl dlq retry), merging metadata (a
 * JSON object or NULL).  A job in any other status is left as it is, so a
 * replayed reset cannot undo progress; a job without a row gets a pending
 * row.
 */
pb_audit_rc_t pb_audit_reset(pb_audit_t *audit, const char *job_id,
    const char *metadata, char *err, size_t err_len);

/* One row of a batch: an update, or with reset set a pb_audit_reset of
 * u.job_id merging u.metadata (its other fields are ignored). */
typedef struct {
    pb_audit_update_t  u;
    int                reset;
} pb_audit_op_t;

/*
 * Applies ops[0..n) in order in one transaction, all or nothing: one
 * commit (one fsync, one round trip to PostgreSQL) for the lot instead of
 * one per row.  Each op does exactly what pb_audit_apply or pb_audit_reset
 * would.  OK: every op is in.  RETRY: none is (database away or locked).
 * FAIL: none is, and *bad is the index of the op that was refused, or n
 * when the refusal was not one op's (the commit); apply the ops before it
 * on their own and deal with that one alone.
 */
pb_audit_rc_t pb_audit_apply_batch(pb_audit_t *audit,
    const pb_audit_op_t *ops, size_t n, size_t *bad, char *err,
    size_t err_len);

void pb_audit_close(pb_audit_t *audit);

#endif /* PB_AUDIT_H */
