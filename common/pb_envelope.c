/*
 * The webhook envelope.  See pb_envelope.h.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "pb_envelope.h"


/*
 * Appends s as a JSON string literal.  Request ids are hex; a configured
 * queue name is escaped rather than trusted.  Bytes >= 0x80 pass through:
 * the caller guarantees UTF-8 (the module checks queue names at startup).
 */
static char *
pb_json_quote(char *p, const char *s, size_t len)
{
    static const char  hex[] = "0123456789abcdef";
    size_t             i;

    *p++ = '"';

    for (i = 0; i < len; i++) {
        unsigned char  ch = (unsigned char) s[i];

        if (ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = (char) ch;

        } else if (ch < 0x20 || ch == 0x7f) {
            *p++ = '\\';
            *p++ = 'u';
            *p++ = '0';
            *p++ = '0';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 0xf];

        } else {
            *p++ = (char) ch;
        }
    }

    *p++ = '"';

    return p;
}


size_t
pb_envelope_head(char *buf, size_t cap, const char *id, size_t id_len,
    int64_t received_at_ms, const char *queue, size_t queue_len)
{
    char  *p;
    int    n;

    if (cap < PB_ENVELOPE_HEAD_MAX(id_len, queue_len)) {
        return 0;
    }

    p = buf;
    memcpy(p, "{\"id\":", 6);
    p = pb_json_quote(p + 6, id, id_len);

    n = snprintf(p, cap - (size_t) (p - buf), ",\"received_at\":%" PRId64
                 ",\"queue\":", received_at_ms);
    p += n;

    p = pb_json_quote(p, queue, queue_len);
    memcpy(p, ",\"payload\":", 11);
    p += 11;

    return (size_t) (p - buf);
}


int
pb_envelope_parse(const char *data, size_t len, pb_envelope_t *envelope,
    const char **reason)
{
    json_t        *root, *id, *queue, *at, *payload;
    json_error_t   error;

    memset(envelope, 0, sizeof(*envelope));

    /* the envelope adds one level around the payload the module checked */
    if (pb_json_depth_exceeds(data, len, PB_PAYLOAD_MAX_DEPTH + 1)) {
        *reason = "json nested too deeply";
        return -1;
    }

    root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &error);
    if (root == NULL) {
        *reason = "envelope is not valid json";
        return -1;
    }

    id = json_object_get(root, "id");
    queue = json_object_get(root, "queue");
    at = json_object_get(root, "received_at");
    payload = json_object_get(root, "payload");

    if (!json_is_string(id) || !json_is_string(queue)
        || !json_is_integer(at) || payload == NULL)
    {
        *reason = "envelope lacks id, queue, received_at or payload";
        json_decref(root);
        return -1;
    }

    if (pb_payload_check(payload, &envelope->payload, reason) != 0) {
        json_decref(root);
        return -1;
    }

    envelope->root = root;
    envelope->id = json_string_value(id);
    envelope->queue = json_string_value(queue);
    envelope->received_at_ms = json_integer_value(at);

    return 0;
}


void
pb_envelope_free(pb_envelope_t *envelope)
{
    pb_payload_free(&envelope->payload);
    json_decref(envelope->root);
    envelope->root = NULL;
}
