/*
 * ns per pb_payload_parse of t/data/webhook-payload.json: the scanner
 * against the jansson tree it replaced (fuzz/pb_payload_ref.h).
 *
 *   cc -O2 -Icommon -Ifuzz bench/micro/payload_parse.c common/pb_payload.c \
 *       -ljansson -o build/payload_parse && build/payload_parse
 */

#include <stdio.h>
#include <time.h>
#include "pb_payload_ref.h"

#define N  1000000


static double
run(int (*parse)(const char *, size_t, pb_payload_t *, const char **),
    const char *buf, size_t n)
{
    int              i;
    const char      *reason;
    pb_payload_t     p;
    struct timespec  a, b;

    clock_gettime(CLOCK_MONOTONIC, &a);

    for (i = 0; i < N; i++) {
        if (parse(buf, n, &p, &reason) != 0) {
            fprintf(stderr, "rejected: %s\n", reason);
            return -1;
        }
        pb_payload_free(&p);
    }

    clock_gettime(CLOCK_MONOTONIC, &b);

    return ((double) (b.tv_sec - a.tv_sec) * 1e9
            + (double) (b.tv_nsec - a.tv_nsec)) / N;
}


int
main(int argc, char **argv)
{
    FILE    *f;
    char     buf[4096];
    size_t   n;

    f = fopen(argc > 1 ? argv[1] : "t/data/webhook-payload.json", "rb");
    if (f == NULL) {
        perror("payload");
        return 1;
    }
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);

    printf("%zu bytes: jansson tree %.0f ns/op, scanner %.0f ns/op\n", n,
           run(pb_ref_parse, buf, n), run(pb_payload_parse, buf, n));

    return 0;
}
