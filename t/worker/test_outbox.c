/*
 * The audit outbox against a real Redis and the real SQLite backend: rows
 * wait in Redis while the database is unreachable, go out in order once it
 * is back, a replayed row writes nothing twice, and a row the database
 * rejects is moved aside instead of blocking the rest.  Batches: a batch
 * with bad rows still writes every good one in order; a batch written
 * again after a crash between its commit and its removal changes nothing;
 * a worker killed at random points loses and duplicates nothing; and, on
 * the test PostgreSQL cluster when it runs (scripts/postgres.sh, port
 * PB_TEST_PG_PORT or 5499), a connection that dies mid-batch loses
 * nothing.
 */

#include <sqlite3.h>
#include <time.h>
#include <unistd.h>
#include <libpq-fe.h>

#include "jobs.h"
#include "outbox.h"
#include "pb_keys.h"
#include "testkill.h"


static long long
db_int(const char *path, const char *sql)
{
    long long      n = -1;
    sqlite3       *db;
    sqlite3_stmt  *st;

    if (sqlite3_open(path, &db) == SQLITE_OK
        && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK)
    {
        if (sqlite3_step(st) == SQLITE_ROW) {
            n = sqlite3_column_int64(st, 0);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);

    return n;
}


/* The whole table as text, in job_id order (malloc'd, "" when empty). */
static char *
db_dump(const char *path)
{
    char          *out = NULL;
    sqlite3       *db;
    sqlite3_stmt  *st;

    if (sqlite3_open(path, &db) == SQLITE_OK
        && sqlite3_prepare_v2(db, "SELECT group_concat(r, char(10)) FROM"
               " (SELECT quote(job_id) || quote(status) || quote(agent_id)"
               " || quote(phantom_container_id) || quote(webhook_payload)"
               " || quote(metadata) || quote(created_at) || quote(updated_at)"
               " AS r FROM service_audit_logs ORDER BY job_id)",
               -1, &st, NULL) == SQLITE_OK)
    {
        if (sqlite3_step(st) == SQLITE_ROW) {
            out = strdup(sqlite3_column_type(st, 0) == SQLITE_NULL ? ""
                         : (const char *) sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);

    return out;
}


static void
push(pb_ctx_t *ctx, const char *row)
{
    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s %s", PB_KEY_OUTBOX,
                                 row));
}


/* A pending row of its own job; every call a new job. */
static void
push_job(pb_ctx_t *ctx, const char *prefix, int i)
{
    char  row[256];

    snprintf(row, sizeof(row), "{\"job_id\":\"%s%d\",\"agent_id\":\"1\","
             "\"status\":\"pending\",\"metadata\":{\"queue_position\":%d}}",
             prefix, i, i);
    push(ctx, row);
}


static void
pause_ms(long ms)
{
    struct timespec  ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}


static void
test_basics(pb_ctx_t *ctx, const char *path, const char *url)
{
    int                   n;
    pb_outbox_t          *down, *up;
    pb_enqueue_result_t   res;

    pb_job_enqueue(ctx, "o1", "1", NULL, 0, "t", &res);
    pb_job_enqueue(ctx, "o2", "1", NULL, 0, "t", &res);
    pb_job_enqueue(ctx, "o3", "1", NULL, 0, "t", &res);

    down = pb_outbox_new("sqlite:/nonexistent-dir/audit.db");
    CHECK(pb_outbox_flush(down, ctx, 100) == 0, "database away: nothing "
          "written, no error for the caller");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 3,
          "rows wait in Redis");
    pb_outbox_free(down);

    up = pb_outbox_new(url);
    n = pb_outbox_flush(up, ctx, 100);
    CHECK(n == 3, "database back: every row written");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0, "outbox empty");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs "
                 "WHERE status = 'pending'") == 3, "three pending rows");

    /* a worker died after the write, before the pop: the row comes again */
    push(ctx, "{\"job_id\":\"o1\",\"agent_id\":\"1\",\"status\":"
         "\"pending\",\"metadata\":{\"queue_position\":1}}");
    CHECK(pb_outbox_flush(up, ctx, 100) == 1
          && db_int(path, "SELECT count(*) FROM service_audit_logs") == 3,
          "replayed row written twice changes nothing");

    /* rejected rows are moved aside, the rest still flows */
    push(ctx, "{\"job_id\":\"o2\",\"status\":\"bogus\"}");
    push(ctx, "{\"job_id\":\"o2\",\"status\":\"phantom_launched\","
         "\"container_id\":\"55\",\"metadata\":{}}");
    CHECK(pb_outbox_flush(up, ctx, 100) == 1, "one good row written");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX_FAILED) == 1
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0,
          "the rejected row is kept aside, not lost");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs WHERE "
                 "job_id = 'o2' AND status = 'phantom_launched' AND "
                 "phantom_container_id = '55'") == 1, "in order after it");

    pb_outbox_free(up);
}


/*
 * Bad rows of every kind inside one batch: not JSON (never reaches the
 * database), refused by the checks, refused by the database in the middle
 * of the transaction.  Each goes aside, every other row is written, in
 * order (a job's later row after its earlier one).
 */
static void
test_bad_rows(pb_ctx_t *ctx, const char *path, const char *url)
{
    pb_outbox_t  *ob = pb_outbox_new(url);
    int           i;

    test_flush(ctx);
    for (i = 0; i < 30; i++) {
        if (i == 7) {
            push(ctx, "not a row");
        } else if (i == 12) {
            push(ctx, "{\"job_id\":\"b12\",\"status\":\"running\"}");
        } else if (i == 20) {
            push(ctx, "{\"job_id\":\"b3\",\"status\":\"webhook_received\","
                 "\"webhook_payload\":\"{not json\"}");
        } else if (i == 25) {
            push(ctx, "{\"job_id\":\"b3\",\"status\":\"phantom_launched\","
                 "\"container_id\":\"c3\"}");
        } else {
            push_job(ctx, "b", i);
        }
    }

    CHECK(pb_outbox_flush(ob, ctx, 1000) == 27, "every good row written");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0, "outbox empty");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX_FAILED) == 3,
          "the three bad rows kept aside");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs"
                 " WHERE job_id LIKE 'b%'") == 26, "26 jobs");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs WHERE"
                 " job_id = 'b3' AND status = 'phantom_launched'"
                 " AND phantom_container_id = 'c3'") == 1,
          "a job's rows in order around the bad ones");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs"
                 " WHERE job_id = 'b29'") == 1, "the rows after them too");

    {
        json_t  *first = test_json(ctx, "LINDEX %s -1", PB_KEY_OUTBOX_FAILED);

        CHECK(first == NULL, "failed list oldest first: the non-JSON row");
        json_decref(first);
    }

    /* more rows than one batch, and than max: max is honoured */
    for (i = 0; i < 1200; i++) {
        push_job(ctx, "m", i);
    }
    CHECK(pb_outbox_flush(ob, ctx, 1000) == 1000, "max rows per flush");
    CHECK(pb_outbox_flush(ob, ctx, 1000) == 200, "then the rest");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs"
                 " WHERE job_id LIKE 'm%'") == 1200, "all of them");
    CHECK(strcmp(test_hget(ctx, PB_KEY_METRICS, "audit_written"), "1227")
          == 0, "counted: every row written so far");

    pb_outbox_free(ob);
}


/* A text column of the job's row, as SQLite returns it ("" for none). */
static char *
db_text(const char *path, const char *expr, const char *job)
{
    static char    buf[512];
    sqlite3       *db;
    sqlite3_stmt  *st;
    char           sql[256];

    buf[0] = '\0';
    snprintf(sql, sizeof(sql), "SELECT %s FROM service_audit_logs"
             " WHERE job_id = ?1", expr);
    if (sqlite3_open(path, &db) == SQLITE_OK
        && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK)
    {
        sqlite3_bind_text(st, 1, job, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW
            && sqlite3_column_type(st, 0) != SQLITE_NULL)
        {
            snprintf(buf, sizeof(buf), "%s", sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);

    return buf;
}


/*
 * Rows are read without a JSON library: every escape cjson can write,
 * values of the wrong type, spacing, nesting in metadata; and what is not
 * a well-formed row goes aside rather than half read.
 */
static void
test_row_formats(pb_ctx_t *ctx, const char *path, const char *url)
{
    static const char  *good[] = {
        "{\"job_id\":\"u1\",\"agent_id\":\"a\\\"b\\\\c\\/d\",\"status\":"
        "\"pending\",\"metadata\":{\"k\":\"\xc3\xa9\",\"n\":-1.5e2,\"t\":true,"
        "\"z\":null,\"deep\":{\"x\":[1,{\"y\":\"}]\\\"\"}]}}}",
        "{\"job_id\":\"u2\",\"status\":\"webhook_received\","
        "\"webhook_payload\":"
        "\"{\\\"a\\\":\\\"\\\\u00e9\\\\ud83d\\\\ude00\\\"}\","
        "\"container_id\":null,\"agent_id\":5,\"metadata\":[1]}",
        " {\n \"job_id\" : \"u3\\u00e9\\ud83d\\ude00\" ,\t\"status\" :"
        " \"pending\", \"extra\": {\"a\": [true, false, null]} } ",
        "{\"job_id\":\"u4\",\"status\":\"dead_lettered\"}",
        "{\"op\":\"reset\",\"job_id\":\"u4\",\"metadata\":{\"r\":1}}",
        "{\"job_id\":\"u5\",\"job_id\":\"u6\",\"status\":\"pending\","
        "\"metadata\":{}}",
        /* the payload as its JSON value (webhooks.c), as deep as a payload
         * may nest (PB_PAYLOAD_MAX_DEPTH, 32) */
        "{\"job_id\":\"u7\",\"status\":\"webhook_received\","
        "\"webhook_payload\":{\"a\" : [1,{\"b\":\"c\\\"}]\\u00e9\"}],"
        "\"d\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0"
        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},"
        "\"metadata\":{}}",
        "{\"job_id\":\"u8\",\"status\":\"webhook_received\","
        "\"webhook_payload\":[null],\"webhook_payload\":null}",
    };
    static const char  *bad[] = {
        "{\"job_id\":\"x1\",\"status\":\"pending\"",
        "{\"job_id\":\"x2\",\"status\":\"pending\"}x",
        "{\"job_id\":\"x3\\u0000\",\"status\":\"pending\"}",
        "{\"job_id\":\"x4\",\"status\":\"pending\",\"metadata\":"
        "{\"a\":\"\\ud800\"}}",
        "{\"job_id\":\"x5\n\",\"status\":\"pending\"}",
        "{\"job_id\":\"x6\",\"status\":\"pending\",\"metadata\":{\"a\":}}",
        "{\"job_id\":\"x7\",\"status\":\"pending\",\"metadata\":{\"a\" 1}}",
        "{\"job_id\":\"x8\",\"status\":\"pending\\q\"}",
        "[\"job_id\"]",
        "",
        /* a payload value the scan steps over but that is not JSON */
        "{\"job_id\":\"x9\",\"status\":\"webhook_received\","
        "\"webhook_payload\":{\"a\":tru}}",
    };
    pb_outbox_t  *ob = pb_outbox_new(url);
    size_t        i;

    test_flush(ctx);
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        push(ctx, good[i]);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        push(ctx, bad[i]);
    }

    CHECK(pb_outbox_flush(ob, ctx, 1000) == 8, "the eight rows written");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX_FAILED) == 11,
          "the eleven others set aside, none half read");
    CHECK(strcmp(db_text(path, "agent_id", "u1"), "a\"b\\c/d") == 0,
          "escapes undone");
    CHECK(strcmp(db_text(path, "metadata->>'k'", "u1"), "\xc3\xa9") == 0
          && strcmp(db_text(path, "metadata->>'n'", "u1"), "-150.0") == 0
          && strcmp(db_text(path, "metadata->'t'", "u1"), "true") == 0
          && strcmp(db_text(path, "metadata->'deep'->'x'->1->>'y'", "u1"),
                    "}]\"") == 0,
          "metadata passed on whole, nesting and all");
    CHECK(strcmp(db_text(path, "webhook_payload->>'a'", "u2"),
                 "\xc3\xa9\xf0\x9f\x98\x80") == 0,
          "\\u escapes, surrogate pairs, as UTF-8");
    CHECK(strcmp(db_text(path, "COALESCE(agent_id, '-') ||"
                         " COALESCE(phantom_container_id, '-') ||"
                         " metadata", "u2"), "--{}") == 0,
          "a value of the wrong type is no value");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs WHERE"
                 " job_id = 'u3\xc3\xa9\xf0\x9f\x98\x80'") == 1,
          "spacing and unknown keys");
    CHECK(strcmp(db_text(path, "status || (metadata->>'r')", "u4"),
                 "pending1") == 0, "reset rows");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs WHERE"
                 " job_id = 'u6'") == 1, "a repeated key: the last one");
    CHECK(strncmp(db_text(path, "webhook_payload", "u7"),
                  "{\"a\" : [1,{\"b\":\"c\\\"}]\\u00e9\"}],\"d\":[[[", 28)
          == 0 && strcmp(db_text(path, "webhook_payload->'a'->1->>'b'", "u7"),
                         "c\"}]\xc3\xa9") == 0,
          "a payload value: stored as it stands in the row");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs WHERE"
                 " job_id = 'u8' AND webhook_payload IS NULL") == 1,
          "a null payload: none");

    pb_outbox_free(ob);
}


/*
 * A crash between the commit and the removal: the rows are still in
 * Redis and are written again.  The table does not change at all.
 */
static void
test_replay(pb_ctx_t *ctx, const char *path, const char *url)
{
    static const char  *rows[] = {
        "{\"job_id\":\"r1\",\"agent_id\":\"1\",\"status\":\"pending\","
        "\"metadata\":{\"queue_position\":1}}",
        "{\"job_id\":\"r1\",\"status\":\"phantom_launched\","
        "\"container_id\":\"c1\",\"metadata\":{\"attempts\":1}}",
        "{\"job_id\":\"r2\",\"agent_id\":\"1\",\"status\":\"pending\"}",
        "{\"job_id\":\"container:5\",\"agent_id\":\"1\",\"status\":"
        "\"webhook_received\",\"container_id\":\"5\",\"webhook_payload\":"
        "\"{\\\"exitCode\\\":0}\",\"metadata\":{\"error\":\"unknown\"}}",
    };
    pb_outbox_t  *ob = pb_outbox_new(url);
    char         *before = NULL, *after;
    size_t        i;
    int           round;

    test_flush(ctx);
    for (round = 0; round < 2; round++) {
        for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            push(ctx, rows[i]);
        }
        if (round == 0) {
            CHECK(pb_outbox_flush(ob, ctx, 1000) == 4, "batch written");
            before = db_dump(path);
            pause_ms(20);
        }
    }

    CHECK(pb_outbox_flush(ob, ctx, 1000) == 4, "the same batch again");
    after = db_dump(path);
    CHECK(before != NULL && after != NULL && strcmp(before, after) == 0,
          "replayed batch: the table is byte for byte the same");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0, "and it is gone");
    free(before);
    free(after);
    pb_outbox_free(ob);
}


static void
flush_all(pb_ctx_t *ctx, void *url)
{
    pb_outbox_t  *ob = pb_outbox_new(url);

    while (pb_outbox_flush(ob, ctx, 1000) > 0) {
        /* until killed or done */
    }
    pb_outbox_free(ob);
}

static long long
outbox_left(pb_ctx_t *ctx)
{
    return test_int(ctx, "LLEN %s", PB_KEY_OUTBOX);
}

/*
 * Workers killed at random moments (mid-read, mid-transaction, between
 * the commit and the removal) while flushing: in the end every row is in
 * the database once and nothing is left or set aside.  A row written
 * twice would show: these jobs have one row each, so a replay is a no-op
 * and updated_at stays created_at.
 */
static void
test_killed(pb_ctx_t *ctx, const char *path, char *url)
{
    int        i, kills;
    const int  jobs = 3000;

    test_flush(ctx);
    for (i = 0; i < jobs; i++) {
        push_job(ctx, "k", i);
    }

    kills = test_kill_loop(ctx, 60, 15, flush_all, url, outbox_left);
    flush_all(ctx, url);

    CHECK(kills > 0, "workers were killed while flushing");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX_FAILED) == 0,
          "nothing left in Redis, nothing set aside");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs"
                 " WHERE job_id LIKE 'k%'") == jobs, "every row, once");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs WHERE"
                 " job_id LIKE 'k%' AND updated_at <> created_at") == 0,
          "none changed after its first write");
}


/*
 * The flusher thread: rows written without the loop calling anything, the
 * loop's call a no-op meanwhile, a database that cannot be opened holds
 * nothing up, and it stops at once when told.
 */
static void
test_thread(pb_ctx_t *ctx, const char *path, const char *url)
{
    pb_outbox_t      *ob = pb_outbox_new(url), *down;
    int               i;
    struct timespec   t0, t1;

    test_flush(ctx);
    CHECK(pb_outbox_start(ob, &test_cfg) == 0, "thread started");
    for (i = 0; i < 300; i++) {
        push_job(ctx, "t", i);
    }
    for (i = 0; i < 100 && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) > 0; i++) {
        pause_ms(50);
    }
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0
          && db_int(path, "SELECT count(*) FROM service_audit_logs"
                    " WHERE job_id LIKE 't%'") == 300,
          "thread: every row written, nobody asked");

    push_job(ctx, "t", 300);
    CHECK(pb_outbox_flush(ob, ctx, 100) == 0, "the loop leaves it to it");
    CHECK(pb_outbox_stop(ob) == 0, "thread stopped");
    while (test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) > 0
           && pb_outbox_flush(ob, ctx, 100) > 0)
    {
        /* back to the loop: whatever the thread had not taken */
    }
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0
          && db_int(path, "SELECT count(*) FROM service_audit_logs"
                    " WHERE job_id LIKE 't%'") == 301, "then the loop again");
    pb_outbox_free(ob);

    /* a database that cannot be opened: rows wait, stop is prompt */
    down = pb_outbox_new("sqlite:/nonexistent-dir/audit.db");
    CHECK(pb_outbox_start(down, &test_cfg) == 0, "thread started (down)");
    push_job(ctx, "d", 0);
    pause_ms(300);
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 1, "the row waits");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pb_outbox_free(down);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(t1.tv_sec - t0.tv_sec < 2, "stopped at once, backing off or not");
}


/* ---- PostgreSQL: a connection that dies in the middle of a batch ---- */

static void
pg_quiet(void *arg, const char *message)
{
    (void) arg;
    (void) message;
}

static int
pg_run(const char *conninfo, const char *sql)
{
    PGconn    *conn = PQconnectdb(conninfo);
    PGresult  *res;
    int        ok;

    PQsetNoticeProcessor(conn, pg_quiet, NULL);
    res = PQexec(conn, sql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK
         || PQresultStatus(res) == PGRES_TUPLES_OK;

    PQclear(res);
    PQfinish(conn);

    return ok ? 0 : -1;
}

static long long
pg_int(const char *conninfo, const char *sql)
{
    PGconn     *conn = PQconnectdb(conninfo);
    PGresult   *res = PQexec(conn, sql);
    long long   n = -1;

    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    PQfinish(conn);

    return n;
}

static void
test_pg_mid_batch(pb_ctx_t *ctx)
{
    char          admin[128], conninfo[160], url[160];
    const char   *port = getenv("PB_TEST_PG_PORT");
    pb_outbox_t  *ob;
    int           i, n;

    port = port ? port : "5499";
    snprintf(admin, sizeof(admin), "host=127.0.0.1 port=%s user=postgres"
             " dbname=pb_test connect_timeout=3", port);
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%s"
             " user=postgres dbname=pb_outbox_test", port);
    snprintf(url, sizeof(url), "postgresql://postgres@127.0.0.1:%s/"
             "pb_outbox_test", port);

    if (pg_run(admin, "DROP DATABASE IF EXISTS pb_outbox_test WITH (FORCE)")
        != 0 || pg_run(admin, "CREATE DATABASE pb_outbox_test") != 0)
    {
        printf("# test_outbox: PostgreSQL on %s not running"
               " (scripts/postgres.sh start): mid-batch test SKIPPED\n", port);
        return;
    }

    test_flush(ctx);
    ob = pb_outbox_new(url);
    push_job(ctx, "p", 0);
    CHECK(pb_outbox_flush(ob, ctx, 1000) == 1, "postgres: migrated, written");

    /* the server ends our session when it reaches job "boom" */
    CHECK(pg_run(conninfo, "CREATE FUNCTION boom() RETURNS trigger"
                 " LANGUAGE plpgsql AS $$ BEGIN IF NEW.job_id = 'boom' THEN"
                 " PERFORM pg_terminate_backend(pg_backend_pid());"
                 " PERFORM pg_sleep(5); END IF; RETURN NEW; END $$") == 0
          && pg_run(conninfo, "CREATE TRIGGER boom BEFORE INSERT ON"
                    " service_audit_logs FOR EACH ROW EXECUTE FUNCTION"
                    " boom()") == 0, "postgres: trigger set");

    for (i = 1; i <= 9; i++) {
        if (i == 5) {
            push(ctx, "{\"job_id\":\"boom\",\"status\":\"pending\"}");
        } else {
            push_job(ctx, "p", i);
        }
    }

    CHECK(pb_outbox_flush(ob, ctx, 1000) == 0,
          "postgres: connection lost mid-batch: nothing written");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 9,
          "postgres: every row still in Redis");
    CHECK(pg_int(conninfo, "SELECT count(*) FROM service_audit_logs") == 1,
          "postgres: none of the batch committed");

    CHECK(pg_run(conninfo, "DROP TRIGGER boom ON service_audit_logs") == 0,
          "postgres: trigger gone");

    /* after the backoff, the same handle reconnects and writes them all */
    for (i = 0, n = 0; i < 150 && n == 0; i++) {
        pause_ms(100);
        n = pb_outbox_flush(ob, ctx, 1000);
    }
    CHECK(n == 9, "postgres: the batch written once back");
    CHECK(pg_int(conninfo, "SELECT count(*) FROM service_audit_logs") == 10,
          "postgres: every row");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX_FAILED) == 0,
          "postgres: nothing left, nothing set aside");

    pb_outbox_free(ob);
    pg_run(admin, "DROP DATABASE IF EXISTS pb_outbox_test WITH (FORCE)");
}


int
main(void)
{
    char       path[256], url[300];
    pb_ctx_t  *ctx = test_setup("test_outbox");

    test_flush(ctx);
    snprintf(path, sizeof(path), "/tmp/pb-test-outbox-%ld.db", (long) getpid());
    unlink(path);
    snprintf(url, sizeof(url), "sqlite:%s", path);

    test_basics(ctx, path, url);
    test_bad_rows(ctx, path, url);
    test_row_formats(ctx, path, url);
    test_replay(ctx, path, url);
    test_killed(ctx, path, url);
    test_thread(ctx, path, url);
    test_pg_mid_batch(ctx);

    unlink(path);

    return CHECK_DONE("test_outbox");
}
