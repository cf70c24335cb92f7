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
 * One call pushes a whole batch, so that Redis pays a script call once
 * for every webhook that arrived in the same nginx event loop iteration.
 *
 * SET NX is the duplicate check and the marker in one: a redelivery of
 * something we already hold is answered "duplicate" even when the list is
 * full; a webhook refused as "full" takes its marker back, so that its
 * redelivery is pushed once there is room.  One LPUSH takes every envelope
 * of the batch, first one first, so the tail of the list stays the oldest.
 */
const char  pb_lua_push_webhooks[] =
    "local dedupe = tonumber(ARGV[1])\n"
    "local max = tonumber(ARGV[2])\n"
    "local len = 0\n"
    "if max > 0 then\n"
    "  len = redis.call('LLEN', KEYS[1])\n"
    "end\n"
    "local out, push = {}, {}\n"
    "for i = 1, #KEYS - 1 do\n"
    "  if dedupe > 0 and not redis.call('SET', KEYS[i + 1], ARGV[2 * i + 2],\n"
    "                                   'PX', dedupe, 'NX') then\n"
    "    out[i] = -1\n"
    "  elseif max > 0 and len + #push >= max then\n"
    "    if dedupe > 0 then\n"
    "      redis.call('DEL', KEYS[i + 1])\n"
    "    end\n"
    "    out[i] = -2\n"
    "  else\n"
    "    push[#push + 1] = ARGV[2 * i + 1]\n"
    "    out[i] = #push\n"
    "  end\n"
    "end\n"
    "if #push > 0 then\n"
    "  local total = redis.call('LPUSH', KEYS[1], unpack(push))\n"
    "  for i = 1, #out do\n"
    "    if out[i] > 0 then\n"
    "      out[i] = total - #push + out[i]\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";
