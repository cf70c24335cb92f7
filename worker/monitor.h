/*
 * The safety net: runs whose webhook is late, launches in doubt (answer
 * lost, launcher dead), claims of dead workers.  One worker at a time
 * runs a pass (a Redis lock), every monitor interval; in --poll mode every
 * poll interval, checking every running container.
 */

#ifndef PB_MONITOR_H
#define PB_MONITOR_H

#include "ctx.h"

/* A pass if one is due; 0, or -1 when Redis failed. */
int pb_monitor_step(pb_ctx_t *ctx);

/* A full pass now, whatever the interval ("pbctl restart" uses it with
 * check_all so every running container is asked about). */
int pb_monitor_pass(pb_ctx_t *ctx, int check_all, const char *found_by);

/*
 * A launch call that came back without a usable answer (timeout, reset, a
 * gateway's 502/504, a 2xx without a containerId): puts the job in doubt
 * (pb_slot_doubt) and binds it at once if its webhook is already held.
 * It makes no API call: the monitor resolves the doubt from PhantomBuster
 * on its next passes (docs/worker.md).  0, or -1 when Redis failed.
 */
int pb_monitor_doubt(pb_ctx_t *ctx, const char *job_id, const char *token,
    const char *reason);

#endif /* PB_MONITOR_H */
