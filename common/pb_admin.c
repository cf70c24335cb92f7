/*
 * Admin commands over HTTP.  See pb_admin.h.
 */

#include <string.h>
#include <jansson.h>

#include "pb_admin.h"
#include "pb_payload.h"

static const struct {
    const char  *name;
    int          needs_id;
} pb_admin_commands[] = {
    { "dlq_retry", 1 },
    { "dlq_retry_all", 0 },
    { "pause", 0 },
    { "resume", 0 },
    { "drain", 0 },
    { "restart", 0 },
};


int
pb_admin_id_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > PB_ADMIN_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!pb_id_char_ok((unsigned char) s[i])) {
            return 0;
        }
    }

    return 1;
}


int
pb_admin_command(const char *body, size_t len, const char *request_id,
    const char *by, char **out, const char **reason)
{
    size_t       i, n;
    json_t      *root, *req = NULL, *v;
    const char  *name, *id = NULL;

    *out = NULL;

    if (len > PB_ADMIN_BODY_MAX) {
        *reason = "command too large";
        return -1;
    }

    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (root == NULL) {
        *reason = "invalid json";
        return -1;
    }

    if (!json_is_object(root)) {
        *reason = "command must be a json object";
        goto failed;
    }

    name = json_string_value(json_object_get(root, "cmd"));
    if (name == NULL) {
        *reason = "missing cmd";
        goto failed;
    }

    n = sizeof(pb_admin_commands) / sizeof(pb_admin_commands[0]);

    for (i = 0; i < n && strcmp(name, pb_admin_commands[i].name) != 0; i++) {
        /* find it */
    }

    if (i == n) {
        *reason = "unknown cmd (want dlq_retry, dlq_retry_all, pause, "
                  "resume, drain or restart)";
        goto failed;
    }

    if (pb_admin_commands[i].needs_id) {
        v = json_object_get(root, "id");
        id = json_string_value(v);

        if (id == NULL || !pb_admin_id_valid(id, json_string_length(v))) {
            *reason = "dlq_retry needs the id of a job";
            goto failed;
        }
    }

    req = json_pack("{s:s, s:s, s:s}", "cmd", name, "request_id",
                    request_id, "by", by);
    if (req == NULL || (id && json_object_set_new(req, "id",
                                                  json_string(id)) != 0))
    {
        /* by is not UTF-8, or memory ran out */
        *reason = "cannot build the command";
        goto failed;
    }

    *out = json_dumps(req, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (*out == NULL) {
        *reason = "out of memory";
        goto failed;
    }

    json_decref(req);
    json_decref(root);

    return 0;

failed:

    json_decref(req);
    json_decref(root);

    return -1;
}
