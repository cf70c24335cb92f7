/*
 * PhantomBuster webhook payload validation.
 *
 * One implementation serves the nginx module (accept or reject a webhook),
 * the worker (trust nothing it pops) and the fuzzer.  Depends on jansson
 * and libc only.
 */

#ifndef PB_PAYLOAD_H
#define PB_PAYLOAD_H

#include <stddef.h>
#include <jansson.h>

/* Deepest nesting of objects/arrays accepted in a payload. */
#define PB_PAYLOAD_MAX_DEPTH   32

/* Longest containerId / agentId accepted, as text. */
#define PB_ID_MAX_LEN          64

typedef struct {
    json_t      *root;              /* the payload object (owned) */
    char         container_id[PB_ID_MAX_LEN + 1];
    char         agent_id[PB_ID_MAX_LEN + 1];
    json_int_t   exit_code;
    const char  *exit_message;      /* borrowed from root */
} pb_payload_t;

/*
 * Parses and validates a webhook body.  On success returns 0 and fills
 * *payload (release with pb_payload_free).  On failure returns -1, leaves
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
