/*
 * Private to the audit log: what audit.c (URL dispatch, input checks)
 * shares with the two backends.  Not for the rest of the worker.
 */

#ifndef PB_AUDIT_BACKEND_H
#define PB_AUDIT_BACKEND_H

#include <stddef.h>

#include "audit.h"

typedef struct {
    const char  *name;      /* file name, for error messages */
    const char  *sql;
} pb_audit_migration_t;

typedef struct {
    const char  *name;
    void          *(*open)(const char *url, char *err, size_t err_len);
    pb_audit_rc_t  (*migrate)(void *db, const pb_audit_migration_t *m,
                       char *err, size_t err_len);
    /* one checked op (pb_audit_apply or pb_audit_reset), autocommitted */
    pb_audit_rc_t  (*op)(void *db, const pb_audit_op_t *op, char *err,
                       size_t err_len);
    /* checked ops in one transaction; *bad as in audit.h */
    pb_audit_rc_t  (*batch)(void *db, const pb_audit_op_t *ops, size_t n,
                       size_t *bad, char *err, size_t err_len);
    void           (*close)(void *db);
} pb_audit_backend_t;

extern const pb_audit_backend_t  pb_audit_sqlite_backend;
extern const pb_audit_backend_t  pb_audit_pg_backend;

#define PB_AUDIT_SERVICE_NAME  "phantombuster"

/*
 * The status rank as an SQL expression over column col, identical in both
 * dialects: the upserts compare ranks so a status only moves forward.
 * Keep in step with pb_audit_status_rank() in audit.c.  A status the
 * worker never writes (a Rails row, say) ranks 0.
 */
#define PB_AUDIT_RANK_SQL(col)                                              \
    "(CASE " col                                                            \
    " WHEN 'pending' THEN 1"                                                \
    " WHEN 'phantom_launched' THEN 2"                                       \
    " WHEN 'webhook_received' THEN 3"                                       \
    " WHEN 'success' THEN 4 WHEN 'failed' THEN 4"                           \
    " WHEN 'timed_out' THEN 4 WHEN 'dead_lettered' THEN 4"                  \
    " ELSE 0 END)"

/* The statuses pb_audit_reset moves back to pending. */
#define PB_AUDIT_RESETTABLE_SQL  "('failed', 'timed_out', 'dead_lettered')"

/*
 * The statement parameters of an op, in the order both dialects' SQL
 * takes them: job_id, agent_id, status, container, payload, metadata for
 * an update; job_id, metadata for a reset.  Returns how many (6 or 2).
 */
#define PB_AUDIT_MAX_PARAMS  6
int pb_audit_op_params(const pb_audit_op_t *op, const char **values);

/*
 * 1 when text is one JSON value (RFC 8259) with nothing but whitespace
 * around it, nested at most PB_AUDIT_JSON_DEPTH deep: what SQLite's json()
 * accepts (which checks neither UTF-8 nor surrogate pairs either).  One
 * pass, nothing built.  The payload of every update is checked with it
 * (PB_AUDIT_FAIL otherwise), so SQLite can store it as it comes: json()
 * parsing and writing it again was 30% of an upsert's instructions.
 */
#define PB_AUDIT_JSON_DEPTH  2000
int pb_audit_json_valid(const char *text);

/* 1..4 for a known status, 0 otherwise. */
int pb_audit_status_rank(const char *status);

/* snprintf into err (when err is not NULL), without a trailing newline. */
void pb_audit_seterr(char *err, size_t err_len, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif /* PB_AUDIT_BACKEND_H */
