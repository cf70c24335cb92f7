/*
 * A minimal test harness for the project's C unit tests: CHECK records a
 * result instead of aborting, so one run reports every failure, and
 * CHECK_DONE prints the closing "N passed, N failed" line CI reads.
 */

#ifndef PB_CHECK_H
#define PB_CHECK_H

#include <stdio.h>

static int  check_passed, check_failed;

#define CHECK(cond, what)                                                     \
    do {                                                                      \
        if (cond) {                                                           \
            check_passed++;                                                   \
        } else {                                                              \
            check_failed++;                                                   \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, what);    \
        }                                                                     \
    } while (0)

#define CHECK_DONE(name)                                                      \
    (printf("%s: %d passed, %d failed\n", name, check_passed, check_failed), \
     check_failed == 0 ? 0 : 1)

#endif /* PB_CHECK_H */
