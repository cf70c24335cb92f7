/*
 * The Redis key schema.  See pb_keys.h.
 */

#include <string.h>
#include "pb_keys.h"


size_t
pb_key_join(char *buf, size_t cap, const char *a, const char *infix,
    const char *b)
{
    size_t  la = strlen(a), li = strlen(infix), lb = strlen(b);

    if (la + li + lb + 1 > cap) {
        return 0;
    }

    memcpy(buf, a, la);
    memcpy(buf + la, infix, li);
    memcpy(buf + la + li, b, lb + 1);

    return la + li + lb;
}


/*
 * The duplicate check comes first so that a redelivery of something we
 * already hold is answered "duplicate" even when the list is full.
 */
const char  pb_lua_push_webhook[] =
    "if tonumber(ARGV[2]) > 0 and redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "  return -1\n"
    "end\n"
    "local max = tonumber(ARGV[3])\n"
    "if max > 0 and redis.call('LLEN', KEYS[1]) >= max then\n"
    "  return -2\n"
    "end\n"
    "if tonumber(ARGV[2]) > 0 then\n"
    "  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[2])\n"
    "end\n"
    "return redis.call('LPUSH', KEYS[1], ARGV[1])\n";
