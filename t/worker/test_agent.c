/*
 * configure-agent without PhantomBuster: the webhook URL rules, the masking
 * of its secret, the field-by-field difference of two agents, the input
 * checks of the command, and that it cannot come through the Redis
 * command list.  (Against the simulator: t/worker/test_integration.py.)
 */

#include "agent.h"
#include "commands.h"
#include "pb_keys.h"
#include "testlib.h"


static int
masks_to(const char *url, const char *want)
{
    char  out[256];

    pb_url_mask(url, out, sizeof(out));
    if (strcmp(out, want) != 0) {
        fprintf(stderr, "mask %s: got %s, want %s\n", url, out, want);
        return 0;
    }

    return 1;
}


static void
test_mask(void)
{
    char  small[12];

    CHECK(masks_to("https://h.example/webhooks/phantombuster?secret=s3cr3t",
                   "https://h.example/webhooks/phantombuster?secret=***"),
          "the secret's value is masked, the rest shown");
    CHECK(masks_to("http://h/p?a=1&secret=xyz&flag&e=#frag",
                   "http://h/p?a=***&secret=***&flag&e=#frag"),
          "every query value, empty ones and the fragment kept");
    CHECK(masks_to("https://user:pw@h:8443/p", "https://user:***@h:8443/p"),
          "a password in the user information");
    CHECK(masks_to("https://user@h/p", "https://user@h/p"),
          "a user without a password is not a secret");
    CHECK(masks_to("no-scheme?token=abc", "no-scheme?token=***"),
          "not a URL: the query is still masked");

    pb_url_mask("https://h/?secret=abcdef", small, sizeof(small));
    CHECK(strcmp(small, "https://h/?") == 0, "truncated, never overflows");
}


static int
problem_has(const char *url, const char *words)
{
    const char  *p = pb_webhook_url_problem(url);

    return p != NULL && strstr(p, words) != NULL;
}


static void
test_url_rules(void)
{
    char  long_url[2100];

    CHECK(pb_webhook_url_problem("https://h.example/hook?secret=abc") == NULL,
          "https with a secret");
    CHECK(pb_webhook_url_problem("HTTP://127.0.0.1:8480/w?x=1&secret=a")
          == NULL, "http, any case, secret not first");
    CHECK(problem_has("ftp://h/?secret=a", "http:// or https://"),
          "another scheme");
    CHECK(problem_has("h.example/?secret=a", "http:// or https://"),
          "no scheme");
    CHECK(problem_has("https:///p?secret=a", "no host"), "no host");
    CHECK(problem_has("https://u:p@:80/?secret=a", "no host"),
          "only a port after the user information");
    CHECK(problem_has("https://h/ p?secret=a", "space"), "a space");
    CHECK(problem_has("https://h/\tp?secret=a", "control"), "a tab");
    CHECK(problem_has("https://h/p", "secret"), "no query at all");
    CHECK(problem_has("https://h/p?secret=", "secret"), "an empty secret");
    CHECK(problem_has("https://h/p?xsecret=a&secret", "secret"),
          "secret only as part of a name, or without a value");
    CHECK(problem_has("https://h/p#?secret=a", "secret"),
          "a secret in the fragment is never sent");

    memset(long_url, 'a', sizeof(long_url) - 1);
    long_url[sizeof(long_url) - 1] = '\0';
    memcpy(long_url, "https://h/?secret=", 18);
    CHECK(problem_has(long_url, "2000"), "longer than the API allows");
}


/* The diff of two agents given as JSON text, as "field:before>after;". */
static int
diff_is(const char *before, const char *after, const char *want)
{
    char     got[1024], a[128], b[128];
    size_t   i, len = 0;
    json_t  *x = json_loads(before, 0, NULL), *y = json_loads(after, 0, NULL);
    json_t  *changes = pb_agent_diff(x, y), *c;

    got[0] = '\0';
    json_array_foreach(changes, i, c) {
        len += (size_t) snprintf(got + len, sizeof(got) - len, "%s:%s>%s;",
                   json_string_value(json_object_get(c, "field")),
                   pb_change_text(c, "before", b, sizeof(b)),
                   pb_change_text(c, "after", a, sizeof(a)));
    }

    json_decref(x);
    json_decref(y);
    json_decref(changes);

    if (strcmp(got, want) != 0) {
        fprintf(stderr, "diff: got %s, want %s\n", got, want);
        return 0;
    }

    return 1;
}


static void
test_diff(void)
{
    CHECK(diff_is("{\"id\":\"1\",\"maxParallelism\":null,\"notifications\":{}}",
                  "{\"id\":\"1\",\"maxParallelism\":1,\"notifications\":"
                  "{\"webhook\":\"https://h/?secret=abc\"}}",
                  "maxParallelism:null>1;"
                  "notifications.webhook:(none)>https://h/?secret=***;"),
          "one line per changed field, the URL masked");
    CHECK(diff_is("{\"maxParallelism\":1,\"notifications\":{\"webhook\":"
                  "\"https://a/?secret=1\",\"mailManualExitError\":true}}",
                  "{\"maxParallelism\":1.0,\"notifications\":{\"webhook\":"
                  "\"https://a/?secret=1\",\"mailManualExitError\":true}}",
                  ""), "nothing changed (1 and 1.0 are the same number)");
    CHECK(diff_is("{\"notifications\":null,\"name\":\"a\"}",
                  "{\"notifications\":{\"webhook\":\"http://b/?secret=2\"},"
                  "\"name\":\"b\",\"updatedAt\":5}",
                  "notifications.webhook:(none)>http://b/?secret=***;"
                  "name:a>b;updatedAt:(none)>5;"),
          "null notifications, changed and added fields");
    CHECK(diff_is("{\"notifications\":{\"webhook\":\"http://b/?secret=2\"},"
                  "\"gone\":true}", "{}",
                  "notifications.webhook:http://b/?secret=***>(none);"
                  "gone:true>(none);"), "removed fields");
}


static int
command(pb_ctx_t *ctx, const char *json, char *err, size_t err_len)
{
    int      rc;
    json_t  *req = json_loads(json, 0, NULL), *res = NULL;

    err[0] = '\0';
    rc = pb_command_run(ctx, req, &res, err, err_len);
    json_decref(req);
    json_decref(res);

    return rc;
}


static void
test_command_input(pb_ctx_t *ctx)
{
    char  err[512];

#define BAD(json, words, what)                                                \
    CHECK(command(ctx, json, err, sizeof(err)) == PB_CMD_BADARGS              \
          && strstr(err, words) != NULL, what)

    BAD("{\"cmd\":\"configure_agent\",\"webhook_url\":\"https://h/?secret=a\"}",
        "agent id", "no agent");
    BAD("{\"cmd\":\"configure_agent\",\"agent\":\"a b\","
        "\"webhook_url\":\"https://h/?secret=a\"}", "agent id",
        "an agent id with a space");
    BAD("{\"cmd\":\"configure_agent\",\"agent\":\"1\"}", "webhook URL is "
        "required", "no URL");
    BAD("{\"cmd\":\"configure_agent\",\"agent\":\"1\","
        "\"webhook_url\":\"ftp://h/?secret=a\"}", "http:// or https://",
        "a URL that is not http(s)");
    BAD("{\"cmd\":\"configure_agent\",\"agent\":\"1\","
        "\"webhook_url\":\"https://h/?secret=a\",\"max_parallelism\":0}",
        "1..100", "max parallelism 0");
    BAD("{\"cmd\":\"configure_agent\",\"agent\":\"1\","
        "\"webhook_url\":\"https://h/?secret=a\",\"max_parallelism\":\"2\"}",
        "1..100", "max parallelism as a string");
    BAD("{\"cmd\":\"configure_agent\",\"agent\":1,"
        "\"webhook_url\":\"https://h/?secret=a\"}", "PHANTOMBUSTER_API_KEY",
        "valid input, but no API key");
    CHECK(strstr(err, "secret=a") == NULL, "the error does not echo the URL");

#undef BAD
}


/* configure_agent pushed onto the command list is refused, not run. */
static void
test_not_remote(pb_ctx_t *ctx)
{
    json_t  *a;

    test_flush(ctx);
    freeReplyObject(pb_redis_cmd(ctx->redis, "LPUSH %s %s", PB_KEY_COMMANDS,
        "{\"cmd\":\"configure_agent\",\"agent\":\"1\",\"webhook_url\":"
        "\"https://evil.example/?secret=x\",\"request_id\":\"r1\"}"));

    CHECK(pb_commands_step(ctx) == 1, "the worker takes the command");
    a = test_json(ctx, "GET %s", PB_KEY_RESULT_PREFIX "r1");
    CHECK(json_is_false(json_object_get(a, "ok"))
          && strstr(json_string_value(json_object_get(a, "error")),
                    "pbctl only") != NULL,
          "configure_agent through Redis answers an error");
    json_decref(a);
}


int
main(void)
{
    pb_ctx_t  *ctx = test_setup("test_agent");

    test_mask();
    test_url_rules();
    test_diff();
    test_command_input(ctx);
    test_not_remote(ctx);

    return CHECK_DONE("test_agent");
}
