/*
 * libFuzzer harness: pb_payload_parse on arbitrary bytes.
 *
 * Accepted payloads must keep every promise pb_payload.h makes (see
 * pb_fuzz_check_payload); rejections must come with a plain reason.  ASan
 * and UBSan catch memory and arithmetic errors on the way.
 */

#include <stddef.h>
#include <stdint.h>
#include "fuzz_common.h"
#include "pb_payload.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pb_payload_t  p;
    const char   *reason = NULL;

    if (pb_payload_parse((const char *) data, size, &p, &reason) == 0) {
        pb_fuzz_check_payload(&p);

        /* a second validation of the same tree agrees with the first */
        {
            pb_payload_t  q;
            const char   *r2 = NULL;

            PB_FUZZ_ASSERT(pb_payload_check(p.root, &q, &r2) == 0,
                           "accepted tree passes pb_payload_check");
            PB_FUZZ_ASSERT(strcmp(q.container_id, p.container_id) == 0
                           && strcmp(q.agent_id, p.agent_id) == 0,
                           "check agrees with parse");
            pb_payload_free(&q);
        }

        pb_payload_free(&p);
        PB_FUZZ_ASSERT(p.root == NULL, "free clears root");

    } else {
        pb_fuzz_check_reason(reason);
        PB_FUZZ_ASSERT(p.root == NULL, "nothing to free after a rejection");
    }

    return 0;
}
