/*
 * libFuzzer harness: pb_payload_parse on arbitrary bytes, differentially.
 *
 * Every input is judged twice: by pb_payload_parse (the module's scanner)
 * and by the reference, jansson's tree + pb_payload_check (what the worker
 * applies through pb_envelope_parse; pb_payload_ref.h).  They must agree
 * on accept or reject; on accept, on the normalised fields; on reject, on
 * the reason when either is about a field, on the class (malformed json)
 * otherwise: the two stop at the first fault each sees, and jansson scans
 * a string whole before decoding its escapes, the depth pre-scan runs
 * before the parse.  PB_FUZZ_STRICT_REASONS=1 wants every reason equal.
 *
 * One known divergence: jansson skips a raw NUL byte that follows a
 * number or a literal ("1\0," reads as "1,": its stream ungets the NUL
 * and then mistakes it for its own end of buffer).  A raw NUL is never
 * JSON, so the scanner must reject such an input and jansson is not asked.
 *
 * Accepted payloads must also keep every promise pb_payload.h makes (see
 * pb_fuzz_check_payload); rejections come with a plain reason.
 */

#include <stddef.h>
#include <stdint.h>
#include "fuzz_common.h"
#include "pb_payload.h"
#include "pb_payload_ref.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* 1 for the reasons about the json text rather than the four fields. */
static int
syntax_reason(const char *reason)
{
    static const char  *syntax[] = {
        "empty body", "invalid json", "truncated json",
        "trailing data after json", "invalid utf-8", "duplicate key",
        "nul character in string", "number out of range",
        "json nested too deeply", NULL
    };
    const char  **s;

    for (s = syntax; *s != NULL; s++) {
        if (strcmp(*s, reason) == 0) {
            return 1;
        }
    }

    return 0;
}


static void
disagree(const uint8_t *data, size_t size, const char *got, const char *ref,
    const char *what)
{
    fprintf(stderr, "scanner: %s\nreference: %s\ninput: %.*s\n",
            got ? got : "accepted", ref ? ref : "accepted",
            (int) (size > 300 ? 300 : size), (const char *) data);
    PB_FUZZ_ASSERT(0, what);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            rc, ref_rc;
    json_t        *tree;
    pb_payload_t   p, q;
    const char    *reason = NULL, *ref_reason = NULL;
    static int     strict = -1;

    if (strict < 0) {
        strict = getenv("PB_FUZZ_STRICT_REASONS") != NULL;
    }

    rc = pb_payload_parse((const char *) data, size, &p, &reason);

    if (memchr(data, '\0', size) != NULL) {
        PB_FUZZ_ASSERT(rc != 0 && p.root == NULL, "a raw NUL is refused");
        pb_fuzz_check_reason(reason);
        return 0;
    }

    ref_rc = pb_ref_parse((const char *) data, size, &q, &ref_reason);

    PB_FUZZ_ASSERT(p.root == NULL, "the scanner builds no tree");

    if (rc != ref_rc) {
        disagree(data, size, rc ? reason : NULL, ref_rc ? ref_reason : NULL,
                 "scanner and jansson agree on accept/reject");
    }

    if (rc != 0) {
        pb_fuzz_check_reason(reason);

        if (strcmp(reason, ref_reason) != 0
            && (strict || !syntax_reason(reason)
                || !syntax_reason(ref_reason)))
        {
            disagree(data, size, reason, ref_reason,
                     "scanner and jansson give the same reason");
        }

        return 0;
    }

    pb_fuzz_check_payload(&q, q.root);

    /* the scanner's fields against jansson's tree of the same bytes */
    tree = json_incref(q.root);
    pb_fuzz_check_payload(&p, tree);
    PB_FUZZ_ASSERT(strcmp(p.container_id, q.container_id) == 0
                   && strcmp(p.agent_id, q.agent_id) == 0
                   && p.exit_code == q.exit_code
                   && p.exit_message_len == q.exit_message_len,
                   "scanner and jansson normalise alike");

    pb_payload_free(&p);
    pb_payload_free(&q);
    json_decref(tree);
    PB_FUZZ_ASSERT(q.root == NULL, "free clears root");

    return 0;
}
