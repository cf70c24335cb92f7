/*
 * Backoff arithmetic.  See backoff.h.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <curl/curl.h>

#include "backoff.h"
#include "log.h"


int64_t
pb_backoff_ceiling(int64_t base_ms, int64_t cap_ms, unsigned level)
{
    int64_t  ceiling = base_ms;

    while (level-- > 0 && ceiling < cap_ms) {
        ceiling *= 2;
    }

    return ceiling < cap_ms ? ceiling : cap_ms;
}


int64_t
pb_backoff_full_jitter(int64_t base_ms, int64_t cap_ms, unsigned level,
    uint64_t r)
{
    int64_t  ceiling = pb_backoff_ceiling(base_ms, cap_ms, level);

    return (int64_t) (r % (uint64_t) (ceiling + 1));
}


int64_t
pb_retry_after_ms(const char *value, int64_t now_ms, int64_t cap_ms)
{
    const char  *p;
    char        *end;
    long long    seconds;
    time_t       date;
    int64_t      ms;

    if (value == NULL) {
        return -1;
    }

    while (isspace((unsigned char) *value)) {
        value++;
    }

    if (isdigit((unsigned char) *value)) {
        seconds = strtoll(value, &end, 10);
        for (p = end; isspace((unsigned char) *p); p++) { /* trailing */ }
        if (*p != '\0' || seconds < 0) {
            return -1;
        }
        ms = seconds > cap_ms / 1000 ? cap_ms : (int64_t) seconds * 1000;

    } else {
        date = curl_getdate(value, NULL);
        if (date == -1) {
            return -1;
        }
        ms = (int64_t) date * 1000 - now_ms;
        ms = ms < 0 ? 0 : ms;
    }

    return ms < cap_ms ? ms : cap_ms;
}


uint64_t
pb_random64(void)
{
    static uint64_t  counter;
    uint64_t         r;

    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t) sizeof(r)) {
        return r;
    }

    /* splitmix64 over time and a counter: jitter only needs spread */
    r = (uint64_t) pb_now_ms() + 0x9e3779b97f4a7c15ULL * ++counter;
    r = (r ^ (r >> 30)) * 0xbf58476d1ce4e5b9ULL;
    r = (r ^ (r >> 27)) * 0x94d049bb133111ebULL;

    return r ^ (r >> 31);
}
