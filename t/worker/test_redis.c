/*
 * The reconnecting Redis connection (worker/redis_util.c) against a
 * redis-server of its own (TCP and a Unix socket, a password, 4 databases):
 * URL forms and errors, AUTH and SELECT, error replies, scripts Redis
 * forgot, and a Redis that goes away and comes back.
 */

#include <netinet/in.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "redis_util.h"
#include "testlib.h"

static char  dir[] = "/tmp/pb-test-redis.XXXXXX";
static int   port;


static int
free_port(void)
{
    int                 fd = socket(AF_INET, SOCK_STREAM, 0), p = 0;
    socklen_t           len = sizeof(struct sockaddr_in);
    struct sockaddr_in  sa;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0
        && getsockname(fd, (struct sockaddr *) &sa, &len) == 0)
    {
        p = ntohs(sa.sin_port);
    }
    close(fd);

    return p;
}


static void
sleep_ms(long ms)
{
    struct timespec  ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}


/* Starts (or restarts) the server; 0 once it answers. */
static int
server_start(void)
{
    char  cmd[1024];
    int   i;

    snprintf(cmd, sizeof(cmd), "redis-server --port %d --bind 127.0.0.1 "
             "--unixsocket %s/r.sock --requirepass pw --databases 4 "
             "--save '' --appendonly no --daemonize yes --dir %s "
             "--pidfile %s/r.pid --logfile %s/r.log", port, dir, dir, dir,
             dir);
    if (system(cmd) != 0) {
        return -1;
    }

    snprintf(cmd, sizeof(cmd), "redis-cli -s %s/r.sock -a pw --no-auth-warning"
             " ping >/dev/null 2>&1", dir);
    for (i = 0; i < 100; i++) {
        if (system(cmd) == 0) {
            return 0;
        }
        sleep_ms(50);
    }

    return -1;
}


static void
server_stop(void)
{
    char  cmd[512];

    snprintf(cmd, sizeof(cmd), "redis-cli -s %s/r.sock -a pw "
             "--no-auth-warning shutdown nosave >/dev/null 2>&1", dir);
    if (system(cmd) != 0) {
        /* already gone */
    }
}


static pb_redis_t *
open_url(const char *fmt, ...)
{
    char     url[512], err[256];
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(url, sizeof(url), fmt, ap);
    va_end(ap);

    return pb_redis_open(url, 2000, err, sizeof(err));
}


static int
url_refused(const char *url, const char *words)
{
    char         err[256] = "";
    pb_redis_t  *r = pb_redis_open(url, 1000, err, sizeof(err));

    pb_redis_close(r);

    return r == NULL && strstr(err, words) != NULL;
}


static void
test_urls(void)
{
    char  url[400];

    CHECK(url_refused("http://h", "unknown scheme"), "another scheme");
    CHECK(url_refused("unix://", "bad socket path"), "no socket path");
    CHECK(url_refused("unix:///tmp/s?db=x", "bad db"), "a bad unix db");
    CHECK(url_refused("redis://", "bad host"), "no host");
    CHECK(url_refused("redis://h:99999/0", "bad host or port"), "port range");
    CHECK(url_refused("redis://h:x/0", "bad host or port"), "port: a word");
    CHECK(url_refused("redis://h/x", "bad db"), "db not a number");

    memset(url, 'p', sizeof(url) - 1);
    url[sizeof(url) - 1] = '\0';
    memcpy(url, "redis://:", 9);
    url[sizeof(url) - 3] = '@';
    url[sizeof(url) - 2] = 'h';
    CHECK(url_refused(url, "bad user or password"), "a password too long");
    CHECK(url_refused("redis://u:p%4@h", "bad %-escape"),
          "a %-escape cut short");
    CHECK(url_refused("redis://u:p%zz@h", "bad %-escape"),
          "a %-escape that is not hex");
    CHECK(url_refused("redis://u:p%00@h", "bad %-escape"), "an escaped NUL");
}


static int
ping(pb_redis_t *r)
{
    redisReply  *reply = pb_redis_cmd(r, "PING");
    int          ok = reply != NULL && reply->type == REDIS_REPLY_STATUS;

    freeReplyObject(reply);

    return ok;
}


static void
test_auth_and_db(void)
{
    pb_redis_t   *r;
    redisReply   *reply;

    r = open_url("unix://%s/r.sock", dir);
    CHECK(r != NULL && pb_redis_cmd(r, "PING") == NULL
          && pb_redis_connected(r),
          "no password: the error reply is NULL, the connection stays");
    pb_redis_close(r);

    r = open_url("redis://:wrong@127.0.0.1:%d/0", port);
    CHECK(r != NULL && !ping(r) && !pb_redis_connected(r),
          "a wrong password: not connected");
    pb_redis_close(r);

    r = open_url("redis://:pw@127.0.0.1:%d/9", port);
    CHECK(r != NULL && !ping(r) && !pb_redis_connected(r),
          "a database that does not exist: not connected");
    pb_redis_close(r);

    r = open_url("redis://default:pw@127.0.0.1:%d/2", port);
    CHECK(r != NULL && ping(r), "the default user, its password and db 2");
    freeReplyObject(pb_redis_cmd(r, "SET k in-db-2"));

    /* a Redis 6 ACL user whose password holds ':', '@' and '/' */
    reply = pb_redis_cmd(r, "ACL SETUSER pb-acl on >a:b@c/d ~* &* +@all");
    CHECK(reply != NULL && reply->type == REDIS_REPLY_STATUS,
          "an ACL user is made");
    freeReplyObject(reply);
    pb_redis_close(r);

    r = open_url("redis://pb-acl:a%%3Ab%%40c%%2Fd@127.0.0.1:%d/2", port);
    reply = r ? pb_redis_cmd(r, "ACL WHOAMI") : NULL;
    CHECK(reply != NULL && reply->type == REDIS_REPLY_STRING
          && strcmp(reply->str, "pb-acl") == 0,
          "user:password@ authenticates as that ACL user (%-escapes decoded)");
    freeReplyObject(reply);
    pb_redis_close(r);

    r = open_url("redis://pb-acl:pw@127.0.0.1:%d/2", port);
    CHECK(r != NULL && !ping(r) && !pb_redis_connected(r),
          "the default user's password is not that user's: not connected");
    pb_redis_close(r);

    r = open_url("redis://nobody:pw@127.0.0.1:%d/2", port);
    CHECK(r != NULL && !ping(r), "a user Redis does not know: not connected");
    pb_redis_close(r);

    r = open_url("redis://:pw@127.0.0.1:%d", port);
    reply = r ? pb_redis_cmd(r, "EXISTS k") : NULL;
    CHECK(reply != NULL && reply->integer == 0, "db 0 is another database");
    freeReplyObject(reply);
    pb_redis_close(r);
}


static pb_script_t  incr_script = { "incr", "return redis.call('INCR', "
                                    "KEYS[1]) + tonumber(ARGV[1])", "" };
static pb_script_t  bad_script = { "bad", "return redis.call('LPUSH', "
                                   "KEYS[1], 'x')", "" };


static long long
incr(pb_redis_t *r)
{
    const char  *keys[] = { "n", NULL }, *args[] = { "100", NULL };
    long long    n = -1;
    redisReply  *reply = pb_redis_eval(r, &incr_script, keys, args);

    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        n = reply->integer;
    }
    freeReplyObject(reply);

    return n;
}


static void
test_scripts(pb_redis_t *r)
{
    const char  *keys[] = { "n", NULL };     /* a string: LPUSH fails */

    CHECK(incr(r) == 101, "a script loads and runs");
    freeReplyObject(pb_redis_cmd(r, "SCRIPT FLUSH"));
    CHECK(incr(r) == 102, "after SCRIPT FLUSH it is loaded again");
    CHECK(pb_redis_eval(r, &bad_script, keys, NULL) == NULL
          && pb_redis_connected(r), "a script error is NULL, still connected");
    CHECK(pb_redis_time_ms(r) > 1500000000000LL, "Redis's clock in ms");
}


static void
test_outage(pb_redis_t *r)
{
    int  i, back = 0;

    server_stop();
    CHECK(!ping(r) && !pb_redis_connected(r), "Redis gone: NULL, dropped");

    CHECK(server_start() == 0, "Redis back");
    for (i = 0; i < 40 && !back; i++) {
        sleep_ms(100);
        back = ping(r);
    }
    CHECK(back && pb_redis_connected(r), "reconnected by itself (<= 4 s)");
    CHECK(incr(r) == 101, "its scripts are loaded again (Redis forgot them)");
}


int
main(void)
{
    char         cmd[128];
    pb_redis_t  *r;

    test_setup("test_redis");

    if (mkdtemp(dir) == NULL || (port = free_port()) == 0
        || server_start() != 0)
    {
        fprintf(stderr, "test_redis: cannot start redis-server in %s\n", dir);
        CHECK(0, "redis-server starts");
        return CHECK_DONE("test_redis");
    }

    test_urls();
    test_auth_and_db();

    r = open_url("redis://:pw@127.0.0.1:%d/1", port);
    test_scripts(r);
    test_outage(r);
    pb_redis_close(r);

    server_stop();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_redis: could not remove %s\n", dir);
    }

    return CHECK_DONE("test_redis");
}
