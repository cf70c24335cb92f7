/*
 * The SQLite audit backend ("sqlite:PATH"), the embedded default.
 *
 * WAL mode so pbctl and other readers never block the worker (nor it
 * them), and a busy timeout so a short write by another process (a second
 * pb-worker, a migration) is waited out rather than failed.  A lock still
 * held after that is PB_AUDIT_RETRY: the worker keeps the payload in Redis
 * and tries again.  Needs SQLite >= 3.24 (upsert) with JSON functions.
 *
 * The upserts are prepared once per handle and reused: preparing that
 * SQL cost more than running it.  A batch is one BEGIN IMMEDIATE ...
 * COMMIT, so its rows share one WAL fsync, and its updates go
 * PB_SQLITE_ROWS to a statement.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "audit.h"
#include "audit_backend.h"

#define PB_SQLITE_BUSY_TIMEOUT_MS  2000
#define PB_SQLITE_MIN_VERSION      3024000


#define T  "service_audit_logs."

/*
 * Updates of a batch go PB_SQLITE_ROWS to a statement: each execution of
 * the upsert costs about as much again as the row it writes (the
 * statement's start and end, the AUTOINCREMENT counter read and written
 * back), so rows share it.  A multi-row INSERT applies its rows one after
 * the other, a row conflicting with one before it included, exactly as
 * the statements one by one would.
 */
#define PB_SQLITE_ROWS  16

typedef struct {
    sqlite3       *db;
    sqlite3_stmt  *apply;       /* prepared on first use, then reused */
    sqlite3_stmt  *apply_rows;  /* the same for PB_SQLITE_ROWS rows */
    sqlite3_stmt  *reset;
    char           now[32];     /* the time the statements write */
} pb_sqlite_t;

/*
 * Now as Rails' sqlite3 adapter writes datetimes, UTC text
 * "YYYY-MM-DD HH:MM:SS.SSS", into h->now.  Bound as a parameter, once for
 * a whole batch (one transaction, one instant), rather than formatted by
 * strftime twice for every row.
 */
static void
pb_sqlite_now(pb_sqlite_t *h)
{
    struct timespec  ts;
    struct tm        tm;
    size_t           n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(h->now, sizeof(h->now), "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(h->now + n, sizeof(h->now) - n, ".%03d",
             (int) (ts.tv_nsec / 1000000L));
}

/*
 * The upsert.  Status moves only forward (by rank); agent, container and
 * payload are set when given and kept when NULL; metadata is merged with
 * json_patch.  The WHERE makes a replay a true no-op: when nothing would
 * change, the row (updated_at included) is not touched.  The payload is
 * stored as it comes (audit.c checked that it is JSON); metadata goes
 * through json(), minified as json_patch writes it, which the WHERE
 * compares as text.
 */
#define PB_SQLITE_APPLY_INTO                                                \
    "INSERT INTO service_audit_logs (job_id, service_name, agent_id, status," \
    " phantom_container_id, webhook_payload, metadata, created_at,"           \
    " updated_at) VALUES "

/* One row's values (printf): its five parameters, then the time's. */
#define PB_SQLITE_APPLY_ROW                                                 \
    "(?%d, '" PB_AUDIT_SERVICE_NAME "', ?%d, ?%d, ?%d, ?%d,"                  \
    " json(COALESCE(?%d, '{}')), ?%d, ?%d)"

static const char pb_sqlite_apply_upsert[] =
    " ON CONFLICT (job_id) DO UPDATE SET"
    " agent_id = COALESCE(excluded.agent_id, " T "agent_id),"
    " status = CASE WHEN " PB_AUDIT_RANK_SQL("excluded.status")
        " > " PB_AUDIT_RANK_SQL(T "status")
        " THEN excluded.status ELSE " T "status END,"
    " phantom_container_id = COALESCE(excluded.phantom_container_id, "
        T "phantom_container_id),"
    " webhook_payload = COALESCE(excluded.webhook_payload, "
        T "webhook_payload),"
    " metadata = json_patch(COALESCE(" T "metadata, '{}'), excluded.metadata),"
    " updated_at = excluded.updated_at"
    " WHERE " PB_AUDIT_RANK_SQL("excluded.status")
        " > " PB_AUDIT_RANK_SQL(T "status")
    " OR (excluded.agent_id IS NOT NULL"
        " AND excluded.agent_id IS NOT " T "agent_id)"
    " OR (excluded.phantom_container_id IS NOT NULL"
        " AND excluded.phantom_container_id IS NOT " T "phantom_container_id)"
    " OR (excluded.webhook_payload IS NOT NULL"
        " AND excluded.webhook_payload IS NOT " T "webhook_payload)"
    " OR json_patch(COALESCE(" T "metadata, '{}'), excluded.metadata)"
        " IS NOT COALESCE(" T "metadata, '{}')";

/*
 * The upsert of rows rows (malloc'd text, NULL out of memory): row k's
 * parameters are ?6k+1 .. ?6k+6 (job_id, agent, status, container,
 * payload, metadata), the time, shared, is ?6*rows+1.
 */
static char *
pb_sqlite_apply_text(int rows)
{
    char    *sql, *p;
    size_t   cap;
    int      k, t = 6 * rows + 1;

    cap = sizeof(PB_SQLITE_APPLY_INTO) + sizeof(pb_sqlite_apply_upsert)
          + (size_t) rows * (sizeof(PB_SQLITE_APPLY_ROW) + 64);
    sql = malloc(cap);
    if (sql == NULL) {
        return NULL;
    }

    p = sql + snprintf(sql, cap, "%s", PB_SQLITE_APPLY_INTO);
    for (k = 0; k < rows; k++) {
        p += snprintf(p, cap - (size_t) (p - sql), "%s" PB_SQLITE_APPLY_ROW,
                      k > 0 ? ", " : "", 6 * k + 1, 6 * k + 2, 6 * k + 3,
                      6 * k + 4, 6 * k + 5, 6 * k + 6, t, t);
    }
    snprintf(p, cap - (size_t) (p - sql), "%s", pb_sqlite_apply_upsert);

    return sql;
}

/* Back to pending, only from a failed status (see pb_audit_reset). */
static const char pb_sqlite_reset_sql[] =
    "INSERT INTO service_audit_logs (job_id, service_name, status, metadata,"
    " created_at, updated_at)"
    " VALUES (?1, '" PB_AUDIT_SERVICE_NAME "', 'pending',"
    " json(COALESCE(?2, '{}')), ?3, ?3)"
    " ON CONFLICT (job_id) DO UPDATE SET"
    " status = 'pending',"
    " metadata = json_patch(COALESCE(" T "metadata, '{}'), excluded.metadata),"
    " updated_at = excluded.updated_at"
    " WHERE " T "status IN " PB_AUDIT_RESETTABLE_SQL;

static pb_audit_rc_t
pb_sqlite_rc(int rc)
{
    /*
     * Locks and I/O trouble pass; everything else (SQL errors, malformed
     * JSON, constraint violations) will fail the same way next time.
     */
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return PB_AUDIT_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
        return PB_AUDIT_RETRY;
    default:
        return PB_AUDIT_FAIL;
    }
}

static void *
pb_sqlite_open(const char *url, char *err, size_t err_len)
{
    const char   *path;
    sqlite3      *db;
    pb_sqlite_t  *h;
    int           rc;

    path = url + sizeof("sqlite:") - 1;

    /* Accept sqlite:///abs/path too, the form other tools write. */
    if (path[0] == '/' && path[1] == '/') {
        path += 2;
    }

    if (path[0] == '\0') {
        pb_audit_seterr(err, err_len, "audit: sqlite URL has no path "
            "(want sqlite:PATH)");
        return NULL;
    }

    if (sqlite3_libversion_number() < PB_SQLITE_MIN_VERSION) {
        pb_audit_seterr(err, err_len, "audit: SQLite %s is too old "
            "(need 3.24 or later for upserts)", sqlite3_libversion());
        return NULL;
    }

    db = NULL;
    /* NOMUTEX: a handle is one thread's (audit.h), so SQLite need not
     * lock and unlock a mutex around every call on it */
    rc = sqlite3_open_v2(path, &db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                         | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        goto failed;
    }

    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, PB_SQLITE_BUSY_TIMEOUT_MS);

    /* Persistent in the file: readers and the worker stop blocking each
     * other.  Also the first statement to notice a file that is not a
     * database. */
    rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        goto failed;
    }

    /*
     * FULL, not the NORMAL often paired with WAL (and some builds'
     * default): the worker deletes rows from the Redis outbox as soon as
     * their commit returns, so the commit must survive a power cut or a
     * kernel crash, not only a crash of the process.  NORMAL would leave
     * the last transactions in an unsynced WAL with their only other copy
     * already gone.  With batches it costs one fsync per batch, not per
     * row.  Per connection, so set on every open.
     */
    rc = sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        goto failed;
    }

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        rc = SQLITE_NOMEM;
        goto failed;
    }

    h->db = db;
    return h;

failed:

    pb_audit_seterr(err, err_len, "audit: cannot open sqlite database %s: %s",
        path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return NULL;
}

/* Skips blanks and "--" comments, so statement text starts at a keyword. */
static const char *
pb_sqlite_skip(const char *p)
{
    for ( ;; ) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            p++;
        }

        if (p[0] != '-' || p[1] != '-') {
            return p;
        }

        while (*p != '\0' && *p != '\n') {
            p++;
        }
    }
}

static int
pb_sqlite_is_ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_';
}

/* Matches keyword w (case-insensitive) at p; the text after it, or NULL. */
static const char *
pb_sqlite_word(const char *p, const char *w)
{
    p = pb_sqlite_skip(p);

    for ( ; *w != '\0'; p++, w++) {
        if ((*p | 0x20) != (*w | 0x20)) {
            return NULL;
        }
    }

    return pb_sqlite_is_ident(*p) ? NULL : p;
}

/* Copies an identifier at p into buf; the text after it, or NULL. */
static const char *
pb_sqlite_ident(const char *p, char *buf, size_t len)
{
    size_t  n;

    p = pb_sqlite_skip(p);

    for (n = 0; pb_sqlite_is_ident(p[n]); n++) {
        if (n + 1 >= len) {
            return NULL;
        }
        buf[n] = p[n];
    }

    buf[n] = '\0';
    return n ? p + n : NULL;
}

/*
 * SQLite has no ADD COLUMN IF NOT EXISTS.  For a statement of the form
 * "ALTER TABLE t ADD COLUMN c ..." sets *skip when t already has c.
 */
static pb_audit_rc_t
pb_sqlite_add_column_exists(sqlite3 *db, const char *sql, int *skip,
    char *err, size_t err_len)
{
    char           table[64], column[64];
    const char    *p;
    sqlite3_stmt  *st;
    int            rc;

    *skip = 0;

    p = pb_sqlite_word(sql, "ALTER");
    p = p ? pb_sqlite_word(p, "TABLE") : NULL;
    p = p ? pb_sqlite_ident(p, table, sizeof(table)) : NULL;
    p = p ? pb_sqlite_word(p, "ADD") : NULL;
    p = p ? pb_sqlite_word(p, "COLUMN") : NULL;
    p = p ? pb_sqlite_ident(p, column, sizeof(column)) : NULL;

    if (p == NULL) {
        return PB_AUDIT_OK;
    }

    st = NULL;
    rc = sqlite3_prepare_v2(db,
            "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2",
            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        *skip = (rc == SQLITE_ROW);
    }

    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        pb_audit_seterr(err, err_len, "audit: sqlite: table_info(%s): %s",
            table, sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return pb_sqlite_rc(rc);
    }

    sqlite3_finalize(st);
    return PB_AUDIT_OK;
}

/* Runs every statement of one migration file, in the caller's transaction. */
static pb_audit_rc_t
pb_sqlite_run_script(sqlite3 *db, const pb_audit_migration_t *m, char *err,
    size_t err_len)
{
    const char     *p, *tail;
    sqlite3_stmt   *st;
    pb_audit_rc_t   rc;
    int             src, skip;

    for (p = pb_sqlite_skip(m->sql); *p != '\0'; p = pb_sqlite_skip(tail)) {

        rc = pb_sqlite_add_column_exists(db, p, &skip, err, err_len);
        if (rc != PB_AUDIT_OK) {
            return rc;
        }

        if (skip) {
            /* The migration files keep ";" out of ALTER statements. */
            tail = strchr(p, ';');
            tail = tail ? tail + 1 : p + strlen(p);
            continue;
        }

        st = NULL;
        src = sqlite3_prepare_v2(db, p, -1, &st, &tail);
        if (src == SQLITE_OK && st != NULL) {
            while ((src = sqlite3_step(st)) == SQLITE_ROW) {
                /* PRAGMAs and SELECTs: the rows are not needed */
            }
        }

        if (src != SQLITE_OK && src != SQLITE_DONE) {
            pb_audit_seterr(err, err_len, "audit: sqlite migration %s: %s",
                m->name, sqlite3_errmsg(db));
            sqlite3_finalize(st);
            return pb_sqlite_rc(src);
        }

        sqlite3_finalize(st);
    }

    return PB_AUDIT_OK;
}

static pb_audit_rc_t
pb_sqlite_migrate(void *handle, const pb_audit_migration_t *m, char *err,
    size_t err_len)
{
    sqlite3        *db = ((pb_sqlite_t *) handle)->db;
    pb_audit_rc_t   rc;
    int             src;

    /* IMMEDIATE: take the write lock up front, so two workers migrating
     * at once queue behind each other instead of deadlocking. */
    src = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        pb_audit_seterr(err, err_len, "audit: sqlite migration %s: %s",
            m->name, sqlite3_errmsg(db));
        return pb_sqlite_rc(src);
    }

    rc = pb_sqlite_run_script(db, m, err, err_len);

    if (rc == PB_AUDIT_OK) {
        src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (src != SQLITE_OK) {
            pb_audit_seterr(err, err_len, "audit: sqlite migration %s: "
                "commit: %s", m->name, sqlite3_errmsg(db));
            rc = pb_sqlite_rc(src);
        }
    }

    if (rc != PB_AUDIT_OK && !sqlite3_get_autocommit(db)) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }

    return rc;
}

/* Error text for a failed prepare or step of job_id's statement. */
static pb_audit_rc_t
pb_sqlite_fail(sqlite3 *db, int rc, const char *job_id, char *err,
    size_t err_len)
{
    pb_audit_seterr(err, err_len, "audit: sqlite: job %s: %s%s", job_id,
        sqlite3_errmsg(db),
        (rc & 0xff) == SQLITE_ERROR
        && sqlite3_strglob("no such table*", sqlite3_errmsg(db)) == 0
        ? " (run the migrations)" : "");

    return pb_sqlite_rc(rc);
}

/*
 * The handle's statement *cached, prepared on first use (before the
 * migrations the table may not exist yet) from sql, or when sql is NULL
 * as the upsert of rows rows.
 */
static int
pb_sqlite_prepare(pb_sqlite_t *h, sqlite3_stmt **cached, const char *sql,
    int rows)
{
    char  *text = NULL;
    int    rc;

    if (*cached != NULL) {
        return SQLITE_OK;
    }

    if (sql == NULL) {
        text = pb_sqlite_apply_text(rows);
        if (text == NULL) {
            return SQLITE_NOMEM;
        }
        sql = text;
    }

    rc = sqlite3_prepare_v3(h->db, sql, -1, SQLITE_PREPARE_PERSISTENT, cached,
                            NULL);
    free(text);

    return rc;
}

/*
 * Runs ops[0..rows) with one statement: rows updates (1 or
 * PB_SQLITE_ROWS), or one reset.  The texts are bound without a copy and
 * unbound again before returning.
 */
static pb_audit_rc_t
pb_sqlite_run(pb_sqlite_t *h, const pb_audit_op_t *ops, int rows, char *err,
    size_t err_len)
{
    sqlite3_stmt  **cached;
    const char     *values[PB_AUDIT_MAX_PARAMS];
    pb_audit_rc_t   arc;
    int             rc, n, i, k, at = 1;

    if (ops[0].reset) {
        cached = &h->reset;
        rc = pb_sqlite_prepare(h, cached, pb_sqlite_reset_sql, 1);
    } else {
        cached = rows == 1 ? &h->apply : &h->apply_rows;
        rc = pb_sqlite_prepare(h, cached, NULL, rows);
    }

    if (rc != SQLITE_OK) {
        return pb_sqlite_fail(h->db, rc, ops[0].u.job_id, err, err_len);
    }

    for (k = 0; k < rows && rc == SQLITE_OK; k++) {
        n = pb_audit_op_params(&ops[k], values);
        for (i = 0; i < n && rc == SQLITE_OK; i++) {
            rc = sqlite3_bind_text(*cached, at++, values[i], -1,
                                   SQLITE_STATIC);
        }
    }

    /* the time comes after the rows' own parameters */
    if (rc == SQLITE_OK) {
        rc = sqlite3_bind_text(*cached, at, h->now, -1, SQLITE_STATIC);
    }

    if (rc == SQLITE_OK) {
        rc = sqlite3_step(*cached);
    }

    arc = rc == SQLITE_DONE ? PB_AUDIT_OK
                            : pb_sqlite_fail(h->db, rc, ops[0].u.job_id, err,
                                             err_len);

    sqlite3_reset(*cached);
    sqlite3_clear_bindings(*cached);

    return arc;
}

static pb_audit_rc_t
pb_sqlite_op(void *handle, const pb_audit_op_t *op, char *err,
    size_t err_len)
{
    pb_sqlite_now(handle);

    return pb_sqlite_run(handle, op, 1, err, err_len);
}

/* PB_SQLITE_ROWS when that many updates start ops[0..n), else 1. */
static int
pb_sqlite_rows(const pb_audit_op_t *ops, size_t n)
{
    size_t  k;

    for (k = 0; k < PB_SQLITE_ROWS && k < n && !ops[k].reset; k++) {
        /* count them */
    }

    return k == PB_SQLITE_ROWS ? PB_SQLITE_ROWS : 1;
}

static pb_audit_rc_t
pb_sqlite_batch(void *handle, const pb_audit_op_t *ops, size_t n,
    size_t *bad, char *err, size_t err_len)
{
    pb_sqlite_t    *h = handle;
    pb_audit_rc_t   rc;
    size_t          i, j, k;
    int             src;

    *bad = n;

    /* IMMEDIATE: the write lock now (or BUSY after the busy timeout, a
     * RETRY), never halfway through the batch. */
    src = sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        pb_audit_seterr(err, err_len, "audit: sqlite: begin: %s",
            sqlite3_errmsg(h->db));
        return pb_sqlite_rc(src);
    }

    pb_sqlite_now(h);

    rc = PB_AUDIT_OK;
    for (i = 0; i < n && rc == PB_AUDIT_OK; i += k) {
        k = (size_t) pb_sqlite_rows(&ops[i], n - i);
        rc = pb_sqlite_run(h, &ops[i], (int) k, err, err_len);

        if (rc == PB_AUDIT_FAIL && k > 1) {
            /* a row of them was refused and SQLite undid the statement:
             * again one by one, which names it */
            rc = PB_AUDIT_OK;
            for (j = 0; j < k && rc == PB_AUDIT_OK; j++) {
                rc = pb_sqlite_run(h, &ops[i + j], 1, err, err_len);
                *bad = i + j;
            }
            *bad = rc == PB_AUDIT_OK ? n : *bad;

        } else if (rc != PB_AUDIT_OK) {
            *bad = i;
        }
    }

    if (rc == PB_AUDIT_OK) {
        src = sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
        if (src != SQLITE_OK) {
            pb_audit_seterr(err, err_len, "audit: sqlite: commit: %s",
                sqlite3_errmsg(h->db));
            rc = pb_sqlite_rc(src);
        }
    }

    /* All or nothing: a refused row (SQLite only undid its statement) or
     * a failed commit takes the whole batch back. */
    if (rc != PB_AUDIT_OK && !sqlite3_get_autocommit(h->db)) {
        sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    }

    return rc;
}

static void
pb_sqlite_close(void *handle)
{
    pb_sqlite_t  *h = handle;

    sqlite3_finalize(h->apply);
    sqlite3_finalize(h->apply_rows);
    sqlite3_finalize(h->reset);
    sqlite3_close(h->db);
    free(h);
}

const pb_audit_backend_t  pb_audit_sqlite_backend = {
    "sqlite",
    pb_sqlite_open,
    pb_sqlite_migrate,
    pb_sqlite_op,
    pb_sqlite_batch,
    pb_sqlite_close
};
