/*
 * A hiredis (0.14, synchronous) connection that reconnects on its own, and
 * the Lua script runner every multi-key change goes through.
 *
 * Every call returns NULL on an I/O error (the connection is dropped and
 * re-established by the next call) and on an error reply (logged with the
 * script's name), so callers test one thing.
 */

#ifndef PB_REDIS_UTIL_H
#define PB_REDIS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

typedef struct pb_redis_s  pb_redis_t;

/* A script: its text and the SHA1 Redis gave it (filled on first use). */
typedef struct {
    const char  *name;
    const char  *body;
    char         sha[41];
} pb_script_t;

/*
 * Parses url (redis://[:password@]host[:port][/db], unix:///path[?db=N]
 * or a bare /path) and connects.  A Redis that is down is not an error
 * here: the first command reconnects.  NULL with err on a malformed URL.
 * command_timeout_ms must exceed the longest blocking command's timeout.
 */
pb_redis_t *pb_redis_open(const char *url, int64_t command_timeout_ms,
    char *err, size_t err_len);

void pb_redis_close(pb_redis_t *r);

/*
 * Does not log this connection's outages (lost, failed, back): for a
 * second connection of a process whose first one reports them, once.
 */
void pb_redis_quiet(pb_redis_t *r);

/* 1 when the last call reached Redis (its reply may still be an error). */
int pb_redis_connected(const pb_redis_t *r);

redisReply *pb_redis_cmd(pb_redis_t *r, const char *fmt, ...);

/*
 * A pipeline: the n commands (argvs[i] a NULL-terminated argument list)
 * go in one write and their replies come back in replies[0..n), one round
 * trip for all.  0, or -1 (nothing in replies) when Redis failed or any
 * reply is an error (logged).
 */
int pb_redis_pipeline(pb_redis_t *r, size_t n, const char **const *argvs,
    redisReply **replies);

/*
 * Commands written in Redis's protocol by hand, into one buffer, for a
 * pipeline of big arguments (hundreds of audit rows): hiredis formats an
 * argument list by growing a string argument by argument, then copies it
 * all once more.  pb_resp_cmd starts a command of argc words, each then
 * given by pb_resp_arg (len bytes) or pb_resp_str (a C string).  Out of
 * memory is remembered and reported by pb_redis_send.
 */
typedef struct {
    char    *buf;
    size_t   len;
    size_t   cap;
    size_t   cmds;
    int      failed;
} pb_resp_t;

void pb_resp_init(pb_resp_t *b, size_t cap);
void pb_resp_free(pb_resp_t *b);
void pb_resp_cmd(pb_resp_t *b, size_t argc);
void pb_resp_arg(pb_resp_t *b, const char *s, size_t len);
void pb_resp_str(pb_resp_t *b, const char *s);

/*
 * Sends the commands of b in one write and reads n replies into replies,
 * like pb_redis_pipeline (what names them in the log).  n is b->cmds but
 * for commands that do not answer (between CLIENT REPLY OFF and ON).
 */
int pb_redis_send(pb_redis_t *r, const pb_resp_t *b, size_t n,
    const char *what, redisReply **replies);

/*
 * EVALSHA with the keys and args (NULL-terminated string arrays), loading
 * the script first when Redis does not know it (first use, Redis restarted
 * or flushed).
 */
redisReply *pb_redis_eval(pb_redis_t *r, pb_script_t *script,
    const char **keys, const char **args);

/*
 * A mutual-exclusion lease: taken when free or already held by owner (a
 * restarted worker of the same id), for ttl_ms; released only if ours.
 */
int pb_redis_lock(pb_redis_t *r, const char *key, const char *owner,
    int64_t ttl_ms);
void pb_redis_unlock(pb_redis_t *r, const char *key, const char *owner);

/* Redis's clock in ms (the clock every script uses), or -1. */
int64_t pb_redis_time_ms(pb_redis_t *r);

/* Reply helpers: element i of an array reply as a string / integer. */
const char *pb_reply_str(const redisReply *reply, size_t i);
long long pb_reply_int(const redisReply *reply, size_t i, long long def);

#endif /* PB_REDIS_UTIL_H */
