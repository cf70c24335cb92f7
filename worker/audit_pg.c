/*
 * The PostgreSQL audit backend ("postgresql://..." or "postgres://...").
 *
 * One blocking libpq connection, opened lazily and reset after it is lost:
 * a database outage turns into PB_AUDIT_RETRY (the worker keeps payloads
 * in Redis and retries) and the first call after the server is back
 * succeeds.  A statement whose connection died under it is sent once more
 * on the new connection; that is safe because every statement here is an
 * idempotent upsert.
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

typedef struct {
    PGconn  *conn;
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
    const char      *state;
    pb_audit_rc_t    rc;
    int              attempt;

    for (attempt = 0; attempt < 2; attempt++) {

        if (PQstatus(pg->conn) != CONNECTION_OK) {
            PQreset(pg->conn);

            if (PQstatus(pg->conn) != CONNECTION_OK
                || !pb_pg_session(pg->conn))
            {
                pb_audit_seterr(err, err_len, "audit: postgres unreachable "
                    "(%s): %s", what, PQerrorMessage(pg->conn));
                return PB_AUDIT_RETRY;
            }
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
            state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            rc = pb_pg_classify(state);
            pb_audit_seterr(err, err_len, "audit: postgres: %s: %s%s", what,
                res ? PQresultErrorMessage(res) : PQerrorMessage(pg->conn),
                state && strcmp(state, "42P01") == 0
                ? " (run the migrations)" : "");
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
pb_pg_apply(void *handle, const pb_audit_update_t *u, char *err,
    size_t err_len)
{
    const char  *values[6];

    values[0] = u->job_id;
    values[1] = u->agent_id;
    values[2] = u->status;
    values[3] = u->container_id;
    values[4] = u->webhook_payload;
    values[5] = u->metadata;

    return pb_pg_exec(handle, pb_pg_apply_sql, values, 6, u->job_id, err,
                      err_len);
}

static pb_audit_rc_t
pb_pg_reset(void *handle, const char *job_id, const char *metadata,
    char *err, size_t err_len)
{
    const char  *values[2];

    values[0] = job_id;
    values[1] = metadata;

    return pb_pg_exec(handle, pb_pg_reset_sql, values, 2, job_id, err,
                      err_len);
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
    pb_pg_apply,
    pb_pg_reset,
    pb_pg_close
};
