/*
 * The audit outbox against a real Redis and the real SQLite backend: rows
 * wait in Redis while the database is unreachable, go out in order once it
 * is back, a replayed row writes nothing twice, and a row the database
 * rejects is moved aside instead of blocking the rest.
 */

#include <sqlite3.h>
#include <unistd.h>

#include "jobs.h"
#include "outbox.h"
#include "pb_keys.h"
#include "testlib.h"


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


int
main(void)
{
    char                  path[256], url[300];
    int                   n;
    pb_ctx_t             *ctx = test_setup("test_outbox");
    pb_outbox_t          *down, *up;
    pb_enqueue_result_t   res;
    redisReply           *r;

    test_flush(ctx);
    snprintf(path, sizeof(path), "/tmp/pb-test-outbox-%ld.db", (long) getpid());
    unlink(path);
    snprintf(url, sizeof(url), "sqlite:%s", path);

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
    r = pb_redis_cmd(ctx->redis, "LPUSH %s %s", PB_KEY_OUTBOX,
                     "{\"job_id\":\"o1\",\"agent_id\":\"1\",\"status\":"
                     "\"pending\",\"metadata\":{\"queue_position\":1}}");
    freeReplyObject(r);
    CHECK(pb_outbox_flush(up, ctx, 100) == 1
          && db_int(path, "SELECT count(*) FROM service_audit_logs") == 3,
          "replayed row written twice changes nothing");

    /* rejected rows are moved aside, the rest still flows */
    r = pb_redis_cmd(ctx->redis, "LPUSH %s %s %s", PB_KEY_OUTBOX,
                     "{\"job_id\":\"o2\",\"status\":\"bogus\"}",
                     "{\"job_id\":\"o2\",\"status\":\"phantom_launched\","
                     "\"container_id\":\"55\",\"metadata\":{}}");
    freeReplyObject(r);
    CHECK(pb_outbox_flush(up, ctx, 100) == 1, "one good row written");
    CHECK(test_int(ctx, "LLEN %s", PB_KEY_OUTBOX_FAILED) == 1
          && test_int(ctx, "LLEN %s", PB_KEY_OUTBOX) == 0,
          "the rejected row is kept aside, not lost");
    CHECK(db_int(path, "SELECT count(*) FROM service_audit_logs WHERE "
                 "job_id = 'o2' AND status = 'phantom_launched' AND "
                 "phantom_container_id = '55'") == 1, "in order after it");

    pb_outbox_free(up);
    unlink(path);

    return CHECK_DONE("test_outbox");
}
