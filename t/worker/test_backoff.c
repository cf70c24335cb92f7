/*
 * Unit tests without Redis: backoff arithmetic, Retry-After parsing, the
 * classification of API answers, configuration and REDIS_URL parsing.
 */

#include <curl/curl.h>

#include "api.h"
#include "backoff.h"
#include "testlib.h"


static void
test_ceiling(void)
{
    CHECK(pb_backoff_ceiling(1000, 300000, 0) == 1000, "level 0 = base");
    CHECK(pb_backoff_ceiling(1000, 300000, 3) == 8000, "doubles per level");
    CHECK(pb_backoff_ceiling(1000, 300000, 9) == 300000, "capped");
    CHECK(pb_backoff_ceiling(1000, 300000, 4000) == 300000,
          "huge level does not overflow");
    CHECK(pb_backoff_ceiling(500, 500, 7) == 500, "cap = base");
}


static void
test_full_jitter(void)
{
    int       i, low = 0, high = 0, in_range = 1;
    int64_t   d;

    for (i = 0; i < 10000; i++) {
        d = pb_backoff_full_jitter(1000, 60000, 2, pb_random64());
        in_range &= d >= 0 && d <= 4000;
        low += d < 1000;
        high += d > 3000;
    }

    CHECK(in_range, "full jitter stays within [0, base * 2^level]");
    /* uniform: each quarter holds about 2500 of 10000 */
    CHECK(low > 2000 && low < 3000, "jitter spreads over the low quarter");
    CHECK(high > 2000 && high < 3000, "jitter spreads over the high quarter");
    CHECK(pb_backoff_full_jitter(1000, 60000, 30, 59999) == 59999,
          "capped jitter maps r into [0, cap]");
    CHECK(pb_backoff_full_jitter(1000, 60000, 0, 1001) == 0,
          "r wraps modulo ceiling + 1");
}


static void
test_retry_after(void)
{
    int64_t  now = 1700000000000LL;

    CHECK(pb_retry_after_ms("7", now, 3600000) == 7000, "delta seconds");
    CHECK(pb_retry_after_ms(" 12 ", now, 3600000) == 12000,
          "spaces around a delta");
    CHECK(pb_retry_after_ms("0", now, 3600000) == 0, "zero");
    CHECK(pb_retry_after_ms("999999999", now, 3600000) == 3600000,
          "huge delta capped");
    CHECK(pb_retry_after_ms("5x", now, 3600000) == -1, "junk after digits");
    CHECK(pb_retry_after_ms("-3", now, 3600000) == -1, "negative");
    CHECK(pb_retry_after_ms("soon", now, 3600000) == -1, "not a date");
    CHECK(pb_retry_after_ms(NULL, now, 3600000) == -1, "absent");
    /* 1700000000 = Tue, 14 Nov 2023 22:13:20 GMT */
    CHECK(pb_retry_after_ms("Tue, 14 Nov 2023 22:13:50 GMT", now, 3600000)
          == 30000, "HTTP-date 30 s ahead");
    CHECK(pb_retry_after_ms("Tue, 14 Nov 2023 22:00:00 GMT", now, 3600000)
          == 0, "HTTP-date in the past");
}


static pb_api_class_t
classify(int curl_code, long status, const char *body)
{
    pb_api_result_t  r;
    pb_api_class_t   c;

    memset(&r, 0, sizeof(r));
    r.curl_code = curl_code;
    r.http_status = status;
    r.body = body ? strdup(body) : NULL;
    r.json = body ? json_loads(body, JSON_DECODE_ANY, NULL) : NULL;
    r.retry_after_ms = -1;

    c = pb_api_classify(&r);
    pb_api_result_free(&r);

    return c;
}


static void
test_classify(void)
{
    CHECK(classify(CURLE_OK, 200, "{\"containerId\":\"1\"}") == PB_API_OK,
          "200 ok");
    CHECK(classify(CURLE_OK, 429, "{}") == PB_API_RATE_LIMITED, "429");
    CHECK(classify(CURLE_OK, 400, "{\"status\":\"error\",\"error\":"
                   "\"maxParallelismReached\"}") == PB_API_REFUSED,
          "400 maxParallelismReached is a refusal, not a bad request");
    CHECK(classify(CURLE_OK, 402, "Error: maxParallelismReached")
          == PB_API_REFUSED, "refusal found in a non-JSON body");
    CHECK(classify(CURLE_OK, 400, "{\"error\":\"badRequest\"}")
          == PB_API_PERMANENT, "400 is permanent");
    CHECK(classify(CURLE_OK, 422, NULL) == PB_API_PERMANENT, "422");
    CHECK(classify(CURLE_OK, 401, NULL) == PB_API_AUTH, "401");
    CHECK(classify(CURLE_OK, 403, NULL) == PB_API_AUTH, "403");
    CHECK(classify(CURLE_OK, 404, NULL) == PB_API_NOT_FOUND, "404");
    CHECK(classify(CURLE_OK, 408, NULL) == PB_API_TRANSIENT, "408");
    CHECK(classify(CURLE_OK, 500, NULL) == PB_API_TRANSIENT, "500");
    CHECK(classify(CURLE_OK, 503, "<html>") == PB_API_TRANSIENT, "503");
    CHECK(classify(CURLE_OK, 502, NULL) == PB_API_AMBIGUOUS
          && classify(CURLE_OK, 504, "<html>") == PB_API_AMBIGUOUS,
          "a gateway's 502/504: the origin may have acted");
    CHECK(classify(CURLE_COULDNT_CONNECT, 0, NULL) == PB_API_TRANSIENT,
          "connection refused: never sent");
    CHECK(classify(CURLE_OPERATION_TIMEDOUT, 0, NULL) == PB_API_AMBIGUOUS,
          "timeout: may have happened");
    CHECK(classify(CURLE_GOT_NOTHING, 0, NULL) == PB_API_AMBIGUOUS,
          "empty reply: may have happened");
}


static void
test_config(void)
{
    char          err[256];
    static const char  *args[] = { "x", "--max-running", "3",
                                   "--timeout=2.5", "--poll", "--api-key",
                                   "secret", "--bogus", "--max-running", "-1" };
    char                *argv[11];
    int                  i, rc;
    pb_config_t          cfg;

    for (i = 0; i < 10; i++) {
        argv[i] = (char *) args[i];     /* pb_config_flag never writes */
    }
    argv[10] = NULL;

    unsetenv("PHANTOMBUSTER_API_KEY");
    setenv("SEQUENTIAL_QUEUE_TIMEOUT", "90", 1);
    setenv("PB_MAX_RUNNING", "2", 1);
    CHECK(pb_config_from_env(&cfg, err, sizeof(err)) == 0, "env loads");
    CHECK(cfg.run_timeout_ms == 90000 && cfg.max_running == 2,
          "env values applied");
    CHECK(strcmp(cfg.audit_url, "sqlite:./pb_audit.db") == 0,
          "SQLite is the default audit database");

    i = 1;
    CHECK(pb_config_flag(&cfg, 10, argv, &i, err, sizeof(err)) == 1
          && i == 3 && cfg.max_running == 3, "--flag value");
    CHECK(pb_config_flag(&cfg, 10, argv, &i, err, sizeof(err)) == 1
          && i == 4 && cfg.run_timeout_ms == 2500, "--flag=fraction");
    CHECK(pb_config_flag(&cfg, 10, argv, &i, err, sizeof(err)) == 1
          && i == 5 && cfg.poll_mode == 1, "boolean flag");
    rc = pb_config_flag(&cfg, 10, argv, &i, err, sizeof(err));
    CHECK(rc == -1 && strstr(err, "PHANTOMBUSTER_API_KEY") != NULL
          && strstr(err, "secret") == NULL,
          "--api-key refused, without echoing the key");
    i = 7;
    CHECK(pb_config_flag(&cfg, 10, argv, &i, err, sizeof(err)) == 0,
          "unknown flag is not ours");
    i = 8;
    CHECK(pb_config_flag(&cfg, 10, argv, &i, err, sizeof(err)) == -1,
          "negative count refused");

    setenv("PB_MAX_RUNNING", "lots", 1);
    CHECK(pb_config_from_env(&cfg, err, sizeof(err)) == -1
          && strstr(err, "PB_MAX_RUNNING") != NULL, "bad env value named");
    unsetenv("PB_MAX_RUNNING");
    unsetenv("SEQUENTIAL_QUEUE_TIMEOUT");

    setenv("PHANTOMBUSTER_API_KEY_FILE", "/nonexistent/key", 1);
    CHECK(pb_config_from_env(&cfg, err, sizeof(err)) == -1,
          "unreadable key file is an error");
    unsetenv("PHANTOMBUSTER_API_KEY_FILE");
}


static int
url_ok(const char *url)
{
    char         err[256];
    pb_redis_t  *r = pb_redis_open(url, 1000, err, sizeof(err));

    pb_redis_close(r);

    return r != NULL;
}


static void
test_redis_url(void)
{
    CHECK(url_ok("redis://127.0.0.1:6379/0"), "host, port, db");
    CHECK(url_ok("redis://localhost"), "host only");
    CHECK(url_ok("redis://:pw@h:1/3") && url_ok("redis://user:pw@h/2"),
          "with a password");
    CHECK(url_ok("unix:///tmp/redis.sock?db=2") && url_ok("/tmp/redis.sock"),
          "unix sockets");
    CHECK(!url_ok("ftp://h") && !url_ok("redis://") && !url_ok("redis://:"),
          "bad scheme or empty host");
    CHECK(!url_ok("redis://h:70000") && !url_ok("redis://h:x/0")
          && !url_ok("redis://h:1/db"), "bad port or db");
}


int
main(void)
{
    test_ceiling();
    test_full_jitter();
    test_retry_after();
    test_classify();
    test_config();
    test_redis_url();

    return CHECK_DONE("test_backoff");
}
