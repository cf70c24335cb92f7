/*
 * The audit log's front: picks the backend from the URL, checks input the
 * same way for both backends, and owns the embedded migrations.  The SQL
 * lives in audit_sqlite.c and audit_pg.c.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "audit_backend.h"
#include "audit_migrations.h"

struct pb_audit_s {
    const pb_audit_backend_t    *backend;
    const pb_audit_migration_t  *migrations;
    void                        *db;
};

static const struct {
    const char  *status;
    int          rank;
} pb_audit_ranks[] = {
    { "pending", 1 },
    { "phantom_launched", 2 },
    { "webhook_received", 3 },
    { "success", 4 },
    { "failed", 4 },
    { "timed_out", 4 },
    { "dead_lettered", 4 },
};

int
pb_audit_status_rank(const char *status)
{
    size_t  i;

    if (status == NULL) {
        return 0;
    }

    for (i = 0; i < sizeof(pb_audit_ranks) / sizeof(pb_audit_ranks[0]); i++) {
        if (strcmp(status, pb_audit_ranks[i].status) == 0) {
            return pb_audit_ranks[i].rank;
        }
    }

    return 0;
}

int
pb_audit_op_params(const pb_audit_op_t *op, const char **values)
{
    values[0] = op->u.job_id;

    if (op->reset) {
        values[1] = op->u.metadata;
        return 2;
    }

    values[1] = op->u.agent_id;
    values[2] = op->u.status;
    values[3] = op->u.container_id;
    values[4] = op->u.webhook_payload;
    values[5] = op->u.metadata;
    return 6;
}

void
pb_audit_seterr(char *err, size_t err_len, const char *fmt, ...)
{
    va_list  ap;
    size_t   n;

    if (err == NULL || err_len == 0) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);

    /* libpq and sqlite messages often end in a newline; log lines don't. */
    n = strlen(err);
    while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == '\r'
                     || err[n - 1] == ' '))
    {
        err[--n] = '\0';
    }
}

static int
pb_audit_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

pb_audit_t *
pb_audit_open(const char *url, char *err, size_t err_len)
{
    const pb_audit_backend_t    *backend;
    const pb_audit_migration_t  *migrations;
    pb_audit_t                  *audit;

    if (url == NULL || url[0] == '\0') {
        pb_audit_seterr(err, err_len, "audit: empty database URL "
            "(want sqlite:PATH or postgresql://...)");
        return NULL;
    }

    /* Never echo the URL itself: it may carry a password. */
    if (pb_audit_has_prefix(url, "sqlite:")) {
        backend = &pb_audit_sqlite_backend;
        migrations = pb_audit_migrations_sqlite;

    } else if (pb_audit_has_prefix(url, "postgresql://")
               || pb_audit_has_prefix(url, "postgres://"))
    {
        backend = &pb_audit_pg_backend;
        migrations = pb_audit_migrations_postgresql;

    } else {
        pb_audit_seterr(err, err_len, "audit: unsupported database URL "
            "scheme (want sqlite:PATH or postgresql://...)");
        return NULL;
    }

    audit = calloc(1, sizeof(*audit));
    if (audit == NULL) {
        pb_audit_seterr(err, err_len, "audit: out of memory");
        return NULL;
    }

    audit->backend = backend;
    audit->migrations = migrations;
    audit->db = backend->open(url, err, err_len);

    if (audit->db == NULL) {
        free(audit);
        return NULL;
    }

    return audit;
}

pb_audit_rc_t
pb_audit_migrate(pb_audit_t *audit, char *err, size_t err_len)
{
    const pb_audit_migration_t  *m;
    pb_audit_rc_t                rc;

    if (audit == NULL) {
        pb_audit_seterr(err, err_len, "audit: no handle");
        return PB_AUDIT_FAIL;
    }

    rc = PB_AUDIT_OK;

    for (m = audit->migrations; m->name != NULL; m++) {
        rc = audit->backend->migrate(audit->db, m, err, err_len);
        if (rc != PB_AUDIT_OK) {
            break;
        }
    }

    return rc;
}

/*
 * Metadata is merged key by key, which only means something for an
 * object; an array would be concatenated by PostgreSQL's || and rejected
 * by SQLite's json_patch, so refuse it here for both.  Whether the text is
 * valid JSON is left to the database.
 */
static int
pb_audit_is_object(const char *json)
{
    while (*json == ' ' || *json == '\t' || *json == '\n' || *json == '\r') {
        json++;
    }

    return *json == '{';
}

/* JSON whitespace (RFC 8259): space, tab, line feed, carriage return. */
static const char *
pb_audit_json_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }

    return p;
}

/* A JSON string at p (its opening quote); the text after it, or NULL. */
static const char *
pb_audit_json_string(const char *p)
{
    int  i;

    for (p++; ; p++) {
        /* the ordinary bytes, most of them, with one test each */
        while ((unsigned char) *p >= 0x20 && *p != '"' && *p != '\\') {
            p++;
        }

        if (*p == '"') {
            return p + 1;
        }

        if (*p != '\\') {
            return NULL;        /* a control character, or the end */
        }

        switch (*++p) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
            break;
        case 'u':
            for (i = 1; i <= 4; i++) {
                if (!((p[i] >= '0' && p[i] <= '9')
                      || ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f')))
                {
                    return NULL;
                }
            }
            p += 4;
            break;
        default:
            return NULL;
        }
    }
}

/* A run of digits at p, at least one; the text after it, or NULL. */
static const char *
pb_audit_json_digits(const char *p)
{
    const char  *start = p;

    while (*p >= '0' && *p <= '9') {
        p++;
    }

    return p > start ? p : NULL;
}

/* A JSON number at p; the text after it, or NULL. */
static const char *
pb_audit_json_number(const char *p)
{
    if (*p == '-') {
        p++;
    }

    if (*p == '0') {
        p++;
    } else if ((p = pb_audit_json_digits(p)) == NULL) {
        return NULL;
    }

    if (*p == '.' && (p = pb_audit_json_digits(p + 1)) == NULL) {
        return NULL;
    }

    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') {
            p++;
        }
        p = pb_audit_json_digits(p);
    }

    return p;
}

int
pb_audit_json_valid(const char *p)
{
    char    close[PB_AUDIT_JSON_DEPTH];
    size_t  depth = 0;

    for ( ;; ) {
        /* a value */
        p = pb_audit_json_ws(p);

        if (*p == '{' || *p == '[') {
            if (depth == PB_AUDIT_JSON_DEPTH) {
                return 0;
            }
            close[depth++] = *p == '{' ? '}' : ']';
            p = pb_audit_json_ws(p + 1);

            if (*p == close[depth - 1]) {
                depth--;
                p++;

            } else if (close[depth - 1] == '}') {
                /* the first key */
                if (*p != '"' || (p = pb_audit_json_string(p)) == NULL) {
                    return 0;
                }
                p = pb_audit_json_ws(p);
                if (*p++ != ':') {
                    return 0;
                }
                continue;

            } else {
                continue;       /* the first element */
            }

        } else if (*p == '"') {
            p = pb_audit_json_string(p);

        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            p = pb_audit_json_number(p);

        } else if (strncmp(p, "true", 4) == 0
                   || strncmp(p, "null", 4) == 0)
        {
            p += 4;

        } else if (strncmp(p, "false", 5) == 0) {
            p += 5;

        } else {
            return 0;
        }

        /* after a value: what it closes, then the next one or the end */
        for ( ;; ) {
            if (p == NULL) {
                return 0;
            }

            p = pb_audit_json_ws(p);

            if (depth == 0) {
                return *p == '\0';
            }

            if (*p != close[depth - 1]) {
                break;
            }

            depth--;
            p++;
        }

        if (*p++ != ',') {
            return 0;
        }

        if (close[depth - 1] == '}') {
            p = pb_audit_json_ws(p);
            if (*p != '"' || (p = pb_audit_json_string(p)) == NULL) {
                return 0;
            }
            p = pb_audit_json_ws(p);
            if (*p++ != ':') {
                return 0;
            }
        }
    }
}

static pb_audit_rc_t
pb_audit_check(const pb_audit_t *audit, const char *job_id,
    const char *metadata, char *err, size_t err_len)
{
    if (audit == NULL) {
        pb_audit_seterr(err, err_len, "audit: no handle");
        return PB_AUDIT_FAIL;
    }

    if (job_id == NULL || job_id[0] == '\0') {
        pb_audit_seterr(err, err_len, "audit: job_id is required");
        return PB_AUDIT_FAIL;
    }

    if (metadata != NULL && !pb_audit_is_object(metadata)) {
        pb_audit_seterr(err, err_len, "audit: job %s: metadata must be a "
            "JSON object", job_id);
        return PB_AUDIT_FAIL;
    }

    return PB_AUDIT_OK;
}

/* The checks of pb_audit_apply (reset 0) or pb_audit_reset (reset 1). */
static pb_audit_rc_t
pb_audit_check_op(const pb_audit_t *audit, const pb_audit_update_t *u,
    int reset, char *err, size_t err_len)
{
    pb_audit_rc_t  rc;

    if (u == NULL) {
        pb_audit_seterr(err, err_len, "audit: no update");
        return PB_AUDIT_FAIL;
    }

    rc = pb_audit_check(audit, u->job_id, u->metadata, err, err_len);
    if (rc != PB_AUDIT_OK || reset) {
        return rc;
    }

    if (pb_audit_status_rank(u->status) == 0) {
        pb_audit_seterr(err, err_len, "audit: job %s: unknown status \"%s\"",
            u->job_id, u->status ? u->status : "(null)");
        return PB_AUDIT_FAIL;
    }

    if (u->webhook_payload != NULL
        && !pb_audit_json_valid(u->webhook_payload))
    {
        pb_audit_seterr(err, err_len, "audit: job %s: webhook_payload is "
            "not valid JSON", u->job_id);
        return PB_AUDIT_FAIL;
    }

    return PB_AUDIT_OK;
}

pb_audit_rc_t
pb_audit_apply(pb_audit_t *audit, const pb_audit_update_t *u, char *err,
    size_t err_len)
{
    pb_audit_op_t  op;
    pb_audit_rc_t  rc;

    rc = pb_audit_check_op(audit, u, 0, err, err_len);
    if (rc != PB_AUDIT_OK) {
        return rc;
    }

    op.u = *u;
    op.reset = 0;

    return audit->backend->op(audit->db, &op, err, err_len);
}

pb_audit_rc_t
pb_audit_apply_batch(pb_audit_t *audit, const pb_audit_op_t *ops, size_t n,
    size_t *bad, char *err, size_t err_len)
{
    pb_audit_rc_t  rc;
    size_t         i;

    *bad = n;

    if (n == 0) {
        return PB_AUDIT_OK;
    }

    /* Input the database would refuse anyway is refused before it opens a
     * transaction, with the same message as a single call. */
    for (i = 0; i < n; i++) {
        rc = pb_audit_check_op(audit, &ops[i].u, ops[i].reset, err, err_len);
        if (rc != PB_AUDIT_OK) {
            *bad = i;
            return rc;
        }
    }

    return audit->backend->batch(audit->db, ops, n, bad, err, err_len);
}

pb_audit_rc_t
pb_audit_reset(pb_audit_t *audit, const char *job_id, const char *metadata,
    char *err, size_t err_len)
{
    pb_audit_op_t  op;
    pb_audit_rc_t  rc;

    memset(&op, 0, sizeof(op));
    op.u.job_id = job_id;
    op.u.metadata = metadata;
    op.reset = 1;

    rc = pb_audit_check_op(audit, &op.u, 1, err, err_len);
    if (rc != PB_AUDIT_OK) {
        return rc;
    }

    return audit->backend->op(audit->db, &op, err, err_len);
}

void
pb_audit_close(pb_audit_t *audit)
{
    if (audit == NULL) {
        return;
    }

    audit->backend->close(audit->db);
    free(audit);
}
