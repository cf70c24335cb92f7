/*
 * PhantomBuster webhook payload validation.  See pb_payload.h.
 */

#include <stdio.h>
#include <string.h>
#include "pb_payload.h"


/*
 * jansson recurses once per nesting level and accepts up to 2048 levels;
 * a cheap scan first keeps hostile bodies from costing that much stack
 * and time.  Brackets inside strings do not count.
 */
int
pb_json_depth_exceeds(const char *data, size_t len, int max_depth)
{
    int     depth = 0, in_string = 0;
    size_t  i;

    for (i = 0; i < len; i++) {
        char  ch = data[i];

        if (in_string) {
            if (ch == '\\') {
                i++;
            } else if (ch == '"') {
                in_string = 0;
            }
            continue;
        }

        switch (ch) {
        case '"':
            in_string = 1;
            break;
        case '{':
        case '[':
            if (++depth > max_depth) {
                return 1;
            }
            break;
        case '}':
        case ']':
            depth--;
            break;
        }
    }

    return 0;
}


int
pb_id_char_ok(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
           || (ch >= '0' && ch <= '9')
           || ch == '_' || ch == '-' || ch == '.' || ch == ':';
}


int
pb_id_from_json(const json_t *value, char out[PB_ID_MAX_LEN + 1])
{
    const char  *s;
    size_t       i, n;

    if (json_is_integer(value)) {
        json_int_t  v = json_integer_value(value);

        if (v < 0) {
            return -1;
        }

        snprintf(out, PB_ID_MAX_LEN + 1, "%" JSON_INTEGER_FORMAT, v);
        return 0;
    }

    if (!json_is_string(value)) {
        return -1;
    }

    s = json_string_value(value);
    n = json_string_length(value);

    if (n == 0 || n > PB_ID_MAX_LEN) {
        return -1;
    }

    /* ids end up in Redis key names and log lines: keep them plain */
    for (i = 0; i < n; i++) {
        if (!pb_id_char_ok((unsigned char) s[i])) {
            return -1;
        }
    }

    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}


int
pb_payload_check(json_t *root, pb_payload_t *payload, const char **reason)
{
    json_t  *v;

    if (!json_is_object(root)) {
        *reason = "payload must be a json object";
        return -1;
    }

    v = json_object_get(root, "containerId");
    if (v == NULL) {
        *reason = "missing containerId";
        return -1;
    }

    if (pb_id_from_json(v, payload->container_id) != 0) {
        *reason = "containerId must be a non-empty id string or an integer";
        return -1;
    }

    v = json_object_get(root, "agentId");
    if (v == NULL) {
        *reason = "missing agentId";
        return -1;
    }

    if (pb_id_from_json(v, payload->agent_id) != 0) {
        *reason = "agentId must be a non-empty id string or an integer";
        return -1;
    }

    v = json_object_get(root, "exitCode");
    if (v == NULL) {
        *reason = "missing exitCode";
        return -1;
    }

    if (!json_is_integer(v)) {
        *reason = "exitCode must be an integer";
        return -1;
    }

    payload->exit_code = json_integer_value(v);

    v = json_object_get(root, "exitMessage");
    if (v == NULL) {
        *reason = "missing exitMessage";
        return -1;
    }

    if (!json_is_string(v)) {
        *reason = "exitMessage must be a string";
        return -1;
    }

    payload->exit_message = json_string_value(v);
    payload->root = json_incref(root);

    return 0;
}


static const char *
pb_json_error_reason(const json_error_t *error)
{
    switch (json_error_code(error)) {
    case json_error_invalid_utf8:
        return "invalid utf-8";
    case json_error_duplicate_key:
        return "duplicate key";
    case json_error_null_character:
        return "nul character in string";
    case json_error_numeric_overflow:
        return "number out of range";
    case json_error_premature_end_of_input:
        return "truncated json";
    case json_error_end_of_input_expected:
        return "trailing data after json";
    default:
        return "invalid json";
    }
}


int
pb_payload_parse(const char *data, size_t len, pb_payload_t *payload,
    const char **reason)
{
    int           rc;
    json_t       *root;
    json_error_t  error;

    memset(payload, 0, sizeof(*payload));

    if (len == 0) {
        *reason = "empty body";
        return -1;
    }

    if (pb_json_depth_exceeds(data, len, PB_PAYLOAD_MAX_DEPTH)) {
        *reason = "json nested too deeply";
        return -1;
    }

    /* DECODE_ANY so that a bare string or number gets a precise reason */
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                      &error);
    if (root == NULL) {
        *reason = pb_json_error_reason(&error);
        return -1;
    }

    rc = pb_payload_check(root, payload, reason);

    /* on success pb_payload_check holds its own reference */
    json_decref(root);

    return rc;
}


void
pb_payload_free(pb_payload_t *payload)
{
    json_decref(payload->root);
    payload->root = NULL;
    payload->exit_message = NULL;
}


int
pb_payload_succeeded(const pb_payload_t *payload)
{
    return payload->exit_code == 0
           && payload->exit_message != NULL
           && strcmp(payload->exit_message, "finished") == 0;
}
