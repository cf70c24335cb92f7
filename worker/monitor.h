/*
 * The safety net: runs whose webhook is late, launches whose launcher died
 * or whose answer was lost, claims of dead workers.  One worker at a time
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
 * Settles a launch whose outcome is unknown: an early webhook completes
 * it, a running container of its agent that no job owns is bound to it;
 * otherwise a live launcher (launcher_alive) retries it, a dead one's job
 * waits, orphaned, for a webhook until its deadline.  0 or -1.
 */
int pb_monitor_reconcile(pb_ctx_t *ctx, const char *job_id,
    const char *token, const char *agent, int launcher_alive);

#endif /* PB_MONITOR_H */
