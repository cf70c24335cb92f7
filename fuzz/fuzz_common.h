/*
 * Invariant checks shared by the libFuzzer harnesses.  A failed check
 * aborts, which libFuzzer records as a crash with the input saved.
 */

#ifndef PB_FUZZ_COMMON_H
#define PB_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "pb_payload.h"

#define PB_FUZZ_ASSERT(cond, what)                                            \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", what,           \
                    __FILE__, __LINE__);                                      \
            abort();                                                          \
        }                                                                     \
    } while (0)


/*
 * Nesting depth of a decoded value: a scalar is 0, {} or [] is 1.
 * Recursive, bounded by jansson's own limit of 2048 levels.
 */
static inline int
pb_fuzz_depth(const json_t *v)  // NOLINT(misc-no-recursion): see above
{
    int          max = 0, d;
    size_t       i;
    const char  *key;
    json_t      *item;

    if (json_is_array(v)) {
        json_array_foreach(v, i, item) {
            d = pb_fuzz_depth(item);
            max = d > max ? d : max;
        }
        return max + 1;
    }

    if (json_is_object(v)) {
        /* json_object_foreach wants a non-const object */
        json_object_foreach((json_t *) v, key, item) {
            d = pb_fuzz_depth(item);
            max = d > max ? d : max;
        }
        return max + 1;
    }

    return 0;
}


static inline void
pb_fuzz_check_id(const char *id, const char *what)
{
    size_t  i, n = strnlen(id, PB_ID_MAX_LEN + 1);

    PB_FUZZ_ASSERT(n > 0, what);
    PB_FUZZ_ASSERT(n <= PB_ID_MAX_LEN, what);

    for (i = 0; i < n; i++) {
        unsigned char  ch = (unsigned char) id[i];

        PB_FUZZ_ASSERT((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
                       || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'
                       || ch == '.' || ch == ':', what);
    }
}


/*
 * Everything an accepted payload promises its users, whichever validator
 * accepted it: pb_envelope_parse (p->root is the tree) or pb_payload_parse
 * (no tree: root is jansson's reading of the same bytes).
 */
static inline void
pb_fuzz_check_payload(const pb_payload_t *p, json_t *root)
{
    char     again[PB_ID_MAX_LEN + 1];
    size_t   n;
    json_t  *v;

    PB_FUZZ_ASSERT(json_is_object(root), "accepted root is an object");
    PB_FUZZ_ASSERT(p->root == NULL || p->root == root, "root is the tree");
    PB_FUZZ_ASSERT(pb_fuzz_depth(root) <= PB_PAYLOAD_MAX_DEPTH,
                   "accepted payload within PB_PAYLOAD_MAX_DEPTH");

    pb_fuzz_check_id(p->container_id, "containerId is a plain id");
    pb_fuzz_check_id(p->agent_id, "agentId is a plain id");

    /* the normalised ids are what the fields say */
    v = json_object_get(root, "containerId");
    PB_FUZZ_ASSERT(pb_id_from_json(v, again) == 0
                   && strcmp(again, p->container_id) == 0,
                   "containerId normalises the same way twice");
    v = json_object_get(root, "agentId");
    PB_FUZZ_ASSERT(pb_id_from_json(v, again) == 0
                   && strcmp(again, p->agent_id) == 0,
                   "agentId normalises the same way twice");

    v = json_object_get(root, "exitCode");
    PB_FUZZ_ASSERT(json_is_integer(v)
                   && json_integer_value(v) == p->exit_code, "exitCode");

    v = json_object_get(root, "exitMessage");
    PB_FUZZ_ASSERT(json_is_string(v) && p->exit_message != NULL
                   && p->exit_message_len == json_string_length(v),
                   "exitMessage length");

    if (p->root != NULL) {
        PB_FUZZ_ASSERT(p->exit_message == json_string_value(v),
                       "exitMessage borrowed from root");
    } else {
        n = p->exit_message_len < PB_EXIT_MESSAGE_MAX
            ? p->exit_message_len : PB_EXIT_MESSAGE_MAX;
        PB_FUZZ_ASSERT(p->exit_message == p->exit_message_buf
                       && p->exit_message[n] == '\0'
                       && memcmp(p->exit_message, json_string_value(v), n)
                          == 0,
                       "exitMessage copied, cut at PB_EXIT_MESSAGE_MAX");
    }

    PB_FUZZ_ASSERT(pb_payload_succeeded(p)
                   == (p->exit_code == 0
                       && strcmp(json_string_value(v), "finished") == 0),
                   "pb_payload_succeeded");
}


/*
 * A rejection always comes with a reason fit for {"error":"<reason>"}:
 * static text, no quotes, backslashes or control bytes, never input bytes.
 */
static inline void
pb_fuzz_check_reason(const char *reason)
{
    const char  *s;

    PB_FUZZ_ASSERT(reason != NULL && reason[0] != '\0', "reason set");

    for (s = reason; *s != '\0'; s++) {
        PB_FUZZ_ASSERT((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')
                       || (*s >= '0' && *s <= '9')
                       || strchr(" ,-_.", *s) != NULL,
                       "reason is plain text");
    }
}

#endif /* PB_FUZZ_COMMON_H */
