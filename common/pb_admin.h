/*
 * Admin commands that arrive over HTTP (the module's phantombuster_admin
 * location): which ones are accepted, and the request pushed onto
 * PB_KEY_COMMANDS for pb-worker, which runs them (worker/commands.c, the
 * one implementation; the format is in docs/pbctl.md).  Depends on
 * jansson and libc only.
 */

#ifndef PB_ADMIN_H
#define PB_ADMIN_H

#include <stddef.h>

/* Longest job id (the worker's PB_JOB_ID_MAX) and command body. */
#define PB_ADMIN_ID_MAX     128
#define PB_ADMIN_BODY_MAX   4096

/*
 * Validates a command body, {"cmd": NAME[, "id": JOB]}, with NAME one of
 * dlq_retry (which needs the id), dlq_retry_all, pause, resume, drain and
 * restart, and builds the worker's request:
 *
 *   {"cmd":NAME[,"id":JOB],"request_id":REQUEST_ID,"by":BY}
 *
 * Only those fields are passed on.  Returns 0 and *out (free() it), or -1
 * with *reason, a static lowercase message fit for {"error":"<reason>"}.
 */
int pb_admin_command(const char *body, size_t len, const char *request_id,
    const char *by, char **out, const char **reason);

/* 1 when s is 1..PB_ADMIN_ID_MAX characters of [A-Za-z0-9_.:-]. */
int pb_admin_id_valid(const char *s, size_t len);

#endif /* PB_ADMIN_H */
