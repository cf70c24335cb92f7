#define _GNU_SOURCE  /* memmem */
/*
 * Unit tests for common/: payload validation, envelope format, key names
 * and the push script's text.  The push script's behaviour is tested
 * against a real Redis by the module suites.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "pb_envelope.h"
#include "pb_keys.h"
#include "pb_payload.h"


static const char *
reject_reason(const char *body)
{
    pb_payload_t  p;
    const char   *reason = NULL;

    if (pb_payload_parse(body, strlen(body), &p, &reason) == 0) {
        pb_payload_free(&p);
        return NULL;
    }

    return reason;
}


static void
expect_reject(const char *body, const char *reason)
{
    const char  *got = reject_reason(body);

    CHECK(got != NULL && strcmp(got, reason) == 0, body);
    if (got != NULL && strcmp(got, reason) != 0) {
        fprintf(stderr, "  got \"%s\", want \"%s\"\n", got, reason);
    }
}


static void
test_accepts_real_payload(void)
{
    FILE         *f;
    char          buf[4096];
    size_t        n;
    pb_payload_t  p;
    const char   *reason;

    f = fopen(PB_SAMPLE_PAYLOAD, "rb");
    CHECK(f != NULL, "sample payload readable");
    if (f == NULL) {
        return;
    }

    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);

    CHECK(pb_payload_parse(buf, n, &p, &reason) == 0, "sample accepted");
    CHECK(strcmp(p.container_id, "7583362109412873") == 0,
          "numeric containerId normalised to text");
    CHECK(strcmp(p.agent_id, "4717388215573025") == 0, "numeric agentId");
    CHECK(p.exit_code == 0, "exitCode");
    CHECK(pb_payload_succeeded(&p), "finished + 0 is a success");
    pb_payload_free(&p);
}


static void
test_accepts_variants(void)
{
    CHECK(reject_reason("{\"containerId\":\"abc-1\",\"agentId\":\"7\","
                        "\"exitCode\":1,\"exitMessage\":\"killed\"}") == NULL,
          "string ids");
    CHECK(reject_reason("{\"containerId\":1,\"agentId\":2,\"exitCode\":0,"
                        "\"exitMessage\":\"no log timeout\",\"x\":[1,{}]}")
          == NULL, "unknown exitMessage and extra fields kept");
    CHECK(reject_reason(" {\"containerId\":1,\"agentId\":2,\"exitCode\":-3,"
                        "\"exitMessage\":\"\"} \n") == NULL,
          "whitespace around the object");
}


static void
test_rejects(void)
{
    char  deep[256];
    int   i;

    expect_reject("", "empty body");
    expect_reject("{", "truncated json");
    expect_reject("nope", "invalid json");
    expect_reject("{} {}", "trailing data after json");
    expect_reject("[1,2]", "payload must be a json object");
    expect_reject("\"s\"", "payload must be a json object");
    expect_reject("{\"a\":\"\xff\"}", "invalid utf-8");
    expect_reject("{\"a\":1,\"a\":2}", "duplicate key");
    expect_reject("{\"a\":\"\\u0000\"}", "nul character in string");
    expect_reject("{\"agentId\":1,\"exitCode\":0,\"exitMessage\":\"f\"}",
                  "missing containerId");
    expect_reject("{\"containerId\":\"\",\"agentId\":1,\"exitCode\":0,"
                  "\"exitMessage\":\"f\"}",
                  "containerId must be a non-empty id string or an integer");
    expect_reject("{\"containerId\":1.5,\"agentId\":1,\"exitCode\":0,"
                  "\"exitMessage\":\"f\"}",
                  "containerId must be a non-empty id string or an integer");
    expect_reject("{\"containerId\":\"a b\",\"agentId\":1,\"exitCode\":0,"
                  "\"exitMessage\":\"f\"}",
                  "containerId must be a non-empty id string or an integer");
    expect_reject("{\"containerId\":-1,\"agentId\":1,\"exitCode\":0,"
                  "\"exitMessage\":\"f\"}",
                  "containerId must be a non-empty id string or an integer");
    expect_reject("{\"containerId\":1,\"exitCode\":0,\"exitMessage\":\"f\"}",
                  "missing agentId");
    expect_reject("{\"containerId\":1,\"agentId\":null,\"exitCode\":0,"
                  "\"exitMessage\":\"f\"}",
                  "agentId must be a non-empty id string or an integer");
    expect_reject("{\"containerId\":1,\"agentId\":1,\"exitMessage\":\"f\"}",
                  "missing exitCode");
    expect_reject("{\"containerId\":1,\"agentId\":1,\"exitCode\":\"0\","
                  "\"exitMessage\":\"f\"}", "exitCode must be an integer");
    expect_reject("{\"containerId\":1,\"agentId\":1,\"exitCode\":0}",
                  "missing exitMessage");
    expect_reject("{\"containerId\":1,\"agentId\":1,\"exitCode\":0,"
                  "\"exitMessage\":3}", "exitMessage must be a string");
    expect_reject("{\"containerId\":99999999999999999999,\"agentId\":1}",
                  "number out of range");

    for (i = 0; i < 40; i++) {
        deep[i] = '[';
    }
    deep[i] = '\0';
    expect_reject(deep, "json nested too deeply");

    /* brackets inside strings are not nesting */
    CHECK(reject_reason("{\"containerId\":1,\"agentId\":1,\"exitCode\":0,"
                        "\"exitMessage\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                        "[[[[[[[[[[[[[[[\\\"[[[[\"}") == NULL,
          "brackets in strings do not count as depth");
}


/* A valid payload with `extra` as one more top-level member. */
static const char *
with_extra(const char *extra)
{
    static char  buf[1024];

    snprintf(buf, sizeof(buf), "{\"containerId\":1,\"agentId\":1,"
             "\"exitCode\":0,\"exitMessage\":\"f\",\"x\":%s}", extra);
    return buf;
}


static void
expect_extra(const char *extra, const char *reason)
{
    const char  *got = reject_reason(with_extra(extra));

    if (reason == NULL) {
        CHECK(got == NULL, extra);
        if (got != NULL) {
            fprintf(stderr, "  rejected: %s\n", got);
        }
        return;
    }

    expect_reject(with_extra(extra), reason);
}


/* The scanner's grammar corners, each against what jansson decides. */
static void
test_grammar(void)
{
    pb_payload_t  p;
    const char   *reason, *body;

    /* strings and escapes */
    expect_extra("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", NULL);
    expect_extra("\"\\u00e9\\u20AC\\ud83d\\ude00\"", NULL);
    expect_extra("\"\\ud83d\"", "invalid json");
    expect_extra("\"\\ude00\"", "invalid json");
    expect_extra("\"\\ud83d\\u0041\"", "invalid json");
    expect_extra("\"\\x\"", "invalid json");
    expect_extra("\"\\u12G4\"", "invalid json");
    expect_extra("\"a\tb\"", "invalid json");
    expect_extra("\"\\u0000x\"", "nul character in string");

    /* UTF-8 */
    expect_extra("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"",
                 NULL);
    expect_extra("\"\xc0\xaf\"", "invalid utf-8");          /* overlong */
    expect_extra("\"\xe0\x80\xaf\"", "invalid utf-8");      /* overlong */
    expect_extra("\"\xf0\x80\x80\xaf\"", "invalid utf-8");  /* overlong */
    expect_extra("\"\xed\xa0\x80\"", "invalid utf-8");      /* surrogate */
    expect_extra("\"\xf4\x90\x80\x80\"", "invalid utf-8");  /* > 10FFFF */
    expect_extra("\"\xf5\x80\x80\x80\"", "invalid utf-8");
    expect_extra("\"\x80\"", "invalid utf-8");
    expect_extra("\"\xe2\x82\"", "invalid utf-8");          /* cut short */

    /* numbers */
    expect_extra("-0", NULL);
    expect_extra("[0,-1,1.5,-0.0,1e5,1E+5,1e-5,2.5e-308,1e-400]", NULL);
    expect_extra("01", "invalid json");
    expect_extra("1.", "invalid json");
    expect_extra(".5", "invalid json");
    expect_extra("1e", "invalid json");
    expect_extra("+1", "invalid json");
    expect_extra("-", "invalid json");
    expect_extra("9223372036854775807", NULL);
    expect_extra("-9223372036854775808", NULL);
    expect_extra("9223372036854775808", "number out of range");
    expect_extra("-9223372036854775809", "number out of range");
    expect_extra("1.7976931348623157e308", NULL);
    expect_extra("1.7976931348623158e308", NULL);   /* rounds to DBL_MAX */
    expect_extra("1.7976931348623159e308", "number out of range");
    expect_extra("-1e309", "number out of range");
    expect_extra("0e99999999999999999999", NULL);
    expect_extra("0.000000000000000000000000000001e330", NULL);

    /* literals, structure */
    expect_extra("[true,false,null,{},[],{\"a\":[{}]}]", NULL);
    expect_extra("tru", "invalid json");
    expect_extra("nulll", "invalid json");
    expect_extra("[1,]", "invalid json");
    expect_extra("{\"a\":1,}", "invalid json");
    expect_extra("{\"a\" 1}", "invalid json");
    expect_extra("[1 2]", "invalid json");

    /* duplicates at every level, compared unescaped */
    expect_extra("{\"a\":1,\"\\u0061\":2}", "duplicate key");
    expect_extra("[{\"a\":1},{\"a\":1}]", NULL);
    expect_extra("{\"a\":{\"a\":1}}", NULL);
    expect_reject("{\"containerId\":1,\"agentId\":1,\"exitCode\":0,"
                  "\"exitMessage\":\"f\",\"exit\\u0043ode\":1}",
                  "duplicate key");

    /* fields: escaped key names and ids, -0, a real exitCode */
    body = "{\"container\\u0049d\":\"a\\u002d1\",\"agentId\":-0,"
           "\"exitCode\":-7,\"exitMessage\":\"fin\\u0069shed\"}";
    CHECK(pb_payload_parse(body, strlen(body), &p, &reason) == 0,
          "escaped key and id accepted");
    CHECK(strcmp(p.container_id, "a-1") == 0, "escaped id decoded");
    CHECK(strcmp(p.agent_id, "0") == 0, "-0 is id 0");
    CHECK(p.exit_code == -7 && p.exit_message_len == 8
          && strcmp(p.exit_message, "finished") == 0, "exit fields");
    CHECK(!pb_payload_succeeded(&p), "exitCode -7 is no success");
    pb_payload_free(&p);

    expect_reject("{\"containerId\":1,\"agentId\":1,\"exitCode\":0.0,"
                  "\"exitMessage\":\"f\"}", "exitCode must be an integer");
    expect_reject("{\"containerId\":1e3,\"agentId\":1,\"exitCode\":0,"
                  "\"exitMessage\":\"f\"}",
                  "containerId must be a non-empty id string or an integer");
    expect_reject("{\"containerId\":\"\\u00e9\",\"agentId\":1,\"exitCode\":0,"
                  "\"exitMessage\":\"f\"}",
                  "containerId must be a non-empty id string or an integer");
    expect_reject("{\"containerId\":\"0123456789012345678901234567890123456789"
                  "0123456789012345678901234\",\"agentId\":1,\"exitCode\":0,"
                  "\"exitMessage\":\"f\"}",
                  "containerId must be a non-empty id string or an integer");

    /* a long exitMessage is accepted, its copy cut */
    body = "{\"containerId\":1,\"agentId\":1,\"exitCode\":0,\"exitMessage\":"
           "\"0123456789012345678901234567890123456789012345678901234567890"
           "123456789\"}";
    CHECK(pb_payload_parse(body, strlen(body), &p, &reason) == 0
          && p.exit_message_len == 70
          && strlen(p.exit_message) == PB_EXIT_MESSAGE_MAX,
          "long exitMessage accepted and cut");
    pb_payload_free(&p);

    /* top level */
    expect_reject("  ", "truncated json");
    expect_reject("{\"a\":1} x", "trailing data after json");
    expect_reject("{\"a\":1}\xff", "invalid utf-8");
    expect_reject("\xef\xbb\xbf{}", "invalid json");
    expect_reject("1e400", "number out of range");
    expect_reject("null", "payload must be a json object");
    expect_reject("{\"a\":\"x", "truncated json");
    expect_reject("{\"a\":[1,2", "truncated json");
}


/* Enough keys to take the duplicate table off the stack. */
static void
test_many_keys(void)
{
    char    buf[16384];
    size_t  n;
    int     i;

    n = (size_t) sprintf(buf, "{\"containerId\":1,\"agentId\":1,"
                         "\"exitCode\":0,\"exitMessage\":\"f\"");
    for (i = 0; i < 1000; i++) {
        n += (size_t) sprintf(buf + n, ",\"k%d\":%d", i, i);
    }
    memcpy(buf + n, "}", 2);
    CHECK(reject_reason(buf) == NULL, "1000 distinct keys accepted");

    memcpy(buf + n, ",\"k777\":0}", 11);
    expect_reject(buf, "duplicate key");
}


/*
 * An envelope whose payload nests depth levels (the payload object is the
 * first): the worker must draw the line where the module does.
 */
static void
test_envelope_depth(int depth, int expect)
{
    char            buf[1024];
    size_t          n;
    int             i;
    pb_envelope_t   env;
    const char     *reason = NULL;

    n = pb_envelope_head(buf, sizeof(buf), "i", 1, 1, "q", 1);
    n += (size_t) sprintf(buf + n, "{\"containerId\":1,\"agentId\":1,"
                          "\"exitCode\":0,\"exitMessage\":\"f\",\"x\":");
    for (i = 1; i < depth; i++) {
        buf[n++] = '[';
    }
    buf[n++] = '0';
    for (i = 1; i < depth; i++) {
        buf[n++] = ']';
    }
    memcpy(buf + n, "}}", 2);
    n += 2;

    CHECK(pb_envelope_parse(buf, n, &env, &reason) == expect,
          "envelope depth limit matches the module's");
    if (expect == 0 && reason == NULL) {
        pb_envelope_free(&env);
    }
    if (expect != 0) {
        CHECK(reason != NULL && strcmp(reason, "json nested too deeply") == 0,
              "depth reason");
    }
}


static void
test_envelope_roundtrip(void)
{
    const char     *body = "{\"containerId\":42,\"agentId\":\"a1\","
                           "\"exitCode\":0,\"exitMessage\":\"finished\","
                           "\"runDuration\":1.50}";
    const char     *queue = "q\"\xc3\xa9";
    char            buf[512];
    size_t          n;
    pb_envelope_t   env;
    const char     *reason = NULL;

    n = pb_envelope_head(buf, 10, "id", 2, 1, queue, strlen(queue));
    CHECK(n == 0, "head refuses a buffer too small");

    n = pb_envelope_head(buf, sizeof(buf), "0123abcd", 8, 1700000000123LL,
                         queue, strlen(queue));
    CHECK(n > 0, "head written");
    memcpy(buf + n, body, strlen(body));
    n += strlen(body);
    memcpy(buf + n, PB_ENVELOPE_TAIL, PB_ENVELOPE_TAIL_LEN);
    n += PB_ENVELOPE_TAIL_LEN;

    CHECK(memmem(buf, n, "\"runDuration\":1.50}", 19) != NULL,
          "payload bytes embedded verbatim");

    CHECK(pb_envelope_parse(buf, n, &env, &reason) == 0, "envelope parses");
    if (reason == NULL) {
        CHECK(strcmp(env.id, "0123abcd") == 0, "id");
        CHECK(strcmp(env.queue, "q\"\xc3\xa9") == 0, "queue escaped");
        CHECK(env.received_at_ms == 1700000000123LL, "received_at");
        CHECK(strcmp(env.payload.container_id, "42") == 0, "payload checked");
        pb_envelope_free(&env);
    }

    test_envelope_depth(PB_PAYLOAD_MAX_DEPTH, 0);
    test_envelope_depth(PB_PAYLOAD_MAX_DEPTH + 1, -1);

    CHECK(pb_envelope_parse("{\"id\":\"x\"}", 10, &env, &reason) != 0,
          "envelope without payload rejected");
    body = "{\"id\":\"x\",\"queue\":\"q\",\"received_at\":1,\"payload\":{}}";
    CHECK(pb_envelope_parse(body, strlen(body), &env, &reason) != 0
          && strcmp(reason, "missing containerId") == 0,
          "envelope payload validated with the module's rules");
}


static void
test_keys(void)
{
    char  buf[64];

    CHECK(pb_key_join(buf, sizeof(buf), PB_DEFAULT_QUEUE, PB_SEEN_INFIX,
                      "123") == strlen("phantombuster:webhooks:seen:123"),
          "seen key length");
    CHECK(strcmp(buf, "phantombuster:webhooks:seen:123") == 0, "seen key");
    CHECK(pb_key_join(buf, 8, "abcd", ":x:", "ef") == 0,
          "join refuses a buffer too small");
    CHECK(strstr(pb_lua_push_webhooks, "LPUSH") != NULL, "script pushes");
}


int
main(void)
{
    test_accepts_real_payload();
    test_accepts_variants();
    test_rejects();
    test_grammar();
    test_many_keys();
    test_envelope_roundtrip();
    test_keys();

    return CHECK_DONE("common");
}
