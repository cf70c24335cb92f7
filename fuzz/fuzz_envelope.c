/*
 * libFuzzer harness for the envelope (common/pb_envelope.[ch]).
 *
 * Every input is used twice:
 *
 * 1. As an envelope popped from Redis: pb_envelope_parse on the raw bytes;
 *    an accepted envelope must carry string id/queue and a payload that
 *    keeps every payload invariant.
 *
 * 2. As the pieces of an envelope the module would build:
 *
 *      byte 0      id length (mod 48)      byte 1   queue length (mod 48)
 *      bytes 2-9   received_at (int64, host order)
 *      then        id bytes, queue bytes, and the rest as the payload
 *
 *    The head is written into a heap buffer of exactly
 *    PB_ENVELOPE_HEAD_MAX bytes, so that ASan sees any overrun, and one
 *    byte short must be refused.  When the id and queue are what the
 *    callers guarantee (UTF-8 without NUL: request ids are hex, queue names
 *    are checked at startup), head + payload + tail must parse back to the
 *    same id, queue, received_at and payload.  The payload is the rest of
 *    the input when pb_payload_parse accepts it, else a fixed real one.
 *
 * An accepted envelope's payload nests no deeper than the module accepts
 * (fuzz/repro/envelope-deep-payload once broke that).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_common.h"
#include "pb_envelope.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  sample_payload[] =
    "{\"agentId\":4717388215573025,\"agentName\":\"acme\","
    "\"containerId\":\"7583362109412873\",\"script\":\"x.js\","
    "\"exitCode\":0,\"exitMessage\":\"finished\",\"resultObject\":\"[]\"}";


/* Strict UTF-8 as jansson checks it: no overlongs, surrogates or > 10FFFF. */
static int
utf8_ok(const uint8_t *s, size_t n)
{
    size_t  i = 0;

    while (i < n) {
        uint32_t  c = s[i], min;
        size_t    k, need;

        if (c == 0) {
            return 0;
        }

        if (c < 0x80) {
            i++;
            continue;
        }

        if ((c & 0xe0) == 0xc0) {
            need = 1; c &= 0x1f; min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2; c &= 0x0f; min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3; c &= 0x07; min = 0x10000;
        } else {
            return 0;
        }

        if (i + need >= n) {
            return 0;
        }

        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            c = (c << 6) | (s[i + k] & 0x3f);
        }

        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
            return 0;
        }

        i += need + 1;
    }

    return 1;
}


static void
check_envelope(const pb_envelope_t *e)
{
    PB_FUZZ_ASSERT(e->root != NULL && e->id != NULL && e->queue != NULL,
                   "accepted envelope has id and queue");
    PB_FUZZ_ASSERT(json_is_object(e->root), "envelope is an object");
    PB_FUZZ_ASSERT(json_object_get(e->root, "payload") == e->payload.root,
                   "payload validated in place");
    pb_fuzz_check_payload(&e->payload, e->payload.root);
}


static void
parse_raw(const uint8_t *data, size_t size)
{
    pb_envelope_t  e;
    const char    *reason = NULL;

    if (pb_envelope_parse((const char *) data, size, &e, &reason) == 0) {
        check_envelope(&e);
        pb_envelope_free(&e);
        PB_FUZZ_ASSERT(e.root == NULL, "free clears root");

    } else {
        pb_fuzz_check_reason(reason);
    }
}


static void
round_trip(const uint8_t *data, size_t size)
{
    size_t         id_len, queue_len, cap, head_len, pay_len, env_len;
    int64_t        at;
    const char    *id, *queue, *pay, *reason = NULL;
    char          *head, *env;
    json_t        *tree;
    pb_payload_t   alone;
    pb_envelope_t  e;

    if (size < 10) {
        return;
    }

    id_len = data[0] % 48;
    queue_len = data[1] % 48;
    memcpy(&at, data + 2, sizeof(at));
    data += 10;
    size -= 10;

    if (id_len + queue_len > size) {
        return;
    }

    id = (const char *) data;
    queue = id + id_len;
    pay = queue + queue_len;
    pay_len = size - id_len - queue_len;

    /* exactly the documented bound, on the heap so that ASan sees overruns */
    cap = PB_ENVELOPE_HEAD_MAX(id_len, queue_len);
    head = malloc(cap);
    PB_FUZZ_ASSERT(head != NULL, "malloc");

    PB_FUZZ_ASSERT(pb_envelope_head(head, cap - 1, id, id_len, at, queue,
                                    queue_len) == 0,
                   "a buffer below PB_ENVELOPE_HEAD_MAX is refused");

    head_len = pb_envelope_head(head, cap, id, id_len, at, queue, queue_len);
    PB_FUZZ_ASSERT(head_len > 0 && head_len <= cap, "head fits its bound");

    if (!utf8_ok(data, id_len) || !utf8_ok(data + id_len, queue_len)) {
        free(head);
        return;
    }

    if (pb_payload_parse(pay, pay_len, &alone, &reason) != 0) {
        pay = sample_payload;
        pay_len = sizeof(sample_payload) - 1;
        PB_FUZZ_ASSERT(pb_payload_parse(pay, pay_len, &alone, &reason) == 0,
                       "sample payload accepted");
    }

    env_len = head_len + pay_len + PB_ENVELOPE_TAIL_LEN;
    env = malloc(env_len);
    PB_FUZZ_ASSERT(env != NULL, "malloc");
    memcpy(env, head, head_len);
    memcpy(env + head_len, pay, pay_len);
    memcpy(env + head_len + pay_len, PB_ENVELOPE_TAIL, PB_ENVELOPE_TAIL_LEN);

    reason = NULL;
    if (pb_envelope_parse(env, env_len, &e, &reason) != 0) {
        fprintf(stderr, "envelope rejected: %s\n%.*s\n", reason,
                (int) env_len, env);
        PB_FUZZ_ASSERT(0, "built envelope parses back");
    }

    check_envelope(&e);
    PB_FUZZ_ASSERT(strlen(e.id) == id_len && memcmp(e.id, id, id_len) == 0,
                   "id round trip");
    PB_FUZZ_ASSERT(strlen(e.queue) == queue_len
                   && memcmp(e.queue, queue, queue_len) == 0,
                   "queue round trip");
    PB_FUZZ_ASSERT(e.received_at_ms == at, "received_at round trip");
    PB_FUZZ_ASSERT(strcmp(e.payload.container_id, alone.container_id) == 0
                   && strcmp(e.payload.agent_id, alone.agent_id) == 0
                   && e.payload.exit_code == alone.exit_code,
                   "payload fields round trip");
    /* pb_payload_parse builds no tree: compare with jansson's own */
    tree = json_loadb(pay, pay_len, 0, NULL);
    PB_FUZZ_ASSERT(tree != NULL && json_equal(e.payload.root, tree),
                   "payload embedded verbatim");
    json_decref(tree);

    pb_envelope_free(&e);
    pb_payload_free(&alone);
    free(env);
    free(head);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_raw(data, size);
    round_trip(data, size);
    return 0;
}
