/*
 * The envelope the module pushes for every accepted webhook:
 *
 *   {"id":"<request id>","received_at":<ms>,"queue":"<list>","payload":<body>}
 *
 * The payload is embedded byte for byte as received, so every field is kept
 * exactly as PhantomBuster sent it.  Depends on jansson and libc only.
 */

#ifndef PB_ENVELOPE_H
#define PB_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>
#include "pb_payload.h"

#define PB_ENVELOPE_TAIL      "}"
#define PB_ENVELOPE_TAIL_LEN  1

/*
 * Upper bound of the head's length for an id and queue name of the given
 * lengths (every byte may need a 6-byte \u escape).  The fixed text is 45
 * bytes and received_at up to 20 ("-9223372036854775808"); 80 leaves room
 * for snprintf's NUL.
 */
#define PB_ENVELOPE_HEAD_MAX(id_len, queue_len)                               \
    (80 + 6 * (id_len) + 6 * (queue_len))

/*
 * Writes the envelope's head, everything before the payload bytes, into
 * buf.  Returns the number of bytes written, or 0 when cap is too small.
 * The full envelope is head + payload + PB_ENVELOPE_TAIL.
 */
size_t pb_envelope_head(char *buf, size_t cap, const char *id, size_t id_len,
    int64_t received_at_ms, const char *queue, size_t queue_len);

typedef struct {
    json_t        *root;            /* the whole envelope (owned) */
    const char    *id;              /* borrowed from root */
    const char    *queue;           /* borrowed from root */
    int64_t        received_at_ms;
    pb_payload_t   payload;         /* validated payload (owns a ref) */
} pb_envelope_t;

/*
 * Parses an envelope popped from Redis and validates its payload with the
 * same rules the module applied.  Returns 0, or -1 with a static reason.
 */
int pb_envelope_parse(const char *data, size_t len, pb_envelope_t *envelope,
    const char **reason);

void pb_envelope_free(pb_envelope_t *envelope);

#endif /* PB_ENVELOPE_H */
