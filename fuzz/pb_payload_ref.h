/*
 * The reference pb_payload_parse: jansson's tree, as the module did before
 * the scanner (and as the worker still does through pb_envelope_parse).
 * The differential harness and the micro-benchmark hold the scanner to it.
 */

#ifndef PB_PAYLOAD_REF_H
#define PB_PAYLOAD_REF_H

#include <string.h>
#include <jansson.h>
#include "pb_payload.h"


static inline const char *
pb_ref_reason(const json_error_t *error)
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


/* Same contract as pb_payload_parse; on success payload->root is set. */
static inline int
pb_ref_parse(const char *data, size_t len, pb_payload_t *payload,
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
        *reason = pb_ref_reason(&error);
        return -1;
    }

    rc = pb_payload_check(root, payload, reason);
    json_decref(root);

    return rc;
}

#endif /* PB_PAYLOAD_REF_H */
