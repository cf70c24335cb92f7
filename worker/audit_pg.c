/*
 * The PostgreSQL audit backend ("postgresql://..." or "postgres://...").
 *
 * One blocking libpq connection, opened lazily and reset after it is lost:
 * a database outage turns into PB_AUDIT_RETRY (the worker keeps payloads
 * in Redis and retries) and the first call after the server is back
 * succeeds.  A statement whose connection died under it is sent once more
 * on the new connection; that is safe because every statement here is an
 * idempotent upsert.
 *
 * A batch is one transaction sent as one pipeline (BEGIN, the prepared
 * upserts, COMMIT, then a single sync): one round trip for the lot
 * instead of one per row.  A batch is never resent on its own: its
 * connection died, so did its transaction, and the caller sends it again.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "audit.h"
#include "audit_backend.h"

/* Used unless the URL sets its own connect_timeout: an unreachable host
 * must not stall the worker for the kernel's TCP timeout. */
#define PB_PG_CONNECT_TIMEOUT  "5"

#define T  "t."

/* The same upsert as the SQLite one; see audit_sqlite.c. */
static const char pb_pg_apply_sql[] =
    "INSERT INTO service_audit_logs AS t (job_id, service_name, agent_id,"
    " status, phantom_container_id, webhook_payload, metadata, created_at,"
    " updated_at)"
    " VALUES ($1, '" PB_AUDIT_SERVICE_NAME "', $2, $3, $4, $5::jsonb,"
    " COALESCE($6::jsonb, '{}'::jsonb), now(), now())"
    " ON CONFLICT (job_id) DO UPDATE SET"
    " agent_id = COALESCE(EXCLUDED.agent_id, " T "agent_id),"
    " status = CASE WHEN " PB_AUDIT_RANK_SQL("EXCLUDED.status")
        " > " PB_AUDIT_RANK_SQL(T "status")
        " THEN EXCLUDED.status ELSE " T "status END,"
    " phantom_container_id = COALESCE(EXCLUDED.phantom_container_id, "
        T "phantom_container_id),"
    " webhook_payload = COALESCE(EXCLUDED.webhook_payload, "
        T "webhook_payload),"
    " metadata = COALESCE(" T "metadata, '{}'::jsonb) || EXCLUDED.metadata,"
    " updated_at = EXCLUDED.updated_at"
    " WHERE " PB_AUDIT_RANK_SQL("EXCLUDED.status")
        " > " PB_AUDIT_RANK_SQL(T "status")
    " OR (EXCLUDED.agent_id IS NOT NULL"
        " AND EXCLUDED.agent_id IS DISTINCT FROM " T "agent_id)"
    " OR (EXCLUDED.phantom_container_id IS NOT NULL"
        " AND EXCLUDED.phantom_container_id IS DISTINCT FROM "
        T "phantom_container_id)"
    " OR (EXCLUDED.webhook_payload IS NOT NULL"
        " AND EXCLUDED.webhook_payload IS DISTINCT FROM " T "webhook_payload)"
    " OR COALESCE(" T "metadata, '{}'::jsonb) || EXCLUDED.metadata"
        " IS DISTINCT FROM " T "metadata";

static const char pb_pg_reset_sql[] =
    "INSERT INTO service_audit_logs AS t (job_id, service_name, status,"
    " metadata, created_at, updated_at)"
    " VALUES ($1, '" PB_AUDIT_SERVICE_NAME "', 'pending',"
    " COALESCE($2::jsonb, '{}'::jsonb), now(), now())"
    " ON CONFLICT (job_id) DO UPDATE SET"
    " status = 'pending',"
    " metadata = COALESCE(" T "metadata, '{}'::jsonb) || EXCLUDED.metadata,"
    " updated_at = EXCLUDED.updated_at"
    " WHERE " T "status IN " PB_AUDIT_RESETTABLE_SQL;

/* Names of the two upserts, prepared once per connection for batches. */
#define PB_PG_APPLY  "pb_audit_apply"
#define PB_PG_RESET  "pb_audit_reset"

typedef struct {
    PGconn  *conn;
    int      prepared;      /* PB_PG_APPLY and PB_PG_RESET exist on conn */
} pb_pg_t;

/* libpq prints NOTICEs ("column already exists, skipping") on stderr,
 * where the worker's JSON log lines go.  They carry nothing we need. */
static void
pb_pg_notice(void *arg, const char *message)
{
    (void) arg;
    (void) message;
}

/*
 * Per-session settings, after every (re)connect.  Rails keeps UTC in
 * "timestamp without time zone" columns, so now() must be taken in UTC.
 */
static int
pb_pg_session(PGconn *conn)
{
    PGresult  *res;
    int        ok;

    res = PQexec(conn, "SET TIME ZONE 'UTC'");
    ok = (PQresultStatus(res) == PGRES_COMMAND_OK);
    PQclear(res);

    return ok;
}

/*
 * libpq quotes the whole URI in some parse errors ('... in URI: "..."'),
 * password included: cut the message where the URL starts.
 */
static const char *
pb_pg_redact(char *msg, const char *url)
{
    char    *p;
    size_t   n;

    p = strstr(msg, url);
    if (p != NULL) {
        *p = '\0';
        n = strlen(msg);
        while (n > 0 && (msg[n - 1] == '"' || msg[n - 1] == ':'
                         || msg[n - 1] == ' '))
        {
            msg[--n] = '\0';
        }
    }

    return msg;
}

static void *
pb_pg_open(const char *url, char *err, size_t err_len)
{
    static const char *const  keys[] = { "connect_timeout", "dbname", NULL };
    const char               *values[3];
    PQconninfoOption         *opts;
    char                     *msg;
    pb_pg_t                  *pg;

    /* Syntax errors are permanent: say so now rather than retry forever. */
    msg = NULL;
    opts = PQconninfoParse(url, &msg);
    if (opts == NULL) {
        pb_audit_seterr(err, err_len, "audit: bad PostgreSQL URL: %s",
            msg ? pb_pg_redact(msg, url) : "out of memory");
        PQfreemem(msg);
        return NULL;
    }
    PQconninfoFree(opts);

    pg = calloc(1, sizeof(*pg));
    if (pg == NULL) {
        pb_audit_seterr(err, err_len, "audit: out of memory");
        return NULL;
    }

    /* The URL is expanded after our default, so its own settings win. */
    values[0] = PB_PG_CONNECT_TIMEOUT;
    values[1] = url;
    values[2] = NULL;

    pg->conn = PQconnectdbParams(keys, values, 1);
    if (pg->conn == NULL) {
        pb_audit_seterr(err, err_len, "audit: out of memory");
        free(pg);
        return NULL;
    }

    PQsetNoticeProcessor(pg->conn, pb_pg_notice, NULL);

    /* A server that is down now is not an open failure: the first call
     * reconnects (see pb_pg_exec) and reports RETRY until it is up. */
    if (PQstatus(pg->conn) == CONNECTION_OK) {
        (void) pb_pg_session(pg->conn);
    }

    return pg;
}

/*
 * Which failures pass: connection trouble (08), resources (53), operator
 * intervention such as a shutdown (57), system errors (58), serialisation
 * failures and deadlocks (40), lock timeouts (55P03).  Everything else
 * (bad JSON 22P02, missing table 42P01, ...) fails the same way again.
 */
static pb_audit_rc_t
pb_pg_classify(const char *state)
{
    if (state == NULL) {
        return PB_AUDIT_RETRY;
    }

    if (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0
        || strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0
        || strncmp(state, "40", 2) == 0 || strcmp(state, "55P03") == 0)
    {
        return PB_AUDIT_RETRY;
    }

    return PB_AUDIT_FAIL;
}

/*
 * (Re)connects when the connection is down: 0, or -1 with err (a RETRY).
 * A new session has none of the old one's prepared statements.
 */
static int
pb_pg_connect(pb_pg_t *pg, const char *what, char *err, size_t err_len)
{
    if (PQstatus(pg->conn) == CONNECTION_OK) {
        return 0;
    }

    pg->prepared = 0;
    PQreset(pg->conn);

    if (PQstatus(pg->conn) != CONNECTION_OK || !pb_pg_session(pg->conn)) {
        pb_audit_seterr(err, err_len, "audit: postgres unreachable (%s): %s",
            what, PQerrorMessage(pg->conn));
        return -1;
    }

    return 0;
}

/* A failed statement's code and message, on a connection still up. */
static pb_audit_rc_t
pb_pg_error(pb_pg_t *pg, const PGresult *res, const char *what, char *err,
    size_t err_len)
{
    const char  *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    pb_audit_seterr(err, err_len, "audit: postgres: %s: %s%s", what,
        res ? PQresultErrorMessage(res) : PQerrorMessage(pg->conn),
        state && strcmp(state, "42P01") == 0 ? " (run the migrations)" : "");

    return pb_pg_classify(state);
}

/*
 * Runs sql (with n text parameters; n == 0 allows several statements, for
 * migrations), reconnecting first when the connection is down and once
 * more when it drops during the call.
 */
static pb_audit_rc_t
pb_pg_exec(pb_pg_t *pg, const char *sql, const char *const *values, int n,
    const char *what, char *err, size_t err_len)
{
    PGresult        *res;
    ExecStatusType   st;
    pb_audit_rc_t    rc;
    int              attempt;

    for (attempt = 0; attempt < 2; attempt++) {

        if (pb_pg_connect(pg, what, err, err_len) != 0) {
            return PB_AUDIT_RETRY;
        }

        if (n == 0) {
            res = PQexec(pg->conn, sql);
        } else {
            res = PQexecParams(pg->conn, sql, n, NULL, values, NULL, NULL, 0);
        }

        st = PQresultStatus(res);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            PQclear(res);
            return PB_AUDIT_OK;
        }

        if (PQstatus(pg->conn) == CONNECTION_OK) {
            rc = pb_pg_error(pg, res, what, err, err_len);
            PQclear(res);
            return rc;
        }

        /* Lost the connection under this statement (server restarted,
         * network cut): reconnect and send it once more. */
        pb_audit_seterr(err, err_len, "audit: postgres connection lost "
            "(%s): %s", what, PQerrorMessage(pg->conn));
        PQclear(res);
    }

    return PB_AUDIT_RETRY;
}

static pb_audit_rc_t
pb_pg_migrate(void *handle, const pb_audit_migration_t *m, char *err,
    size_t err_len)
{
    /* One simple-query message: the file runs as a single transaction. */
    return pb_pg_exec(handle, m->sql, NULL, 0, m->name, err, err_len);
}

static pb_audit_rc_t
pb_pg_op(void *handle, const pb_audit_op_t *op, char *err, size_t err_len)
{
    const char  *values[PB_AUDIT_MAX_PARAMS];
    int          n;

    n = pb_audit_op_params(op, values);

    return pb_pg_exec(handle, op->reset ? pb_pg_reset_sql : pb_pg_apply_sql,
                      values, n, op->u.job_id, err, err_len);
}

/* Prepares the two upserts on this connection, once. */
static pb_audit_rc_t
pb_pg_prepare(pb_pg_t *pg, char *err, size_t err_len)
{
    static const struct {
        const char  *name;
        const char  *sql;
        int          n;
    } stmts[] = {
        { PB_PG_APPLY, pb_pg_apply_sql, 6 },
        { PB_PG_RESET, pb_pg_reset_sql, 2 },
    };
    PGresult       *res;
    pb_audit_rc_t   rc;
    size_t          i;

    for (i = 0; !pg->prepared && i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        res = PQprepare(pg->conn, stmts[i].name, stmts[i].sql, stmts[i].n,
                        NULL);
        rc = PQresultStatus(res) == PGRES_COMMAND_OK
             ? PB_AUDIT_OK
             : PQstatus(pg->conn) == CONNECTION_OK
             ? pb_pg_error(pg, res, "prepare", err, err_len)
             : PB_AUDIT_RETRY;

        if (rc == PB_AUDIT_RETRY && PQstatus(pg->conn) != CONNECTION_OK) {
            pb_audit_seterr(err, err_len, "audit: postgres connection lost "
                "(prepare): %s", PQerrorMessage(pg->conn));
        }

        PQclear(res);

        if (rc != PB_AUDIT_OK) {
            return rc;
        }
    }

    pg->prepared = 1;
    return PB_AUDIT_OK;
}

/* Queues BEGIN, the ops and COMMIT, then the sync; 0 or -1. */
static int
pb_pg_send_batch(pb_pg_t *pg, const pb_audit_op_t *ops, size_t n)
{
    const char  *values[PB_AUDIT_MAX_PARAMS];
    size_t       i;
    int          np;

    if (!PQsendQueryParams(pg->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        np = pb_audit_op_params(&ops[i], values);
        if (!PQsendQueryPrepared(pg->conn,
                                 ops[i].reset ? PB_PG_RESET : PB_PG_APPLY,
                                 np, values, NULL, NULL, 0))
        {
            return -1;
        }
    }

    if (!PQsendQueryParams(pg->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0)
        || !PQpipelineSync(pg->conn))
    {
        return -1;
    }

    return 0;
}

/*
 * Reads the results of the n + 2 statements and the sync.  Statement q is
 * BEGIN (0), op q - 1, or COMMIT (n + 1); after the first error the server
 * skips the rest (PGRES_PIPELINE_ABORTED).  Returns OK only when COMMIT
 * succeeded; -1 in *failed_q when no statement failed (connection lost).
 */
static pb_audit_rc_t
pb_pg_read_batch(pb_pg_t *pg, const pb_audit_op_t *ops, size_t n,
    long *failed_q, char *err, size_t err_len)
{
    PGresult        *res;
    ExecStatusType   st;
    pb_audit_rc_t    rc = PB_AUDIT_RETRY;
    size_t           q;

    *failed_q = -1;

    for (q = 0; q < n + 2; q++) {
        res = PQgetResult(pg->conn);
        if (res == NULL) {
            break;          /* the connection is gone */
        }

        st = PQresultStatus(res);
        if (st == PGRES_FATAL_ERROR && *failed_q < 0
            && PQstatus(pg->conn) == CONNECTION_OK)
        {
            *failed_q = (long) q;
            rc = pb_pg_error(pg, res, q >= 1 && q <= n ? ops[q - 1].u.job_id
                                                       : "batch",
                             err, err_len);
        }

        if (q == n + 1 && st == PGRES_COMMAND_OK) {
            rc = PB_AUDIT_OK;
        }

        PQclear(res);

        /* each statement's results end with a NULL */
        res = PQgetResult(pg->conn);
        if (res != NULL) {
            PQclear(res);
            return PB_AUDIT_RETRY;      /* not the protocol we speak */
        }
    }

    if (q < n + 2 || PQstatus(pg->conn) != CONNECTION_OK) {
        pb_audit_seterr(err, err_len, "audit: postgres connection lost "
            "(batch): %s", PQerrorMessage(pg->conn));
        *failed_q = -1;
        return PB_AUDIT_RETRY;
    }

    res = PQgetResult(pg->conn);
    st = PQresultStatus(res);
    PQclear(res);

    return st == PGRES_PIPELINE_SYNC ? rc : PB_AUDIT_RETRY;
}

static pb_audit_rc_t
pb_pg_batch(void *handle, const pb_audit_op_t *ops, size_t n, size_t *bad,
    char *err, size_t err_len)
{
    pb_pg_t        *pg = handle;
    pb_audit_rc_t   rc;
    long            failed_q;
    int             sent;

    *bad = n;

    if (pb_pg_connect(pg, "batch", err, err_len) != 0) {
        return PB_AUDIT_RETRY;
    }

    rc = pb_pg_prepare(pg, err, err_len);
    if (rc != PB_AUDIT_OK) {
        return rc;
    }

    if (!PQenterPipelineMode(pg->conn)) {
        pb_audit_seterr(err, err_len, "audit: postgres: pipeline: %s",
            PQerrorMessage(pg->conn));
        return PB_AUDIT_RETRY;
    }

    /*
     * libpq sends in blocking mode and reads the server's results into its
     * buffer while it waits to write, so a large batch cannot deadlock
     * against a server blocked on writing those results to us.
     */
    sent = pb_pg_send_batch(pg, ops, n);
    if (sent != 0) {
        pb_audit_seterr(err, err_len, "audit: postgres: send: %s",
            PQerrorMessage(pg->conn));
        rc = PB_AUDIT_RETRY;
        failed_q = -1;

    } else {
        rc = pb_pg_read_batch(pg, ops, n, &failed_q, err, err_len);
    }

    if (failed_q >= 1 && (size_t) failed_q <= n) {
        *bad = (size_t) failed_q - 1;
    }

    if (sent != 0 || !PQexitPipelineMode(pg->conn)) {
        /* results we could not read: start a clean session next time
         * rather than guess where the stream stands */
        PQreset(pg->conn);
        pg->prepared = 0;
        if (PQstatus(pg->conn) == CONNECTION_OK) {
            (void) pb_pg_session(pg->conn);
        }
        return rc == PB_AUDIT_OK ? PB_AUDIT_RETRY : rc;
    }

    /* A failed statement left the explicit transaction aborted, not
     * ended: end it, or the next statement of this session fails too. */
    if (PQtransactionStatus(pg->conn) != PQTRANS_IDLE) {
        PQclear(PQexec(pg->conn, "ROLLBACK"));
    }

    return rc;
}

static void
pb_pg_close(void *handle)
{
    pb_pg_t  *pg = handle;

    PQfinish(pg->conn);
    free(pg);
}

const pb_audit_backend_t  pb_audit_pg_backend = {
    "postgresql",
    pb_pg_open,
    pb_pg_migrate,
    pb_pg_op,
    pb_pg_batch,
    pb_pg_close
};
