/*
 * Agent configuration.  See agent.h; the endpoints and their fields are in
 * shared/research/phantombuster-api.md (agents/fetch, agents/save).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent.h"
#include "commands.h"
#include "log.h"

#define PB_MASK  "***"

/* One name=value of a query string. */
typedef struct {
    const char  *name;
    size_t       name_len;
    int          has_value;     /* an "=" followed the name */
    const char  *value;
    size_t       value_len;
} param_t;


/* The next parameter of the query string at *p (it ends at '#' or NUL). */
static int
next_param(const char **p, param_t *prm)
{
    const char  *s = *p;

    if (*s == '\0' || *s == '#') {
        return 0;
    }

    prm->name = s;
    prm->name_len = strcspn(s, "=&#");
    s += prm->name_len;

    prm->has_value = *s == '=';
    prm->value = s;
    prm->value_len = 0;
    if (prm->has_value) {
        prm->value = ++s;
        prm->value_len = strcspn(s, "&#");
        s += prm->value_len;
    }

    if (*s == '&') {
        s++;
    }

    *p = s;

    return 1;
}


/* Appends n bytes of s to out (capacity cap, *len used), truncating. */
static void
put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len + 1 >= cap) {
        return;
    }

    if (n > cap - 1 - *len) {
        n = cap - 1 - *len;
    }

    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
}


/* The length of "http://" or "https://" at the start of url, else 0. */
static size_t
http_prefix(const char *url)
{
    if (strncasecmp(url, "http://", 7) == 0) {
        return 7;
    }

    return strncasecmp(url, "https://", 8) == 0 ? 8 : 0;
}


void
pb_url_mask(const char *url, char *out, size_t cap)
{
    const char  *p = strstr(url, "://"), *at, *colon;
    size_t       len = 0, n;
    param_t      prm;

    if (cap == 0) {
        return;
    }
    out[0] = '\0';

    if (p != NULL) {
        p += 3;
        put(out, cap, &len, url, (size_t) (p - url));

        /* [user[:password]@]host: the password goes */
        n = strcspn(p, "/?#");
        at = NULL;
        for (colon = p; colon < p + n; colon++) {
            if (*colon == '@') {
                at = colon;
            }
        }
        if (at != NULL) {
            colon = memchr(p, ':', (size_t) (at - p));
            if (colon != NULL) {
                put(out, cap, &len, p, (size_t) (colon + 1 - p));
                put(out, cap, &len, PB_MASK, strlen(PB_MASK));
                p = at;
            }
        }

    } else {
        p = url;
    }

    n = strcspn(p, "?#");
    put(out, cap, &len, p, n);
    p += n;

    if (*p == '?') {
        put(out, cap, &len, "?", 1);
        p++;
        while (next_param(&p, &prm)) {
            put(out, cap, &len, prm.name, prm.name_len);
            if (prm.has_value) {
                put(out, cap, &len, "=", 1);
            }
            if (prm.value_len > 0) {
                put(out, cap, &len, PB_MASK, strlen(PB_MASK));
            }
            if (p[-1] == '&') {
                put(out, cap, &len, "&", 1);
            }
        }
    }

    put(out, cap, &len, p, strlen(p));
}


const char *
pb_webhook_url_problem(const char *url)
{
    const char  *p, *host;
    size_t       pre = http_prefix(url), n;
    param_t      prm;

    if (pre == 0) {
        return "must start with http:// or https://";
    }

    if (strlen(url) > PB_WEBHOOK_URL_MAX) {
        return "is longer than PhantomBuster's 2000 characters";
    }

    for (p = url; *p != '\0'; p++) {
        if ((unsigned char) *p <= ' ' || *p == 0x7f) {
            return "holds a space or a control character";
        }
    }

    n = strcspn(url + pre, "/?#");
    host = url + pre;
    for (p = host; p < url + pre + n; p++) {
        if (*p == '@') {
            host = p + 1;
        }
    }
    if (host == url + pre + n || *host == ':') {
        return "has no host";
    }

    p = url + strcspn(url, "?#");
    for (p = *p == '?' ? p + 1 : ""; next_param(&p, &prm); ) {
        if (prm.name_len == 6 && strncmp(prm.name, "secret", 6) == 0
            && prm.value_len > 0)
        {
            return NULL;
        }
    }

    return "carries no ?secret= (the module's phantombuster_secret)";
}


/* Replaces in text every query value of url (3+ characters) by "***". */
static void
redact(char *text, const char *url)
{
    char         value[PB_WEBHOOK_URL_MAX + 1], *hit;
    const char  *p = strchr(url, '?');
    param_t      prm;

    if (p == NULL) {
        return;
    }

    for (p++; next_param(&p, &prm); ) {
        if (prm.value_len < 3 || prm.value_len >= sizeof(value)) {
            continue;
        }
        memcpy(value, prm.value, prm.value_len);
        value[prm.value_len] = '\0';

        while ((hit = strstr(text, value)) != NULL) {
            memcpy(hit, PB_MASK, 3);
            memmove(hit + 3, hit + prm.value_len,
                    strlen(hit + prm.value_len) + 1);
        }
    }
}


/* A value as shown: a URL masked (a new string), anything else itself. */
static json_t *
shown(json_t *v)
{
    char         buf[PB_WEBHOOK_URL_MAX + 64];
    const char  *s = json_string_value(v);

    if (s != NULL && http_prefix(s) != 0) {
        pb_url_mask(s, buf, sizeof(buf));
        return json_string(buf);
    }

    return json_incref(v);
}


/* Equal; numbers by value (1 and 1.0 are the same maxParallelism). */
static int
same(json_t *a, json_t *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }

    if (json_is_number(a) && json_is_number(b)) {
        return json_number_value(a) == json_number_value(b);
    }

    return json_equal(a, b);
}


/* One field compared; a change is appended with both sides shown. */
static void
leaf_field(json_t *changes, const char *prefix, const char *key, json_t *a,
    json_t *b)
{
    char     field[256];
    json_t  *c;

    if (same(a, b)) {
        return;
    }

    snprintf(field, sizeof(field), "%s%s", prefix, key);
    c = json_pack("{s:s}", "field", field);
    if (a != NULL) {
        json_object_set_new(c, "before", shown(a));
    }
    if (b != NULL) {
        json_object_set_new(c, "after", shown(b));
    }
    json_array_append_new(changes, c);
}


typedef void (*field_fn)(json_t *changes, const char *prefix,
    const char *key, json_t *a, json_t *b);

/* fn on every key of a, then on b's keys a lacks (absent side NULL). */
static void
each_key(json_t *changes, const char *prefix, json_t *a, json_t *b,
    field_fn fn)
{
    const char  *key;
    json_t      *v;

    json_object_foreach(a, key, v) {
        fn(changes, prefix, key, v, json_object_get(b, key));
    }

    json_object_foreach(b, key, v) {
        if (json_object_get(a, key) == NULL) {
            fn(changes, prefix, key, NULL, v);
        }
    }
}


/* A top-level field: an object (on either side) is compared key by key. */
static void
top_field(json_t *changes, const char *prefix, const char *key, json_t *a,
    json_t *b)
{
    char     sub[256];
    json_t  *empty;

    if (!json_is_object(a) && !json_is_object(b)) {
        leaf_field(changes, prefix, key, a, b);
        return;
    }

    snprintf(sub, sizeof(sub), "%s.", key);
    empty = json_object();
    each_key(changes, sub, json_is_object(a) ? a : empty,
             json_is_object(b) ? b : empty, leaf_field);
    json_decref(empty);
}


json_t *
pb_agent_diff(const json_t *before, const json_t *after)
{
    json_t  *changes = json_array();

    each_key(changes, "", (json_t *) before, (json_t *) after, top_field);

    return changes;
}


static int
api_failed(const char *what, pb_api_result_t *res, const pb_agent_conf_t *conf,
    char *err, size_t err_len)
{
    if (pb_api_classify(res) == PB_API_NOT_FOUND) {
        snprintf(err, err_len, "configure-agent: agent %s not found (%s)",
                 conf->agent, res->error);
    } else {
        snprintf(err, err_len, "configure-agent: %s failed: %s", what,
                 res->error[0] ? res->error : "the answer is not a JSON "
                 "object");
    }

    redact(err, conf->webhook_url);

    return PB_CMD_FAILED;
}


/* agents/fetch into *agent (a new reference to an object). */
static int
fetch(pb_api_t *api, const pb_agent_conf_t *conf, json_t **agent, char *err,
    size_t err_len)
{
    int              rc = PB_CMD_OK;
    pb_api_result_t  res;

    pb_api_agent_fetch(api, conf->agent, &res);

    if (pb_api_classify(&res) == PB_API_OK && json_is_object(res.json)) {
        *agent = json_incref(res.json);
    } else {
        rc = api_failed("agents/fetch", &res, conf, err, err_len);
    }

    pb_api_result_free(&res);

    return rc;
}


/* The agent as it should be: notifications merged, maxParallelism set. */
static json_t *
planned(const json_t *before, const pb_agent_conf_t *conf)
{
    json_t  *agent = json_deep_copy(before), *n;

    n = json_object_get(agent, "notifications");
    if (!json_is_object(n)) {
        n = json_object();
        json_object_set_new(agent, "notifications", n);
    }

    json_object_set_new(n, "webhook", json_string(conf->webhook_url));
    json_object_set_new(agent, "maxParallelism",
                        json_integer(conf->max_parallelism));

    return agent;
}


/*
 * What was saved against what is read back: the fields of the saved body
 * (each notification key of it, maxParallelism) that the read-back does
 * not show.  Keys the read-back has on top (defaults PhantomBuster fills
 * in) are no mismatch.
 */
static json_t *
mismatches(json_t *sent, json_t *after)
{
    const char  *key;
    json_t      *seen, *n, *v, *changes;

    n = json_object_get(after, "notifications");
    seen = json_pack("{s:{}}", "notifications");
    json_object_foreach(json_object_get(sent, "notifications"), key, v) {
        if (json_object_get(n, key) != NULL) {
            json_object_set(json_object_get(seen, "notifications"), key,
                            json_object_get(n, key));
        }
    }

    v = json_object_get(after, "maxParallelism");
    if (v != NULL) {
        json_object_set(seen, "maxParallelism", v);
    }

    changes = pb_agent_diff(sent, seen);
    json_decref(seen);

    return changes;
}


const char *
pb_change_text(const json_t *change, const char *side, char *buf, size_t cap)
{
    json_t  *v = json_object_get(change, side);
    char    *s;

    if (json_is_string(v)) {
        return json_string_value(v);
    }

    s = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
    snprintf(buf, cap, "%s", s ? s : "(none)");
    free(s);

    return buf;
}


/* Saves the planned agent and checks the read-back; *after on success. */
static int
save_and_verify(pb_api_t *api, const pb_agent_conf_t *conf, json_t *wanted,
    json_t **after, char *err, size_t err_len)
{
    char              a[64], b[64];
    int               rc;
    json_t           *sent, *body, *wrong, *first;
    pb_api_result_t   res;

    sent = json_pack("{s:O, s:I}", "notifications",
                     json_object_get(wanted, "notifications"),
                     "maxParallelism", (json_int_t) conf->max_parallelism);
    body = json_copy(sent);
    json_object_set_new(body, "id", json_string(conf->agent));

    pb_api_agent_save(api, body, &res);
    rc = pb_api_classify(&res) == PB_API_OK ? PB_CMD_OK
         : api_failed("agents/save", &res, conf, err, err_len);
    pb_api_result_free(&res);

    if (rc == PB_CMD_OK) {
        rc = fetch(api, conf, after, err, err_len);
    }

    if (rc == PB_CMD_OK) {
        wrong = mismatches(sent, *after);
        first = json_array_get(wrong, 0);
        if (first != NULL) {
            snprintf(err, err_len, "configure-agent: the read-back does not "
                     "match: %s is %s, not %s",
                     json_string_value(json_object_get(first, "field")),
                     pb_change_text(first, "after", a, sizeof(a)),
                     pb_change_text(first, "before", b, sizeof(b)));
            rc = PB_CMD_FAILED;
        }
        json_decref(wrong);
    }

    json_decref(sent);
    json_decref(body);

    return rc;
}


int
pb_agent_configure(pb_api_t *api, const pb_agent_conf_t *conf,
    json_t **result, char *err, size_t err_len)
{
    char     masked[PB_WEBHOOK_URL_MAX + 64];
    int      rc, save;
    json_t  *before = NULL, *wanted = NULL, *after = NULL, *changes;

    rc = fetch(api, conf, &before, err, err_len);
    if (rc != PB_CMD_OK) {
        return rc;
    }

    wanted = planned(before, conf);
    changes = pb_agent_diff(before, wanted);
    save = json_array_size(changes) > 0 && !conf->dry_run;

    if (save) {
        json_decref(changes);
        changes = NULL;
        rc = save_and_verify(api, conf, wanted, &after, err, err_len);
        if (rc == PB_CMD_OK) {
            changes = pb_agent_diff(before, after);
        }
    }

    if (rc == PB_CMD_OK) {
        pb_url_mask(conf->webhook_url, masked, sizeof(masked));
        pb_log(PB_LOG_INFO, save ? "agent configured" : "agent unchanged",
               "{s:s, s:s, s:I, s:b, s:I}", "agent", conf->agent,
               "webhook", masked, "max_parallelism",
               (json_int_t) conf->max_parallelism, "dry_run", conf->dry_run,
               "changes", (json_int_t) json_array_size(changes));

        *result = json_pack("{s:s, s:b, s:b, s:o}", "agent", conf->agent,
                            "dry_run", conf->dry_run, "saved", save,
                            "changes", changes);
    }

    json_decref(before);
    json_decref(wanted);
    json_decref(after);

    return rc;
}
