/*
 * What every step of the worker and every admin command works with.
 */

#ifndef PB_CTX_H
#define PB_CTX_H

#include <signal.h>

#include "api.h"
#include "config.h"
#include "redis_util.h"

typedef struct {
    const pb_config_t          *cfg;
    pb_redis_t                 *redis;
    pb_api_t                   *api;        /* NULL when no key is set */
    volatile sig_atomic_t      *stopping;   /* set by SIGTERM/SIGINT */
} pb_ctx_t;

#define PB_STOPPING(ctx)  ((ctx)->stopping != NULL && *(ctx)->stopping)

#endif /* PB_CTX_H */
