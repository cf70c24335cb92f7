/*
 * Crash testing for the worker's unit tests: the same work run again and
 * again in child processes, each SIGKILLed at a random moment, as a
 * supervisor restarting a worker that keeps dying would.  Each child has
 * a Redis connection of its own (a connection shared across fork would mix
 * replies) and the parent's worker id, so it finds its predecessor's
 * leftovers.
 */

#ifndef PB_TESTKILL_H
#define PB_TESTKILL_H

#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "testlib.h"

/* Work of a child: runs until killed or there is nothing left. */
typedef void (*test_work_fn)(pb_ctx_t *ctx, void *arg);

/*
 * Forks up to rounds children running work(arg), each killed 0 to max_ms
 * after its start, while left(ctx) says work remains.  Returns how many
 * were killed (rather than done before the signal).
 */
static inline int
test_kill_loop(pb_ctx_t *ctx, int rounds, int max_ms, test_work_fn work,
    void *arg, long long (*left)(pb_ctx_t *ctx))
{
    int              i, kills = 0, status;
    pid_t            pid;
    struct timespec  ts;

    srand((unsigned) getpid());

    for (i = 0; i < rounds && left(ctx) > 0; i++) {
        pid = fork();
        if (pid == 0) {
            char      err[256];
            pb_ctx_t  child = *ctx;

            child.redis = pb_redis_open(test_cfg.redis_url, 5000, err,
                                        sizeof(err));
            work(&child, arg);
            _exit(0);
        }

        ts.tv_sec = 0;
        ts.tv_nsec = (long) (rand() % max_ms) * 1000000L;
        nanosleep(&ts, NULL);

        if (pid > 0 && kill(pid, SIGKILL) == 0) {
            kills++;
        }
        waitpid(pid, &status, 0);
    }

    return kills;
}

#endif /* PB_TESTKILL_H */
