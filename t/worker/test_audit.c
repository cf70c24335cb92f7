/*
 * Tests for the audit log (worker/audit*.c) against a real SQLite file and
 * a real PostgreSQL server.  Run by t/worker/test_audit.sh, which builds
 * this, starts PostgreSQL (scripts/postgres.sh) and sets:
 *
 *   PB_TEST_PG_PORT    the test cluster's port (default 5499)
 *   PB_TEST_TMP        a scratch directory for SQLite files
 *   PB_POSTGRES_SH     path of scripts/postgres.sh (the outage test stops
 *                      and restarts the server with it)
 *   PB_MIGRATE_SH      path of scripts/migrate.sh
 *   PB_TEST_SKIP_PG=1  SQLite only (says so in the output)
 *
 * Prints one line per check failure and per test, and ends with
 * "N passed, N failed"; exits non-zero when anything failed.
 */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "audit.h"
#include "audit_backend.h"

static int  passed, failed;

#define CHECK(cond)  check(!!(cond), #cond, __LINE__)
#define CHECK_RC(call, want)  check_rc((call), (want), #call, __LINE__)
#define CHECK_STR(got, want)  check_str((got), (want), #got, __LINE__)

static void
check(int ok, const char *what, int line)
{
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("  FAIL line %d: %s\n", line, what);
    }
}

static char  err[512];

static void
check_rc(int got, int want, const char *what, int line)
{
    if (got == want) {
        passed++;
    } else {
        failed++;
        printf("  FAIL line %d: %s = %d, want %d (err: %s)\n", line, what,
               got, want, err);
    }
}

/* Frees got (a query result). */
static void
check_str(char *got, const char *want, const char *what, int line)
{
    int  ok;

    ok = (got == NULL && want == NULL)
         || (got != NULL && want != NULL && strcmp(got, want) == 0);

    if (ok) {
        passed++;
    } else {
        failed++;
        printf("  FAIL line %d: %s = %s%s%s, want %s%s%s\n", line, what,
               got ? "\"" : "", got ? got : "NULL", got ? "\"" : "",
               want ? "\"" : "", want ? want : "NULL", want ? "\"" : "");
    }

    free(got);
}

/* ---- direct access to the databases, to look behind the API ---- */

typedef struct {
    const char  *name;
    char         url[600];
    char         path[512];     /* SQLite file, or PostgreSQL conninfo */
    int          pg;
} db_t;

static char *
dup_str(const char *s)
{
    size_t  n = strlen(s) + 1;
    char   *d = malloc(n);

    if (d != NULL) {
        memcpy(d, s, n);
    }
    return d;
}

/*
 * First column of the first row of sql, with $1 bound to param (SQLite
 * takes "$1" as a parameter name too), as a malloc'd string; NULL for SQL
 * NULL, no row or an error ("!error: ..." is returned for errors so a
 * check shows it).
 */
static char *
query(const db_t *db, const char *sql, const char *param)
{
    char          *out = NULL;

    if (db->pg) {
        PGconn    *conn = PQconnectdb(db->path);
        PGresult  *res;

        res = PQexecParams(conn, sql, param ? 1 : 0, NULL, &param, NULL,
                           NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
                out = dup_str(PQgetvalue(res, 0, 0));
            }
        } else if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            char  buf[600];
            snprintf(buf, sizeof(buf), "!error: %s", PQerrorMessage(conn));
            out = dup_str(buf);
        }
        PQclear(res);
        PQfinish(conn);

    } else {
        sqlite3       *h = NULL;
        sqlite3_stmt  *st = NULL;
        int            rc;

        rc = sqlite3_open(db->path, &h);
        if (rc == SQLITE_OK) {
            rc = sqlite3_prepare_v2(h, sql, -1, &st, NULL);
        }
        if (rc == SQLITE_OK && param) {
            sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
        }
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
                    out = dup_str((const char *) sqlite3_column_text(st, 0));
                }
                rc = SQLITE_OK;
            } else if (rc == SQLITE_DONE) {
                rc = SQLITE_OK;
            }
        }
        if (rc != SQLITE_OK) {
            char  buf[600];
            snprintf(buf, sizeof(buf), "!error: %s", sqlite3_errmsg(h));
            out = dup_str(buf);
        }
        sqlite3_finalize(st);
        sqlite3_close(h);
    }

    return out;
}

/* A column (expression) of the job's row. */
static char *
col(const db_t *db, const char *expr, const char *job_id)
{
    char  sql[512];

    snprintf(sql, sizeof(sql),
             "SELECT %s FROM service_audit_logs WHERE job_id = $1", expr);
    return query(db, sql, job_id);
}

static int
count_rows(const db_t *db)
{
    char  *s = query(db, "SELECT count(*) FROM service_audit_logs", NULL);
    int    n = s && s[0] != '!' ? atoi(s) : -1;

    free(s);
    return n;
}

/* Runs setup SQL directly; 0 on success. */
static int
run_sql(const db_t *db, const char *sql)
{
    char  *s = query(db, sql, NULL);
    int    bad = s != NULL && s[0] == '!';

    if (bad) {
        printf("  setup SQL failed: %s\n", s);
    }
    free(s);
    return bad ? -1 : 0;
}

static int
has_column(const db_t *db, const char *column)
{
    char  *s;
    int    n;

    s = query(db, db->pg
              ? "SELECT count(*) FROM information_schema.columns"
                " WHERE table_name = 'service_audit_logs'"
                " AND column_name = $1"
              : "SELECT count(*) FROM pragma_table_info('service_audit_logs')"
                " WHERE name = $1", column);
    n = s ? atoi(s) : 0;
    free(s);
    return n == 1;
}

/* ---- fixtures ---- */

static void
quiet(void *arg, const char *message)
{
    (void) arg;
    (void) message;
}

static const char  *pg_port;
static const char  *tmpdir;

/* A fresh SQLite file. */
static void
sqlite_db(db_t *db, const char *name)
{
    memset(db, 0, sizeof(*db));
    db->name = "sqlite";
    snprintf(db->path, sizeof(db->path), "%s/%s.db", tmpdir, name);
    snprintf(db->url, sizeof(db->url), "sqlite:%s", db->path);
    unlink(db->path);
    {
        char  side[600];
        snprintf(side, sizeof(side), "%s-wal", db->path);
        unlink(side);
        snprintf(side, sizeof(side), "%s-shm", db->path);
        unlink(side);
    }
}

/* A fresh PostgreSQL database on the test cluster; -1 if that failed. */
static int
pg_db(db_t *db, const char *name)
{
    char       admin[256], sql[256];
    PGconn    *conn;
    PGresult  *res;
    int        ok;

    memset(db, 0, sizeof(*db));
    db->name = "postgresql";
    db->pg = 1;
    snprintf(db->path, sizeof(db->path),
             "host=127.0.0.1 port=%s user=postgres dbname=%s", pg_port, name);
    snprintf(db->url, sizeof(db->url),
             "postgresql://postgres@127.0.0.1:%s/%s", pg_port, name);

    snprintf(admin, sizeof(admin),
             "host=127.0.0.1 port=%s user=postgres dbname=pb_test", pg_port);
    conn = PQconnectdb(admin);
    PQsetNoticeProcessor(conn, quiet, NULL);

    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)",
             name);
    res = PQexec(conn, sql);
    PQclear(res);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    res = PQexec(conn, sql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) {
        printf("  cannot create database %s: %s", name, PQerrorMessage(conn));
    }
    PQclear(res);
    PQfinish(conn);

    return ok ? 0 : -1;
}

static pb_audit_t *
open_migrated(const db_t *db)
{
    pb_audit_t  *a;

    err[0] = '\0';
    a = pb_audit_open(db->url, err, sizeof(err));
    CHECK(a != NULL);
    if (a != NULL) {
        CHECK_RC(pb_audit_migrate(a, err, sizeof(err)), PB_AUDIT_OK);
    }
    return a;
}

static int
apply(pb_audit_t *a, const char *job, const char *agent, const char *status,
    const char *container, const char *payload, const char *metadata)
{
    pb_audit_update_t  u;

    memset(&u, 0, sizeof(u));
    u.job_id = job;
    u.agent_id = agent;
    u.status = status;
    u.container_id = container;
    u.webhook_payload = payload;
    u.metadata = metadata;

    err[0] = '\0';
    return pb_audit_apply(a, &u, err, sizeof(err));
}

#define PAYLOAD_OK                                                          \
    "{\"agentId\":\"a1\",\"containerId\":\"c1\",\"exitCode\":0,"            \
    "\"exitMessage\":\"finished\",\"resultObject\":\"[{\\\"n\\\":1}]\"}"

/* ---- batches ---- */

/* One op of a test batch; the job id gets a prefix so a list serves twice. */
typedef struct {
    const char  *job, *agent, *status, *container, *payload, *metadata;
    int          reset;
} op_spec_t;

#define MAX_OPS  64

typedef struct {
    size_t         n;
    char           jobs[MAX_OPS][64];
    pb_audit_op_t  ops[MAX_OPS];
} batch_t;

static batch_t *
make_batch(batch_t *b, const op_spec_t *spec, size_t n, const char *prefix)
{
    size_t  i;

    memset(b, 0, sizeof(*b));
    for (i = 0; i < n && i < MAX_OPS; i++) {
        snprintf(b->jobs[i], sizeof(b->jobs[i]), "%s%s", prefix, spec[i].job);
        b->ops[i].u.job_id = b->jobs[i];
        b->ops[i].u.agent_id = spec[i].agent;
        b->ops[i].u.status = spec[i].status;
        b->ops[i].u.container_id = spec[i].container;
        b->ops[i].u.webhook_payload = spec[i].payload;
        b->ops[i].u.metadata = spec[i].metadata;
        b->ops[i].reset = spec[i].reset;
    }
    b->n = i;

    return b;
}

static int
apply_batch(pb_audit_t *a, const batch_t *b, size_t n, size_t *bad)
{
    err[0] = '\0';
    return pb_audit_apply_batch(a, b->ops, n, bad, err, sizeof(err));
}

/* The rows as one string, each row's expression row, in job_id order. */
static char *
aggregate(const db_t *db, const char *row)
{
    char  sql[1024];

    if (db->pg) {
        snprintf(sql, sizeof(sql), "SELECT string_agg(%s, E'\\n'"
                 " ORDER BY job_id) FROM service_audit_logs", row);
    } else {
        snprintf(sql, sizeof(sql), "SELECT group_concat(r, char(10)) FROM"
                 " (SELECT %s AS r FROM service_audit_logs ORDER BY job_id)",
                 row);
    }

    return query(db, sql, NULL);
}

#define CONTENTS_SQL                                                        \
    "job_id || '|' || COALESCE(status, '~') || '|'"                         \
    " || COALESCE(agent_id, '~') || '|'"                                    \
    " || COALESCE(phantom_container_id, '~') || '|'"                        \
    " || COALESCE(CAST(webhook_payload AS text), '~') || '|'"               \
    " || COALESCE(CAST(metadata AS text), '~')"

/* The table's contents as one string, the times left out. */
static char *
contents(const db_t *db)
{
    return aggregate(db, CONTENTS_SQL);
}

/*
 * The whole table as one string, every column as text, in job_id order
 * (updated_at only when asked): two equal snapshots mean nothing changed.
 */
static char *
snapshot(const db_t *db, int with_updated_at)
{
    return aggregate(db, with_updated_at
        ? CONTENTS_SQL " || '|' || CAST(created_at AS text)"
          " || '|' || CAST(updated_at AS text)"
        : CONTENTS_SQL " || '|' || CAST(created_at AS text)");
}

static void
pause_ms(long ms)
{
    struct timespec  ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* The ops of a batch with the calls one by one, each expected to pass. */
static void
apply_one_by_one(pb_audit_t *a, const batch_t *b)
{
    size_t  i;

    for (i = 0; i < b->n; i++) {
        err[0] = '\0';
        CHECK_RC(b->ops[i].reset
                 ? pb_audit_reset(a, b->ops[i].u.job_id, b->ops[i].u.metadata,
                                  err, sizeof(err))
                 : pb_audit_apply(a, &b->ops[i].u, err, sizeof(err)),
                 PB_AUDIT_OK);
    }
}

/* A life with a dead letter and its retry, and a webhook nobody owns. */
static const op_spec_t  life[] = {
    { "j", "ag", "pending", NULL, NULL,
      "{\"queue_position\":1,\"attempts\":0}", 0 },
    { "j", "ag", "phantom_launched", "c1", NULL,
      "{\"attempts\":1,\"found_by\":\"launch\"}", 0 },
    { "j", "ag", "dead_lettered", NULL, NULL, "{\"error\":\"HTTP 400\"}", 0 },
    { "j", NULL, NULL, NULL, NULL, "{\"attempts\":0,\"retried\":1}", 1 },
    { "j", "ag", "phantom_launched", "c2", NULL, "{\"attempts\":1}", 0 },
    { "j", "ag", "webhook_received", "c2", PAYLOAD_OK,
      "{\"found_by\":\"webhook\"}", 0 },
    { "j", "ag", "success", "c2", NULL, "{\"next_job_queued\":false}", 0 },
    { "k", "ag", "pending", NULL, NULL, "{\"queue_position\":2}", 0 },
    { "container:9", "ag", "webhook_received", "9", PAYLOAD_OK,
      "{\"error\":\"unknown container\"}", 0 },
};

#define NLIFE  (sizeof(life) / sizeof(life[0]))

/* A batch does exactly what the same calls one by one do. */
static void
test_batch(const db_t *db)
{
    pb_audit_t  *a = open_migrated(db);
    batch_t      b;
    size_t       bad = 99;
    const char  *jobs[] = { "j", "k", "container:9" };
    const char  *cols[] = { "status", "agent_id", "phantom_container_id",
                            "CAST(webhook_payload AS text)",
                            "CAST(metadata AS text)" };
    char         one[64], many[64];
    size_t       j, c;

    if (a == NULL) {
        return;
    }

    make_batch(&b, life, NLIFE, "one-");
    apply_one_by_one(a, &b);

    make_batch(&b, life, NLIFE, "many-");
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_OK);
    CHECK(bad == b.n);
    CHECK(count_rows(db) == 6);

    for (j = 0; j < sizeof(jobs) / sizeof(jobs[0]); j++) {
        snprintf(one, sizeof(one), "one-%s", jobs[j]);
        snprintf(many, sizeof(many), "many-%s", jobs[j]);
        for (c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) {
            char  *want = col(db, cols[c], one);

            CHECK_STR(col(db, cols[c], many), want);
            free(want);
        }
    }
    CHECK_STR(col(db, "status", "many-j"), "success");
    CHECK_STR(col(db, "metadata->>'error'", "many-j"), "HTTP 400");

    /* An empty batch is fine, and so is the handle after all this. */
    CHECK_RC(apply_batch(a, &b, 0, &bad), PB_AUDIT_OK);
    CHECK_RC(apply(a, "after", "ag", "pending", NULL, NULL, NULL),
             PB_AUDIT_OK);

    pb_audit_close(a);
}

/*
 * A batch long enough for the statements of many rows (SQLite's updates
 * go 16 to a statement; PostgreSQL's one by one): jobs whose rows follow
 * each other inside one statement, a reset between them, the same result
 * as the calls one by one; a row refused in the middle of such a
 * statement is named exactly, and nothing of the batch is written.
 */
static void
test_batch_rows(const db_t *db)
{
    op_spec_t    spec[48];
    char         meta[48][64];
    const char  *statuses[] = { "pending", "phantom_launched",
                                "webhook_received", "success" };
    pb_audit_t  *a = open_migrated(db);
    batch_t      b;
    size_t       i, bad = 0;
    char        *one, *many;

    if (a == NULL) {
        return;
    }

    /* twelve jobs, four rows each, the rows of three jobs interleaved */
    for (i = 0; i < 48; i++) {
        static const char  *jobs[] = { "r0", "r1", "r2", "r3", "r4", "r5",
                                       "r6", "r7", "r8", "r9", "r10",
                                       "r11" };

        snprintf(meta[i], sizeof(meta[i]), "{\"step\":%zu,\"k%zu\":1}", i,
                 i % 4);
        memset(&spec[i], 0, sizeof(spec[i]));
        spec[i].job = jobs[(i / 12) * 3 + i % 3];
        spec[i].agent = "ag";
        spec[i].status = statuses[(i % 12) / 3];
        spec[i].container = (i % 12) / 3 > 0 ? "c" : NULL;
        spec[i].payload = (i % 12) / 3 == 2 ? PAYLOAD_OK : NULL;
        spec[i].metadata = meta[i];
    }
    spec[19].status = "dead_lettered";  /* r4 */
    spec[22].reset = 1;                 /* r4 back to pending */

    make_batch(&b, spec, 48, "one-");
    apply_one_by_one(a, &b);
    one = contents(db);
    CHECK(one != NULL && count_rows(db) == 12);
    run_sql(db, "DELETE FROM service_audit_logs");

    make_batch(&b, spec, 48, "one-");
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_OK);
    CHECK(bad == b.n);
    many = contents(db);
    CHECK(one != NULL && many != NULL && strcmp(one, many) == 0);
    CHECK_STR(col(db, "status", "one-r4"), "pending");
    CHECK_STR(col(db, "status", "one-r5"), "success");
    CHECK_STR(col(db, "metadata->>'k3'", "one-r0"), "1");
    free(one);
    free(many);

    /* refused by the database in the middle of a statement of 16 */
    run_sql(db, "DELETE FROM service_audit_logs");
    make_batch(&b, spec, 48, "bad-");
    b.ops[29].u.metadata = "{bad";
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_FAIL);
    CHECK(bad == 29);
    CHECK(count_rows(db) == 0);

    /* the rows before it on their own, then the rest after it */
    CHECK_RC(apply_batch(a, &b, 29, &bad), PB_AUDIT_OK);
    b.ops[29].u.metadata = "{}";
    CHECK_RC(pb_audit_apply_batch(a, &b.ops[29], b.n - 29, &bad, err,
                                  sizeof(err)), PB_AUDIT_OK);
    CHECK(count_rows(db) == 12);

    pb_audit_close(a);
}

/*
 * A row the database refuses fails its batch as a whole (nothing of it is
 * written) and is named, so the caller can write the others around it.
 */
static void
test_batch_bad_row(const db_t *db)
{
    static const op_spec_t  spec[] = {
        { "a", "ag", "pending", NULL, NULL, NULL, 0 },
        { "b", "ag", "pending", NULL, NULL, "{\"queue_position\":1}", 0 },
        { "a", "ag", "webhook_received", "ca", NULL, "{not json", 0 },
        { "c", "ag", "pending", NULL, NULL, NULL, 0 },
    };
    pb_audit_t  *a = open_migrated(db);
    batch_t      b;
    size_t       bad;

    if (a == NULL) {
        return;
    }

    /* refused by the database, in the middle of the transaction */
    make_batch(&b, spec, 4, "");
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_FAIL);
    CHECK(bad == 2);
    CHECK(strstr(err, "job a") != NULL || strstr(err, "JSON") != NULL
          || strstr(err, "json") != NULL);
    CHECK(count_rows(db) == 0);

    /* refused by the checks before the database sees anything */
    b.ops[2].u.metadata = NULL;
    b.ops[2].u.webhook_payload = "{not json";
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_FAIL);
    CHECK(bad == 2);
    CHECK(strstr(err, "not valid JSON") != NULL);
    b.ops[2].u.webhook_payload = NULL;
    b.ops[1].u.status = "running";
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_FAIL);
    CHECK(bad == 1);
    CHECK(strstr(err, "unknown status") != NULL);
    b.ops[1].u.status = "pending";
    b.ops[3].u.metadata = "[1]";
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_FAIL);
    CHECK(bad == 3);
    b.ops[3].u.job_id = NULL;
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_FAIL);
    CHECK(bad == 3);
    CHECK(count_rows(db) == 0);

    /* the rows before the bad one go through on their own, and the
     * session is usable after the failed transaction */
    make_batch(&b, spec, 4, "");
    CHECK_RC(apply_batch(a, &b, 2, &bad), PB_AUDIT_OK);
    CHECK(count_rows(db) == 2);
    CHECK_STR(col(db, "metadata->>'queue_position'", "b"), "1");
    CHECK_RC(apply_batch(a, &b, 1, &bad), PB_AUDIT_OK);

    pb_audit_close(a);
}

/*
 * A worker that died after the commit and before removing the rows from
 * Redis writes the same batch again, maybe with newer rows behind it.
 * Every row ends up as written once; the table does not change at all
 * when no job's rows in the batch overwrite each other's metadata keys
 * (else the earlier rows flip those keys back for a moment and the row's
 * updated_at moves, its content does not).
 */
static void
test_batch_replay(const db_t *db)
{
    static const op_spec_t  plain[] = {
        { "r", "ag", "pending", NULL, NULL, "{\"queue_position\":1}", 0 },
        { "r", NULL, "phantom_launched", "cr", NULL, "{\"attempts\":1}", 0 },
        { "r", NULL, "webhook_received", "cr", PAYLOAD_OK,
          "{\"webhook_received_at\":\"t\"}", 0 },
        { "s", "ag", "pending", NULL, NULL, "{\"queue_position\":2}", 0 },
        { "container:7", "ag", "webhook_received", "7", PAYLOAD_OK,
          "{\"error\":\"unknown container\"}", 0 },
    };
    pb_audit_t  *a = open_migrated(db);
    batch_t      b, l;
    size_t       bad;
    char        *before, *after;

    if (a == NULL) {
        return;
    }

    make_batch(&b, plain, 5, "");
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_OK);
    before = snapshot(db, 1);
    pause_ms(20);
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_OK);
    after = snapshot(db, 1);
    CHECK_STR(after, before);
    free(before);
    CHECK(count_rows(db) == 3);

    /* the full life of a job, retry included: same content again */
    make_batch(&l, life, NLIFE, "");
    CHECK_RC(apply_batch(a, &l, l.n, &bad), PB_AUDIT_OK);
    before = snapshot(db, 0);
    CHECK_RC(apply_batch(a, &l, l.n, &bad), PB_AUDIT_OK);
    CHECK_STR(snapshot(db, 0), before);

    /* committed half, then replayed with the rest behind it */
    make_batch(&l, life, NLIFE, "half-");
    CHECK_RC(apply_batch(a, &l, 4, &bad), PB_AUDIT_OK);
    CHECK_RC(apply_batch(a, &l, l.n, &bad), PB_AUDIT_OK);
    make_batch(&l, life, NLIFE, "once-");
    CHECK_RC(apply_batch(a, &l, l.n, &bad), PB_AUDIT_OK);
    {
        char  *once = col(db, "CAST(metadata AS text) || status"
                          " || phantom_container_id", "once-j");

        CHECK_STR(col(db, "CAST(metadata AS text) || status"
                      " || phantom_container_id", "half-j"), once);
        free(once);
    }
    free(before);

    pb_audit_close(a);
}

/* ---- tests, run for both backends ---- */

static void
test_migrate_twice(const db_t *db)
{
    pb_audit_t  *a = open_migrated(db);

    if (a == NULL) {
        return;
    }
    CHECK_RC(pb_audit_migrate(a, err, sizeof(err)), PB_AUDIT_OK);
    CHECK(has_column(db, "job_id"));
    CHECK(has_column(db, "phantom_container_id"));
    CHECK(has_column(db, "webhook_payload"));
    CHECK(has_column(db, "metadata"));
    CHECK(count_rows(db) == 0);
    pb_audit_close(a);

    /* A new handle on a migrated database: still fine. */
    a = open_migrated(db);
    pb_audit_close(a);
}

static void
test_lifecycle(const db_t *db)
{
    pb_audit_t  *a = open_migrated(db);

    if (a == NULL) {
        return;
    }

    CHECK_RC(apply(a, "job-1", "agent-9", "pending", NULL, NULL,
                   "{\"queue_position\":3}"), PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-1"), "pending");
    CHECK_STR(col(db, "service_name", "job-1"), "phantombuster");
    CHECK_STR(col(db, "agent_id", "job-1"), "agent-9");
    CHECK(col(db, "created_at", "job-1") != NULL);

    CHECK_RC(apply(a, "job-1", NULL, "phantom_launched", "c1", NULL,
                   "{\"attempts\":1,\"phantom_container_id\":\"c1\"}"),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-1"), "phantom_launched");
    CHECK_STR(col(db, "phantom_container_id", "job-1"), "c1");

    CHECK_RC(apply(a, "job-1", NULL, "webhook_received", NULL, PAYLOAD_OK,
                   "{\"webhook_received_at\":\"2024-05-01T10:00:00Z\"}"),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-1"), "webhook_received");

    CHECK_RC(apply(a, "job-1", NULL, "success", NULL, NULL,
                   "{\"next_job_queued\":true}"), PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-1"), "success");

    /* Everything on one row, nothing lost on the way. */
    CHECK(count_rows(db) == 1);
    CHECK_STR(col(db, "agent_id", "job-1"), "agent-9");
    CHECK_STR(col(db, "phantom_container_id", "job-1"), "c1");
    CHECK_STR(col(db, "webhook_payload->>'exitMessage'", "job-1"),
              "finished");
    CHECK_STR(col(db, "webhook_payload->>'exitCode'", "job-1"), "0");
    CHECK_STR(col(db, "metadata->>'queue_position'", "job-1"), "3");
    CHECK_STR(col(db, "metadata->>'attempts'", "job-1"), "1");
    CHECK_STR(col(db, "metadata->>'phantom_container_id'", "job-1"), "c1");
    CHECK_STR(col(db, "metadata->>'webhook_received_at'", "job-1"),
              "2024-05-01T10:00:00Z");
    CHECK_STR(col(db, "metadata->'next_job_queued'", "job-1"), "true");

    /* Stored as JSON the database understands, not as a string. */
    CHECK_STR(col(db, db->pg ? "jsonb_typeof(webhook_payload)"
                             : "json_type(webhook_payload)", "job-1"),
              "object");
    CHECK_STR(col(db, db->pg ? "jsonb_typeof(metadata)"
                             : "json_type(metadata)", "job-1"),
              "object");
    if (db->pg) {
        CHECK_STR(col(db, "pg_typeof(webhook_payload)::text", "job-1"),
                  "jsonb");
    }

    pb_audit_close(a);
}

static void
test_replay(const db_t *db)
{
    pb_audit_t  *a = open_migrated(db);
    char        *before, *before_meta;
    int          i;

    if (a == NULL) {
        return;
    }

    /* A worker that died after writing and before acknowledging in Redis
     * replays its updates: no new rows, no change at all. */
    for (i = 0; i < 2; i++) {
        CHECK_RC(apply(a, "job-r", "ag", "pending", NULL, NULL,
                       "{\"queue_position\":1}"), PB_AUDIT_OK);
        CHECK_RC(apply(a, "job-r", NULL, "phantom_launched", "cr", NULL,
                       "{\"attempts\":1}"), PB_AUDIT_OK);
        CHECK_RC(apply(a, "job-r", NULL, "webhook_received", "cr",
                       PAYLOAD_OK, "{\"webhook_received_at\":\"t\"}"),
                 PB_AUDIT_OK);
    }
    CHECK(count_rows(db) == 1);
    CHECK_STR(col(db, "status", "job-r"), "webhook_received");

    before = col(db, "CAST(updated_at AS text)", "job-r");
    before_meta = col(db, "CAST(metadata AS text)", "job-r");
    {
        struct timespec  ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }

    CHECK_RC(apply(a, "job-r", NULL, "webhook_received", "cr", PAYLOAD_OK,
                   "{\"webhook_received_at\":\"t\"}"), PB_AUDIT_OK);
    CHECK_RC(apply(a, "job-r", NULL, "phantom_launched", "cr", NULL,
                   "{\"attempts\":1}"), PB_AUDIT_OK);
    CHECK_STR(col(db, "CAST(updated_at AS text)", "job-r"), before);
    CHECK_STR(col(db, "CAST(metadata AS text)", "job-r"), before_meta);
    CHECK(count_rows(db) == 1);

    pb_audit_close(a);
}

static void
test_no_regression(const db_t *db)
{
    pb_audit_t  *a = open_migrated(db);

    if (a == NULL) {
        return;
    }

    CHECK_RC(apply(a, "job-n", "ag", "success", "cn", PAYLOAD_OK, NULL),
             PB_AUDIT_OK);

    /* Late or replayed earlier steps do not move it back... */
    CHECK_RC(apply(a, "job-n", NULL, "pending", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_RC(apply(a, "job-n", NULL, "phantom_launched", NULL, NULL,
                   "{\"attempts\":2}"), PB_AUDIT_OK);
    CHECK_RC(apply(a, "job-n", NULL, "webhook_received", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-n"), "success");
    /* ...but their other fields still land. */
    CHECK_STR(col(db, "metadata->>'attempts'", "job-n"), "2");

    /* Terminal is final: no terminal status replaces another. */
    CHECK_RC(apply(a, "job-n", NULL, "failed", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_RC(apply(a, "job-n", NULL, "timed_out", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_RC(apply(a, "job-n", NULL, "dead_lettered", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-n"), "success");

    /* A webhook that beats the launch response: the launch's later update
     * keeps webhook_received but adds its container id and metadata. */
    CHECK_RC(apply(a, "job-o", "ag", "pending", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_RC(apply(a, "job-o", NULL, "webhook_received", NULL, PAYLOAD_OK,
                   NULL), PB_AUDIT_OK);
    CHECK_RC(apply(a, "job-o", NULL, "phantom_launched", "co", NULL,
                   "{\"attempts\":1}"), PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-o"), "webhook_received");
    CHECK_STR(col(db, "phantom_container_id", "job-o"), "co");
    CHECK_STR(col(db, "metadata->>'attempts'", "job-o"), "1");
    CHECK_STR(col(db, "webhook_payload->>'exitMessage'", "job-o"),
              "finished");

    pb_audit_close(a);
}

static void
test_merge_and_nulls(const db_t *db)
{
    pb_audit_t  *a = open_migrated(db);

    if (a == NULL) {
        return;
    }

    CHECK_RC(apply(a, "job-m", "ag", "pending", NULL, NULL,
                   "{\"queue_position\":5,\"attempts\":0}"), PB_AUDIT_OK);
    CHECK_RC(apply(a, "job-m", NULL, "phantom_launched", "cm",
                   "{\"exitMessage\":\"first\"}",
                   "{\"attempts\":1,\"error\":\"HTTP 503\"}"), PB_AUDIT_OK);

    /* NULL container, payload and metadata erase nothing. */
    CHECK_RC(apply(a, "job-m", NULL, "phantom_launched", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "phantom_container_id", "job-m"), "cm");
    CHECK_STR(col(db, "webhook_payload->>'exitMessage'", "job-m"), "first");
    CHECK_STR(col(db, "agent_id", "job-m"), "ag");

    /* Merged key by key: new keys added, given keys replaced, others kept. */
    CHECK_STR(col(db, "metadata->>'queue_position'", "job-m"), "5");
    CHECK_STR(col(db, "metadata->>'attempts'", "job-m"), "1");
    CHECK_STR(col(db, "metadata->>'error'", "job-m"), "HTTP 503");

    /* A given payload replaces the old one. */
    CHECK_RC(apply(a, "job-m", NULL, "webhook_received", NULL, PAYLOAD_OK,
                   "{}"), PB_AUDIT_OK);
    CHECK_STR(col(db, "webhook_payload->>'exitMessage'", "job-m"),
              "finished");
    CHECK_STR(col(db, "metadata->>'queue_position'", "job-m"), "5");

    pb_audit_close(a);
}

static void
test_bad_input(const db_t *db)
{
    pb_audit_t  *a = open_migrated(db);

    if (a == NULL) {
        return;
    }

    CHECK_RC(apply(a, "job-b", NULL, "running", NULL, NULL, NULL),
             PB_AUDIT_FAIL);
    CHECK(strstr(err, "unknown status") != NULL);
    CHECK_RC(apply(a, "job-b", NULL, NULL, NULL, NULL, NULL), PB_AUDIT_FAIL);
    CHECK_RC(apply(a, NULL, NULL, "pending", NULL, NULL, NULL),
             PB_AUDIT_FAIL);
    CHECK(strstr(err, "job_id") != NULL);
    CHECK_RC(apply(a, "", NULL, "pending", NULL, NULL, NULL), PB_AUDIT_FAIL);
    CHECK_RC(apply(a, "job-b", NULL, "pending", NULL, NULL, "[1,2]"),
             PB_AUDIT_FAIL);
    CHECK_RC(apply(a, "job-b", NULL, "pending", NULL, NULL, "{bad"),
             PB_AUDIT_FAIL);
    CHECK_RC(apply(a, "job-b", NULL, "pending", NULL, "{not json", NULL),
             PB_AUDIT_FAIL);
    CHECK(strstr(err, "webhook_payload is not valid JSON") != NULL);
    CHECK_RC(apply(a, "job-b", NULL, "pending", NULL, "{\"a\":1} x", NULL),
             PB_AUDIT_FAIL);
    CHECK(count_rows(db) == 0);

    /* Values are bound, never spliced into SQL. */
    CHECK_RC(apply(a, "x'); DROP TABLE service_audit_logs; --", "a'b",
                   "pending", "c\"d", NULL, "{\"k\":\"'\"}"), PB_AUDIT_OK);
    CHECK_STR(col(db, "agent_id", "x'); DROP TABLE service_audit_logs; --"),
              "a'b");

    pb_audit_close(a);
}

static void
test_reset(const db_t *db)
{
    pb_audit_t  *a = open_migrated(db);

    if (a == NULL) {
        return;
    }

    CHECK_RC(apply(a, "job-d", "ag", "dead_lettered", NULL, NULL,
                   "{\"error\":\"HTTP 400\"}"), PB_AUDIT_OK);
    err[0] = '\0';
    CHECK_RC(pb_audit_reset(a, "job-d", "{\"retried\":1}", err, sizeof(err)),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-d"), "pending");
    CHECK_STR(col(db, "metadata->>'retried'", "job-d"), "1");
    CHECK_STR(col(db, "metadata->>'error'", "job-d"), "HTTP 400");

    /* Then forward again as usual. */
    CHECK_RC(apply(a, "job-d", NULL, "phantom_launched", "cd", NULL, NULL),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-d"), "phantom_launched");

    /* A replayed reset does not undo progress, nor touch a success. */
    CHECK_RC(pb_audit_reset(a, "job-d", NULL, err, sizeof(err)),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-d"), "phantom_launched");
    CHECK_RC(apply(a, "job-s", "ag", "success", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_RC(pb_audit_reset(a, "job-s", NULL, err, sizeof(err)),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-s"), "success");

    /* failed and timed_out can be retried too; an unknown job gets a row. */
    CHECK_RC(apply(a, "job-t", "ag", "timed_out", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_RC(pb_audit_reset(a, "job-t", NULL, err, sizeof(err)),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-t"), "pending");
    CHECK_RC(pb_audit_reset(a, "job-new", NULL, err, sizeof(err)),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-new"), "pending");
    CHECK_RC(pb_audit_reset(a, "job-x", "[]", err, sizeof(err)),
             PB_AUDIT_FAIL);

    pb_audit_close(a);
}

/* The table as the Rails app has it, with a row of its own. */
static void
test_rails_table(const db_t *db)
{
    pb_audit_t  *a;

    if (run_sql(db, db->pg
        ? "CREATE TABLE service_audit_logs (id bigserial PRIMARY KEY,"
          " action varchar, status varchar, metadata jsonb,"
          " created_at timestamp(6) NOT NULL,"
          " updated_at timestamp(6) NOT NULL)"
        : "CREATE TABLE service_audit_logs (id integer PRIMARY KEY"
          " AUTOINCREMENT NOT NULL, action varchar, status varchar,"
          " metadata json, created_at datetime(6) NOT NULL,"
          " updated_at datetime(6) NOT NULL)") != 0
        || run_sql(db, db->pg
        ? "INSERT INTO service_audit_logs (action, status, metadata,"
          " created_at, updated_at) VALUES ('sync', 'completed',"
          " '{\"k\":1}', now(), now()), ('sync', 'completed', NULL,"
          " now(), now())"
        : "INSERT INTO service_audit_logs (action, status, metadata,"
          " created_at, updated_at) VALUES ('sync', 'completed',"
          " '{\"k\":1}', '2024-01-01 00:00:00', '2024-01-01 00:00:00'),"
          " ('sync', 'completed', NULL, '2024-01-01 00:00:00',"
          " '2024-01-01 00:00:00')") != 0)
    {
        CHECK(!"rails table setup");
        return;
    }

    a = open_migrated(db);
    if (a == NULL) {
        return;
    }
    CHECK_RC(pb_audit_migrate(a, err, sizeof(err)), PB_AUDIT_OK);
    CHECK(has_column(db, "job_id"));
    CHECK(has_column(db, "service_name"));
    CHECK(has_column(db, "agent_id"));
    CHECK(has_column(db, "phantom_container_id"));
    CHECK(has_column(db, "webhook_payload"));
    CHECK(has_column(db, "action"));
    if (db->pg) {
        CHECK_STR(query(db, "SELECT data_type FROM information_schema.columns"
                  " WHERE table_name = 'service_audit_logs'"
                  " AND column_name = 'webhook_payload'", NULL), "jsonb");
    }

    CHECK_RC(apply(a, "job-rails", "ag", "pending", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_RC(apply(a, "job-rails", NULL, "success", "c9", PAYLOAD_OK,
                   "{\"attempts\":1}"), PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-rails"), "success");
    CHECK_STR(col(db, "webhook_payload->>'exitMessage'", "job-rails"),
              "finished");
    CHECK(count_rows(db) == 3);

    /* The Rails rows are untouched. */
    CHECK_STR(query(db, "SELECT count(*) FROM service_audit_logs"
                    " WHERE action = 'sync' AND status = 'completed'"
                    " AND job_id IS NULL", NULL), "2");
    CHECK_STR(query(db, "SELECT metadata->>'k' FROM service_audit_logs"
                    " WHERE action = 'sync' AND metadata IS NOT NULL", NULL),
              "1");

    pb_audit_close(a);
}

/* scripts/migrate.sh must produce a schema the library is happy with. */
static void
test_migrate_sh(const db_t *db)
{
    char         cmd[1200];
    const char  *sh = getenv("PB_MIGRATE_SH");
    pb_audit_t  *a;
    int          i;

    if (sh == NULL) {
        printf("  (skipped: PB_MIGRATE_SH not set)\n");
        return;
    }

    snprintf(cmd, sizeof(cmd), "%s '%s' >/dev/null", sh, db->url);
    for (i = 0; i < 2; i++) {
        CHECK(system(cmd) == 0);
    }
    CHECK(has_column(db, "job_id"));

    a = open_migrated(db);
    if (a == NULL) {
        return;
    }
    CHECK_RC(apply(a, "job-sh", "ag", "pending", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_STR(col(db, "status", "job-sh"), "pending");
    pb_audit_close(a);

    CHECK(system(cmd) == 0);
}

/* ---- backend-specific tests ---- */

static void
test_open_errors(void)
{
    pb_audit_t  *a;
    char         url[600];

    err[0] = '\0';
    CHECK(pb_audit_open(NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "empty") != NULL);
    CHECK(pb_audit_open("", err, sizeof(err)) == NULL);

    err[0] = '\0';
    CHECK(pb_audit_open("mysql://u:pw@h/db", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "unsupported") != NULL);
    CHECK(strstr(err, "pw") == NULL);

    err[0] = '\0';
    CHECK(pb_audit_open("sqlite:", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "no path") != NULL);

    err[0] = '\0';
    CHECK(pb_audit_open("sqlite:/nonexistent-dir/x/audit.db", err,
                        sizeof(err)) == NULL);
    CHECK(strstr(err, "cannot open") != NULL);

    /* A file that is not a database. */
    snprintf(url, sizeof(url), "%s/not-a-db", tmpdir);
    {
        FILE  *f = fopen(url, "w");
        if (f != NULL) {
            fputs("this is not an SQLite database, not at all........\n", f);
            fclose(f);
        }
    }
    snprintf(url, sizeof(url), "sqlite:%s/not-a-db", tmpdir);
    err[0] = '\0';
    a = pb_audit_open(url, err, sizeof(err));
    CHECK(a == NULL);
    CHECK(strstr(err, "cannot open") != NULL);
    pb_audit_close(a);

    err[0] = '\0';
    CHECK(pb_audit_open("postgresql://user:s3cret@[::1", err, sizeof(err))
          == NULL);
    CHECK(strstr(err, "bad PostgreSQL URL") != NULL);
    CHECK(strstr(err, "s3cret") == NULL);

    err[0] = '\0';
    CHECK(pb_audit_open("postgres://u@h/db?nosuchoption=1", err, sizeof(err))
          == NULL);
    CHECK(strstr(err, "nosuchoption") != NULL);

    CHECK_RC(pb_audit_migrate(NULL, err, sizeof(err)), PB_AUDIT_FAIL);
    pb_audit_close(NULL);
}

static void
test_sqlite_locking(void)
{
    db_t           db;
    pb_audit_t    *a;
    sqlite3       *other = NULL;
    sqlite3_stmt  *st = NULL;
    char          *mode;

    sqlite_db(&db, "locking");
    a = open_migrated(&db);
    if (a == NULL) {
        return;
    }

    mode = query(&db, "PRAGMA journal_mode", NULL);
    CHECK_STR(mode, "wal");

    CHECK(sqlite3_open(db.path, &other) == SQLITE_OK);
    CHECK_RC(apply(a, "job-l", "ag", "pending", NULL, NULL, NULL),
             PB_AUDIT_OK);

    /* A reader in the middle of a transaction does not block the worker,
     * and keeps its own snapshot (pbctl status never sees half a write). */
    CHECK(sqlite3_exec(other, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(other,
          "SELECT status FROM service_audit_logs WHERE job_id = 'job-l'",
          -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    sqlite3_reset(st);
    CHECK_RC(apply(a, "job-l", NULL, "phantom_launched", "cl", NULL, NULL),
             PB_AUDIT_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK(strcmp((const char *) sqlite3_column_text(st, 0), "pending") == 0);
    sqlite3_finalize(st);
    CHECK(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_STR(col(&db, "status", "job-l"), "phantom_launched");

    /* A writer that holds the lock past the busy timeout: RETRY, and the
     * same update goes through once the lock is gone. */
    CHECK(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL)
          == SQLITE_OK);
    CHECK_RC(apply(a, "job-l", NULL, "webhook_received", NULL, PAYLOAD_OK,
                   NULL), PB_AUDIT_RETRY);
    CHECK(strstr(err, "locked") != NULL);
    CHECK_RC(pb_audit_migrate(a, err, sizeof(err)), PB_AUDIT_RETRY);
    CHECK(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_RC(apply(a, "job-l", NULL, "webhook_received", NULL, PAYLOAD_OK,
                   NULL), PB_AUDIT_OK);
    CHECK_STR(col(&db, "status", "job-l"), "webhook_received");

    /* The same for a batch: RETRY with nothing of it written, then all. */
    {
        batch_t  b;
        size_t   bad;

        make_batch(&b, life, NLIFE, "lk-");
        CHECK(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL)
              == SQLITE_OK);
        CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_RETRY);
        CHECK(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
        CHECK(count_rows(&db) == 1);
        CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_OK);
        CHECK(count_rows(&db) == 4);
    }
    sqlite3_close(other);

    /* An unmigrated database says what to do. */
    pb_audit_close(a);
    sqlite_db(&db, "unmigrated");
    a = pb_audit_open(db.url, err, sizeof(err));
    CHECK(a != NULL);
    CHECK_RC(apply(a, "j", NULL, "pending", NULL, NULL, NULL),
             PB_AUDIT_FAIL);
    CHECK(strstr(err, "migrations") != NULL);
    pb_audit_close(a);

    /* sqlite:///abs/path is the same file as sqlite:/abs/path. */
    sqlite_db(&db, "slashes");
    snprintf(db.url, sizeof(db.url), "sqlite://%s", db.path);
    a = open_migrated(&db);
    CHECK(access(db.path, F_OK) == 0);
    pb_audit_close(a);
}

static int
pg_ctl(const char *action)
{
    char         cmd[600];
    const char  *sh = getenv("PB_POSTGRES_SH");

    snprintf(cmd, sizeof(cmd), "%s %s %s >/dev/null",
             sh ? sh : "scripts/postgres.sh", action, pg_port);
    return system(cmd);
}

static void
test_pg_outage(void)
{
    db_t         db;
    pb_audit_t  *a, *late;

    if (pg_db(&db, "pb_audit_outage") != 0) {
        CHECK(!"create outage database");
        return;
    }
    a = open_migrated(&db);
    if (a == NULL) {
        return;
    }
    CHECK_RC(apply(a, "job-o", "ag", "pending", NULL, NULL, NULL),
             PB_AUDIT_OK);

    CHECK(pg_ctl("stop") == 0);

    /* Down: RETRY, on the old handle and on one opened during the outage
     * (the worker may start while the database is down). */
    CHECK_RC(apply(a, "job-o", NULL, "phantom_launched", "co", NULL, NULL),
             PB_AUDIT_RETRY);
    CHECK(strstr(err, "postgres") != NULL);
    CHECK_RC(apply(a, "job-o", NULL, "phantom_launched", "co", NULL, NULL),
             PB_AUDIT_RETRY);
    err[0] = '\0';
    late = pb_audit_open(db.url, err, sizeof(err));
    CHECK(late != NULL);
    if (late != NULL) {
        CHECK_RC(pb_audit_migrate(late, err, sizeof(err)), PB_AUDIT_RETRY);
    }

    {
        batch_t  b;
        size_t   bad;

        make_batch(&b, life, NLIFE, "down-");
        CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_RETRY);
    }

    CHECK(pg_ctl("start") == 0);

    /* Back: the very next call reconnects and succeeds. */
    CHECK_RC(apply(a, "job-o", NULL, "phantom_launched", "co", NULL, NULL),
             PB_AUDIT_OK);
    CHECK_STR(col(&db, "status", "job-o"), "phantom_launched");
    if (late != NULL) {
        CHECK_RC(pb_audit_migrate(late, err, sizeof(err)), PB_AUDIT_OK);
        CHECK_RC(apply(late, "job-o", NULL, "success", NULL, PAYLOAD_OK,
                       NULL), PB_AUDIT_OK);
        CHECK_STR(col(&db, "status", "job-o"), "success");
    }

    /* A restart while idle (connection silently dead): also fine, and the
     * session is UTC again after the reconnect. */
    CHECK(pg_ctl("restart") == 0);
    CHECK_RC(apply(a, "job-o2", "ag", "pending", NULL, NULL, NULL),
             PB_AUDIT_OK);
    CHECK_STR(col(&db, "status", "job-o2"), "pending");
    CHECK_STR(col(&db, "CAST(abs(extract(epoch FROM (created_at -"
                  " (now() AT TIME ZONE 'UTC')))) < 60 AS text)", "job-o2"),
              "true");

    pb_audit_close(late);
    pb_audit_close(a);
}

/*
 * The connection dies in the middle of a batch (here: the server ends our
 * session from a trigger, as a restart or a failover would): RETRY, none
 * of the batch is in, and the next call reconnects and writes it all.
 */
static void
test_pg_batch_killed(const db_t *db)
{
    pb_audit_t  *a = open_migrated(db);
    batch_t      b;
    size_t       bad;

    if (a == NULL) {
        return;
    }

    CHECK(run_sql(db, "CREATE FUNCTION boom() RETURNS trigger"
                  " LANGUAGE plpgsql AS $$ BEGIN"
                  " IF NEW.job_id = 'c' THEN"
                  " PERFORM pg_terminate_backend(pg_backend_pid());"
                  " PERFORM pg_sleep(5); END IF; RETURN NEW; END $$") == 0);
    CHECK(run_sql(db, "CREATE TRIGGER boom BEFORE INSERT ON"
                  " service_audit_logs FOR EACH ROW EXECUTE FUNCTION boom()")
          == 0);

    /* warm: the statements are prepared on the connection that dies */
    make_batch(&b, life, 2, "");
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_OK);

    {
        static const op_spec_t  spec[] = {
            { "a", "ag", "pending", NULL, NULL, NULL, 0 },
            { "b", "ag", "pending", NULL, NULL, NULL, 0 },
            { "c", "ag", "pending", NULL, NULL, NULL, 0 },
            { "d", "ag", "pending", NULL, NULL, NULL, 0 },
        };

        make_batch(&b, spec, 4, "");
    }
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_RETRY);
    CHECK(count_rows(db) == 1);

    CHECK(run_sql(db, "DROP TRIGGER boom ON service_audit_logs") == 0);
    CHECK_RC(apply_batch(a, &b, b.n, &bad), PB_AUDIT_OK);
    CHECK(count_rows(db) == 5);
    CHECK_STR(col(db, "status", "c"), "pending");

    pb_audit_close(a);
}

/*
 * A long Rails transaction holding the table: the migration gives up after
 * its lock_timeout with RETRY instead of queueing everyone behind it.
 */
static void
test_pg_lock_timeout(void)
{
    db_t         db;
    pb_audit_t  *a;
    PGconn      *rails;
    PGresult    *res;

    if (pg_db(&db, "pb_audit_locked") != 0) {
        CHECK(!"create lock database");
        return;
    }
    a = open_migrated(&db);
    if (a == NULL) {
        return;
    }

    rails = PQconnectdb(db.path);
    res = PQexec(rails, "BEGIN; LOCK TABLE service_audit_logs"
                 " IN ACCESS SHARE MODE");
    CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
    PQclear(res);

    CHECK_RC(pb_audit_migrate(a, err, sizeof(err)), PB_AUDIT_RETRY);
    CHECK(strstr(err, "lock timeout") != NULL);
    /* Plain upserts do not conflict with readers. */
    CHECK_RC(apply(a, "job-k", "ag", "pending", NULL, NULL, NULL),
             PB_AUDIT_OK);

    res = PQexec(rails, "COMMIT");
    PQclear(res);
    PQfinish(rails);

    CHECK_RC(pb_audit_migrate(a, err, sizeof(err)), PB_AUDIT_OK);
    pb_audit_close(a);
}

/* Several workers start together and migrate the same fresh database. */
static void
test_pg_concurrent_migrate(void)
{
    db_t   db;
    pid_t  pids[4];
    int    i, status, ok = 1;

    if (pg_db(&db, "pb_audit_race") != 0) {
        CHECK(!"create race database");
        return;
    }

    for (i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            char         e[512];
            pb_audit_t  *a = pb_audit_open(db.url, e, sizeof(e));
            int          rc = a ? pb_audit_migrate(a, e, sizeof(e)) : -9;

            if (rc != PB_AUDIT_OK) {
                printf("  child: %s\n", e);
            }
            pb_audit_close(a);
            _exit(rc == PB_AUDIT_OK ? 0 : 1);
        }
    }

    for (i = 0; i < 4; i++) {
        if (pids[i] < 0 || waitpid(pids[i], &status, 0) < 0
            || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        {
            ok = 0;
        }
    }
    CHECK(ok);
    CHECK(has_column(&db, "job_id"));
}

typedef void (*test_fn)(const db_t *db);

/* 1 when SQLite's json() takes text (what the payload went through). */
static int
sqlite_json_ok(sqlite3 *db, const char *text)
{
    sqlite3_stmt  *st;
    int            ok;

    if (sqlite3_prepare_v2(db, "SELECT json(?1)", -1, &st, NULL)
        != SQLITE_OK)
    {
        return -1;
    }
    sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    ok = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);

    return ok;
}

/*
 * The payload check that replaced SQLite's json() (pb_audit_json_valid)
 * takes exactly what json() takes: cases at every rule of the grammar,
 * nesting at the limit and beyond, then thousands of random mutations of
 * a webhook payload, each compared with SQLite's verdict.  And a payload
 * is now stored as it came.
 */
static void
test_json_valid(void)
{
    static const char  *cases[] = {
        "{}", "[]", " {} ", "\t[ 1 , 2 ]\r\n", "0", "-0", "12", "-1.5e+3",
        "1E5", "1e-0", "\"\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
        "\"\\u00e9\\uD83D\\ude00\"", "\"\\ud800\"", "\"\\u0000\"",
        "\"\xc3\xa9\xff\x7f\"", "true", "false", "null",
        "{\"a\":{\"b\":[true,false,null,{}]},\"c\":\"d\"}",
        "", " ", "01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "NaN",
        "Infinity", "tru", "nulll", "falsey", "[1,]", "[,1]", "{\"a\":1,}",
        "{,}", "{\"a\"}", "{\"a\":}", "{\"a\" 1}", "{\"a\":1 \"b\":2}",
        "{'a':1}", "{a:1}", "[1 2]", "[] []", "\"a", "\"\\q\"",
        "\"\\u00g0\"", "\"\\u00\"", "\"a\tb\"", "\"a\nb\"", "\"\x01\"",
        "[\"a\":1]", "{\"a\":1]", "[1}", "]", "}", "{", "[", "\f{}",
        "\v1", "[1]\x00", "/* */1", "1 // c",
    };
    static const char   payload[] = "{\"agentId\":4717388215573025,"
        "\"containerId\":\"7100000000000001\",\"exitCode\":0,"
        "\"exitMessage\":\"finished\",\"runDuration\":127406,\"x\":"
        "[1.5e-3,-0,true,false,null,{\"k\":\"\\u00e9\\n\\\"\"}],"
        "\"resultObject\":\"[{\\\"url\\\":\\\"https:\\\\/\\\\/x\\\"}]\"}";
    static const char   alphabet[] = "{}[]\",:\\ -+.0123456789eEtrufalsn\t"
                                     "\nxu/\x01";
    char                buf[sizeof(payload) + 8], *deep;
    sqlite3            *db;
    size_t              i, n, k, agree = 0, valid = 0, runs = 20000;
    unsigned            seed = 12345;
    pb_audit_t         *a;
    db_t                file;

    if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
        CHECK(!"sqlite memory database");
        return;
    }

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (pb_audit_json_valid(cases[i]) != sqlite_json_ok(db, cases[i])) {
            printf("  json case %zu differs: %s\n", i, cases[i]);
            CHECK(!"json case as SQLite");
        }
    }
    CHECK(pb_audit_json_valid(payload) == 1);

    /* nesting: as deep as json() takes, and one more */
    deep = malloc(2 * PB_AUDIT_JSON_DEPTH + 3);
    for (k = PB_AUDIT_JSON_DEPTH - 1; deep && k <= PB_AUDIT_JSON_DEPTH + 1;
         k++)
    {
        memset(deep, '[', k);
        memset(deep + k, ']', k);
        deep[2 * k] = '\0';
        CHECK(pb_audit_json_valid(deep) == sqlite_json_ok(db, deep));
        CHECK(pb_audit_json_valid(deep) == (k <= PB_AUDIT_JSON_DEPTH));
    }
    free(deep);

    /* random mutations of the payload: replace, insert or delete bytes */
    for (i = 0; i < runs; i++) {
        memcpy(buf, payload, sizeof(payload));
        n = sizeof(payload) - 1;
        for (k = 1 + i % 3; k > 0; k--) {
            size_t  at;

            seed = seed * 1103515245u + 12345u;
            at = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            switch ((seed >> 8) % 3) {
            case 0:
                buf[at] = alphabet[(seed >> 12) % (sizeof(alphabet) - 1)];
                break;
            case 1:
                memmove(buf + at + 1, buf + at, n - at + 1);
                buf[at] = alphabet[(seed >> 12) % (sizeof(alphabet) - 1)];
                n++;
                break;
            default:
                memmove(buf + at, buf + at + 1, n - at);
                n--;
            }
        }
        if (pb_audit_json_valid(buf) == sqlite_json_ok(db, buf)) {
            agree++;
            valid += pb_audit_json_valid(buf);
        } else {
            printf("  json mutation differs: %s\n", buf);
        }
    }
    CHECK(agree == runs);
    CHECK(valid > runs / 10 && valid < runs - runs / 10);
    sqlite3_close(db);

    /* stored as it came: spacing kept, readable as JSON */
    sqlite_db(&file, "pb_audit_json_valid");
    a = open_migrated(&file);
    if (a != NULL) {
        CHECK_RC(apply(a, "job-j", NULL, "webhook_received", NULL,
                       "{ \"exitMessage\" : \"finished\" }", NULL),
                 PB_AUDIT_OK);
        CHECK_STR(col(&file, "webhook_payload", "job-j"),
                  "{ \"exitMessage\" : \"finished\" }");
        CHECK_STR(col(&file, "webhook_payload->>'exitMessage'", "job-j"),
                  "finished");
        pb_audit_close(a);
    }
}

static void
run(const char *name, test_fn fn, const char *backend)
{
    db_t  db;
    char  dbname[64];
    int   f = failed;

    snprintf(dbname, sizeof(dbname), "pb_audit_%s", name);

    if (strcmp(backend, "sqlite") == 0) {
        sqlite_db(&db, dbname);
    } else if (pg_db(&db, dbname) != 0) {
        failed++;
        printf("not ok - %s %s (no database)\n", backend, name);
        return;
    }

    fn(&db);
    printf("%s - %s %s\n", failed == f ? "ok" : "not ok", backend, name);
}

static void
run_plain(const char *name, void (*fn)(void))
{
    int  f = failed;

    fn();
    printf("%s - %s\n", failed == f ? "ok" : "not ok", name);
}

int
main(void)
{
    static const struct {
        const char  *name;
        test_fn      fn;
    } common[] = {
        { "migrate_twice", test_migrate_twice },
        { "lifecycle", test_lifecycle },
        { "replay", test_replay },
        { "no_regression", test_no_regression },
        { "merge_and_nulls", test_merge_and_nulls },
        { "bad_input", test_bad_input },
        { "reset", test_reset },
        { "rails_table", test_rails_table },
        { "migrate_sh", test_migrate_sh },
        { "batch", test_batch },
        { "batch_bad_row", test_batch_bad_row },
        { "batch_rows", test_batch_rows },
        { "batch_replay", test_batch_replay },
    };
    const char  *skip_pg;
    size_t       i;

    pg_port = getenv("PB_TEST_PG_PORT") ? getenv("PB_TEST_PG_PORT") : "5499";
    tmpdir = getenv("PB_TEST_TMP") ? getenv("PB_TEST_TMP") : "/tmp";
    skip_pg = getenv("PB_TEST_SKIP_PG");

    /* Output order matters when a failure is read from a CI log. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    run_plain("open_errors", test_open_errors);

    for (i = 0; i < sizeof(common) / sizeof(common[0]); i++) {
        run(common[i].name, common[i].fn, "sqlite");
    }
    run_plain("sqlite_locking", test_sqlite_locking);
    run_plain("json_valid", test_json_valid);

    if (skip_pg && strcmp(skip_pg, "1") == 0) {
        printf("# PostgreSQL tests SKIPPED (PB_TEST_SKIP_PG=1)\n");

    } else {
        for (i = 0; i < sizeof(common) / sizeof(common[0]); i++) {
            run(common[i].name, common[i].fn, "postgresql");
        }
        run_plain("postgresql_concurrent_migrate",
                  test_pg_concurrent_migrate);
        run_plain("postgresql_lock_timeout", test_pg_lock_timeout);
        run_plain("postgresql_outage", test_pg_outage);
        run("batch_killed", test_pg_batch_killed, "postgresql");
    }

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
