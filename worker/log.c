/*
 * JSON-lines logging.  See log.h.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "log.h"

static const char      *log_program = "pb-worker";
static char             log_worker[128];
static pb_log_level_t   log_min = PB_LOG_INFO;

static const char  *level_names[] = { "debug", "info", "warn", "error" };


void
pb_log_init(const char *program, const char *worker_id,
    pb_log_level_t min_level)
{
    log_program = program;
    snprintf(log_worker, sizeof(log_worker), "%s", worker_id ? worker_id : "");
    log_min = min_level;
}


int
pb_log_level_parse(const char *name)
{
    int  i;

    for (i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            return i;
        }
    }

    return -1;
}


int64_t
pb_now_ms(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (int64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


void
pb_iso_time(int64_t ms, char out[64])
{
    /* the second's text, per thread: webhooks come many a second */
    static __thread time_t  last = -1;
    static __thread char    text[64];
    static __thread size_t  len;
    time_t                  sec = (time_t) (ms / 1000);
    struct tm               tm;
    int                     milli = (int) (ms % 1000);

    if (ms < 0) {
        /* before 1970 (never, in practice): the plain way */
        gmtime_r(&sec, &tm);
        snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, milli);
        return;
    }

    if (sec != last) {
        gmtime_r(&sec, &tm);
        len = (size_t) snprintf(text, sizeof(text),
                                "%04d-%02d-%02dT%02d:%02d:%02d",
                                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                                tm.tm_hour, tm.tm_min, tm.tm_sec);
        last = sec;
    }

    memcpy(out, text, len);
    out[len] = '.';
    out[len + 1] = (char) ('0' + milli / 100);
    out[len + 2] = (char) ('0' + milli / 10 % 10);
    out[len + 3] = (char) ('0' + milli % 10);
    out[len + 4] = 'Z';
    out[len + 5] = '\0';
}


void
pb_log(pb_log_level_t level, const char *msg, const char *fields_fmt, ...)
{
    char          ts[64];
    char         *line;
    json_t       *entry, *fields;
    va_list       ap;
    json_error_t  error;

    if (level < log_min) {
        return;
    }

    pb_iso_time(pb_now_ms(), ts);
    entry = json_pack("{s:s, s:s, s:s, s:s, s:s}", "ts", ts,
                      "level", level_names[level], "prog", log_program,
                      "worker", log_worker, "msg", msg);
    if (entry == NULL) {
        return;
    }

    if (fields_fmt != NULL) {
        va_start(ap, fields_fmt);
        fields = json_vpack_ex(&error, 0, fields_fmt, ap);
        va_end(ap);

        if (fields != NULL) {
            json_object_update(entry, fields);
            json_decref(fields);

        } else {
            json_object_set_new(entry, "log_error",
                                json_string(error.text));
        }
    }

    line = json_dumps(entry, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(entry);

    if (line != NULL) {
        /* one write per line, so lines of concurrent writers don't mix */
        size_t  len = strlen(line);

        line[len] = '\n';
        if (write(STDERR_FILENO, line, len + 1) < 0) {
            /* nowhere left to report it */
        }
        free(line);
    }
}
