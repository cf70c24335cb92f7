/*
 * The queue's status, computed in Redis by one Lua script, so that every
 * reader (the module's phantombuster_status location, pbctl status) shows
 * the same thing by construction; and the Prometheus text of the worker's
 * side (the module's phantombuster_metrics location), from a second script
 * over the same keys.  Both scripts only read.  Depends on libc only.
 *
 * Run either as EVALSHA/EVAL <script> PB_STATUS_NKEYS <keys...> <args...>
 * with the keys from pb_status_keys() and the arguments pb_status_argv.
 *
 * pb_lua_status returns one JSON object (text); the fields are described
 * in docs/status.md.  pb_lua_metrics returns Prometheus text format lines
 * (docs/metrics.md).
 */

#ifndef PB_STATUS_H
#define PB_STATUS_H

#include <stddef.h>

#include "pb_keys.h"

#define PB_STATUS_NKEYS     16
#define PB_STATUS_NARGS     7

/* Longest webhook queue name the key builder takes. */
#define PB_STATUS_QUEUE_MAX 512

/* What the status shows: the first pending jobs, dead letters, recent
 * completions; a run this long past its deadline is "stuck"; the ETA is
 * exact for this many pending jobs and estimated beyond. */
#define PB_STATUS_PENDING   "20"
#define PB_STATUS_DEAD      "10"
#define PB_STATUS_RECENT    "10"
#define PB_STATUS_STUCK_MS  "60000"
#define PB_STATUS_ETA_JOBS  "500"

typedef struct {
    const char  *keys[PB_STATUS_NKEYS + 1];     /* NULL-terminated */
    char         queue[PB_STATUS_QUEUE_MAX + 1];
    char         invalid[PB_STATUS_QUEUE_MAX + sizeof(PB_INVALID_SUFFIX)];
} pb_status_keys_t;

/*
 * Fills k->keys for the webhook queue (not NUL-terminated: len bytes).
 * Returns 0, or -1 when the name is longer than PB_STATUS_QUEUE_MAX.
 */
int pb_status_keys(pb_status_keys_t *k, const char *queue, size_t len);

/* The scripts' ARGV, NULL-terminated. */
extern const char  *const pb_status_argv[PB_STATUS_NARGS + 1];

extern const char  pb_lua_status[];
extern const char  pb_lua_metrics[];

#endif /* PB_STATUS_H */
