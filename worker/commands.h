/*
 * The admin commands, in one place for every caller: pbctl runs them
 * directly, and pb-worker runs the ones another application (the status
 * page) pushes onto the Redis command list.  A command is a JSON object
 * {"cmd": NAME, ...arguments}; its result is a JSON object.
 *
 *   status                          lane, counts, running jobs, workers,
 *                                   metrics
 *   list      set, limit            jobs of pending|retry|running|dead|done
 *   enqueue   agent, argument, priority, job_id, source
 *   dlq_list  limit
 *   dlq_retry id  |  dlq_retry_all  |  dlq_purge
 *   pause     by  |  resume  |  drain  by
 *   restart                         settle stuck runs after asking upstream
 */

#ifndef PB_COMMANDS_H
#define PB_COMMANDS_H

#include <jansson.h>

#include "ctx.h"

#define PB_CMD_OK       0
#define PB_CMD_FAILED   1   /* Redis or PhantomBuster failed */
#define PB_CMD_BADARGS  2   /* the request itself is wrong */

int pb_command_run(pb_ctx_t *ctx, const json_t *request, json_t **result,
    char *err, size_t err_len);

/*
 * Runs one command from the Redis command list, if any, and stores its
 * result under the request's "request_id" for an hour.  1 ran one, 0 none,
 * -1 Redis failed.
 */
int pb_commands_step(pb_ctx_t *ctx);

#endif /* PB_COMMANDS_H */
