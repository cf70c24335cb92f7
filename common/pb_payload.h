/*
 * PhantomBuster webhook payload validation.
 *
 * One implementation serves the nginx module (accept or reject a webhook),
 * the worker (trust nothing it pops) and the fuzzer.  Depends on jansson
 * and libc only; pb_payload_parse, the module's webhook path, uses libc
 * only: a single pass over the bytes that builds no tree and allocates
 * nothing for ordinary payloads.
 *
 * The rules, the same for pb_payload_parse and for jansson's json_loadb
 * (JSON_REJECT_DUPLICATES) followed by pb_payload_check, which the worker
 * uses through pb_envelope_parse (fuzz/fuzz_payload.c holds the two to
 * agreement):
 *
 *   - RFC 8259 JSON, one value and nothing but whitespace around it;
 *   - valid UTF-8 (no overlongs, surrogates or code points > U+10FFFF),
 *     \u escapes included (surrogates only as pairs);
 *   - no NUL: \u0000 is refused ("nul character in string"), raw control
 *     bytes < 0x20 inside strings are invalid json;
 *   - integers within json_int_t, reals within double ("number out of
 *     range");
 *   - objects and arrays nested at most PB_PAYLOAD_MAX_DEPTH levels;
 *   - duplicate keys refused in every object, at every level, keys being
 *     compared after unescaping ("a" and "\u0061" are the same key);
 *   - the top level is an object with containerId, agentId (ids, see
 *     pb_id_from_json), exitCode (an integer: no fraction or exponent)
 *     and exitMessage (a string).
 */

#ifndef PB_PAYLOAD_H
#define PB_PAYLOAD_H

#include <stddef.h>
#include <jansson.h>

/* Deepest nesting of objects/arrays accepted in a payload. */
#define PB_PAYLOAD_MAX_DEPTH   32

/* Longest containerId / agentId accepted, as text. */
#define PB_ID_MAX_LEN          64

/* Longest exitMessage pb_payload_parse keeps a copy of (see below). */
#define PB_EXIT_MESSAGE_MAX    63

typedef struct {
    json_t      *root;              /* pb_payload_check: the payload object
                                       (owned); pb_payload_parse: NULL */
    char         container_id[PB_ID_MAX_LEN + 1];
    char         agent_id[PB_ID_MAX_LEN + 1];
    json_int_t   exit_code;

    /*
     * pb_payload_check: borrowed from root, whole.  pb_payload_parse:
     * points at exit_message_buf, a NUL-terminated copy of the first
     * PB_EXIT_MESSAGE_MAX bytes (a longer value is accepted and cut,
     * possibly inside a character: the module needs none of it), so a
     * parsed pb_payload_t must not be copied by value.
     */
    const char  *exit_message;
    size_t       exit_message_len;  /* the whole value's length, unescaped */
    char         exit_message_buf[PB_EXIT_MESSAGE_MAX + 1];
} pb_payload_t;

/*
 * Validates a webhook body without building a tree (root stays NULL).
 * On success returns 0 and fills *payload (pb_payload_free is a no-op on
 * it but harmless).  On failure returns -1, leaves
 * nothing to free and points *reason at a static, stable, lowercase
 * message fit for {"error":"<reason>"} (it never contains input bytes).
 */
int pb_payload_parse(const char *data, size_t len, pb_payload_t *payload,
    const char **reason);

/*
 * Validates an already parsed object; takes a new reference to it on
 * success.  Same contract as pb_payload_parse otherwise.
 */
int pb_payload_check(json_t *root, pb_payload_t *payload, const char **reason);

void pb_payload_free(pb_payload_t *payload);

/*
 * Normalises an id field (a non-empty string of [A-Za-z0-9_.:-], at most
 * PB_ID_MAX_LEN bytes, or a non-negative integer) into out.  Returns 0 or
 * -1 when the value is not an acceptable id.
 */
int pb_id_from_json(const json_t *value, char out[PB_ID_MAX_LEN + 1]);

/*
 * 1 when the JSON text nests objects/arrays deeper than max_depth (a scan
 * that needs no parse; brackets inside strings do not count).
 */
int pb_json_depth_exceeds(const char *data, size_t len, int max_depth);

/* 1 for the characters of an id: [A-Za-z0-9_.:-]. */
int pb_id_char_ok(unsigned char ch);

/* 1 when exitCode is 0 and exitMessage is "finished". */
int pb_payload_succeeded(const pb_payload_t *payload);

#endif /* PB_PAYLOAD_H */
