/*
 * The Redis key schema shared by the module and the worker.  Every key
 * name the product uses is built here, so that docs/redis-layout.md has
 * one place to agree with.  Depends on libc only.
 */

#ifndef PB_KEYS_H
#define PB_KEYS_H

#include <stddef.h>

#define PB_DEFAULT_QUEUE        "phantombuster:webhooks"
#define PB_KEY_PREFIX           "phantombuster:"

/*
 * "<queue>:seen:<containerId>": set (NX, with the dedupe window as TTL) by
 * the push script; its value is the request id of the first delivery.
 */
#define PB_SEEN_INFIX           ":seen:"

/* "<queue>:processing:<worker-id>": a consumer's in-flight envelopes. */
#define PB_PROCESSING_INFIX     ":processing:"

/*
 * Formats "<a><infix><b>" into buf.  Returns the length written (without
 * the NUL), or 0 when buf is too small.
 */
size_t pb_key_join(char *buf, size_t cap, const char *a, const char *infix,
    const char *b);

/*
 * The script the module runs for every accepted webhook, atomically:
 *
 *   KEYS[1] queue list, KEYS[2] seen marker
 *   ARGV[1] envelope, ARGV[2] dedupe window in ms (0: off),
 *   ARGV[3] max queue length (0: off), ARGV[4] request id
 *
 * Returns the new list length (> 0) when pushed, -1 when the containerId
 * was already seen inside the window (nothing pushed), -2 when the list is
 * full (nothing pushed, nothing marked).
 */
extern const char  pb_lua_push_webhook[];

#define PB_PUSH_DUPLICATE   (-1)
#define PB_PUSH_FULL        (-2)

#endif /* PB_KEYS_H */
