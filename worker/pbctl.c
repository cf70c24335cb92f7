/*
 * pbctl: the admin CLI.  Parses the command line into a command request,
 * runs it through commands.c (the same code pb-worker runs for requests
 * pushed into Redis), and prints the result as a table or --json.
 *
 * Exit status: 0 done, 1 it failed (Redis, PhantomBuster), 2 bad input.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>

#include "agent.h"
#include "commands.h"
#include "config.h"
#include "ctx.h"
#include "log.h"
#include "version.h"

static const char  usage_text[] =
    "usage: pbctl [--json] [--verbose] [flags] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  status                          lane, slots, counts, runs, workers\n"
    "  list [--state S] [--limit N]    jobs: pending (default), retry,\n"
    "                                  running, dead, done\n"
    "  enqueue --agent ID [--argument JSON] [--priority N] [--job-id ID]\n"
    "                                  add a job (existing job id: no-op)\n"
    "  dlq list [--limit N]            dead-lettered jobs\n"
    "  dlq retry ID | dlq retry-all    back in line, attempts reset\n"
    "  dlq purge                       forget every dead-lettered job\n"
    "  pause | resume                  stop / restart launching\n"
    "  drain [--no-wait] [--wait S]    stop launching, wait for the runs\n"
    "  restart                         settle stuck runs (asks PhantomBuster)\n"
    "  configure-agent --agent ID --webhook-url URL|-\n"
    "      [--max-parallelism N] [--dry-run]\n"
    "                                  point the agent's webhook at URL (its\n"
    "                                  ?secret= masked in the output; - reads\n"
    "                                  it from stdin), maxParallelism N (1)\n"
    "\n"
    "flags (each also an environment variable):\n";


typedef struct {
    int          json;
    int          verbose;       /* the JSON logs on stderr too */
    int          wait;          /* drain: wait for the running runs */
    int64_t      wait_ms;       /* drain: give up after (0 = never) */
    json_t      *request;
} pbctl_t;


static int
usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "pbctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see pbctl --help)\n");

    return PB_CMD_BADARGS;
}


/* "--name VALUE" or "--name=VALUE" at argv[*i]; NULL when it is not. */
static const char *
option(int argc, char **argv, int *i, const char *name, int *missing)
{
    size_t  n = strlen(name);

    if (strncmp(argv[*i], name, n) != 0) {
        return NULL;
    }

    if (argv[*i][n] == '=') {
        return argv[(*i)++] + n + 1;
    }

    if (argv[*i][n] != '\0') {
        return NULL;
    }

    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }

    *i += 2;

    return argv[*i - 1];
}


static int
parse_int(const char *text, long long min, long long max, long long *out)
{
    char  *end;

    errno = 0;
    *out = strtoll(text, &end, 10);

    return errno == 0 && end != text && *end == '\0' && *out >= min
           && *out <= max ? 0 : -1;
}


/* The options of one subcommand; each known name maps to a request field. */
typedef struct {
    const char  *flag;
    const char  *field;
    char         kind;          /* 's' text, 'i' integer, 'b' no value,
                                   'w' drain --wait (pbctl's own) */
    long long    min, max;
} subopt_t;


static int
parse_subopts(pbctl_t *ctl, int argc, char **argv, int i,
    const subopt_t *opts, const char *cmd)
{
    int           missing, k;
    long long     n;
    const char   *value;

    while (i < argc) {
        missing = 0;
        value = NULL;

        for (k = 0; opts != NULL && opts[k].flag != NULL; k++) {
            if (opts[k].kind == 'b') {
                if (strcmp(argv[i], opts[k].flag) == 0) {
                    value = argv[i++];
                    break;
                }
                continue;
            }
            value = option(argc, argv, &i, opts[k].flag, &missing);
            if (value != NULL || missing) {
                break;
            }
        }

        if (missing) {
            return usage_error("%s needs a value", opts[k].flag);
        }

        if (value == NULL) {
            fprintf(stderr, "pbctl: %s: unexpected argument \"%s\" "
                    "(see pbctl --help)\n", cmd, argv[i]);
            return PB_CMD_BADARGS;
        }

        if (opts[k].kind == 'w') {
            /* drain --wait S: pbctl's own, not the command's */
            if (parse_int(value, 0, 86400LL * 365, &n) != 0) {
                return usage_error("%s wants a number of seconds",
                                   opts[k].flag);
            }
            ctl->wait_ms = n * 1000;

        } else if (opts[k].kind == 'b') {
            json_object_set_new(ctl->request, opts[k].field, json_true());

        } else if (opts[k].kind == 'i') {
            if (parse_int(value, opts[k].min, opts[k].max, &n) != 0) {
                fprintf(stderr, "pbctl: %s: %s wants an integer in "
                        "%lld..%lld\n", cmd, opts[k].flag, opts[k].min,
                        opts[k].max);
                return PB_CMD_BADARGS;
            }
            json_object_set_new(ctl->request, opts[k].field, json_integer(n));

        } else {
            json_object_set_new(ctl->request, opts[k].field,
                                json_string(value));
        }
    }

    return PB_CMD_OK;
}


/*
 * configure-agent --webhook-url -: the URL (it holds the secret) from
 * stdin, so that it never shows in ps.
 */
static int
url_from_stdin(pbctl_t *ctl)
{
    char         line[4096];
    const char  *url;

    url = json_string_value(json_object_get(ctl->request, "webhook_url"));
    if (strcmp(url, "-") != 0) {
        return PB_CMD_OK;
    }

    if (fgets(line, sizeof(line), stdin) == NULL) {
        return usage_error("configure-agent: no URL on %s", "stdin");
    }
    line[strcspn(line, "\r\n")] = '\0';

    json_object_set_new(ctl->request, "webhook_url", json_string(line));

    return PB_CMD_OK;
}


static int
parse_command(pbctl_t *ctl, int argc, char **argv, int i)
{
    static const subopt_t  list_opts[] = {
        { "--state", "set", 's', 0, 0 },
        { "--limit", "limit", 'i', 1, 100000 },
        { NULL, NULL, 0, 0, 0 }
    };
    static const subopt_t  enqueue_opts[] = {
        { "--agent", "agent", 's', 0, 0 },
        { "--argument", "argument", 's', 0, 0 },
        { "--priority", "priority", 'i', -1000000, 1000000 },
        { "--job-id", "job_id", 's', 0, 0 },
        { NULL, NULL, 0, 0, 0 }
    };
    static const subopt_t  limit_opts[] = {
        { "--limit", "limit", 'i', 1, 100000 },
        { NULL, NULL, 0, 0, 0 }
    };
    static const subopt_t  drain_opts[] = {
        { "--wait", NULL, 'w', 0, 0 },
        { NULL, NULL, 0, 0, 0 }
    };
    static const subopt_t  configure_opts[] = {
        { "--agent", "agent", 's', 0, 0 },
        { "--webhook-url", "webhook_url", 's', 0, 0 },
        { "--max-parallelism", "max_parallelism", 'i', 1, 100 },
        { "--dry-run", "dry_run", 'b', 0, 0 },
        { NULL, NULL, 0, 0, 0 }
    };
    static const char  *simple[] = { "status", "pause", "resume", "restart",
                                     NULL };

    const char  *cmd = argv[i++], *sub;
    char         user[64];
    int          k;

    snprintf(user, sizeof(user), "pbctl:%s",
             getenv("USER") ? getenv("USER") : "?");

    for (k = 0; simple[k] != NULL; k++) {
        if (strcmp(cmd, simple[k]) == 0) {
            ctl->request = json_pack("{s:s, s:s}", "cmd", cmd, "by", user);
            return parse_subopts(ctl, argc, argv, i, NULL, cmd);
        }
    }

    if (strcmp(cmd, "list") == 0) {
        ctl->request = json_pack("{s:s}", "cmd", "list");
        return parse_subopts(ctl, argc, argv, i, list_opts, cmd);
    }

    if (strcmp(cmd, "enqueue") == 0) {
        ctl->request = json_pack("{s:s, s:s}", "cmd", "enqueue", "source",
                                 "pbctl");
        k = parse_subopts(ctl, argc, argv, i, enqueue_opts, cmd);
        if (k == PB_CMD_OK && json_object_get(ctl->request, "agent") == NULL) {
            return usage_error("enqueue: --agent ID is %s", "required");
        }
        return k;
    }

    if (strcmp(cmd, "configure-agent") == 0) {
        ctl->request = json_pack("{s:s}", "cmd", "configure_agent");
        k = parse_subopts(ctl, argc, argv, i, configure_opts, cmd);
        if (k == PB_CMD_OK
            && (json_object_get(ctl->request, "agent") == NULL
                || json_object_get(ctl->request, "webhook_url") == NULL))
        {
            return usage_error("configure-agent: --agent ID and "
                               "--webhook-url URL are %s", "required");
        }
        return k == PB_CMD_OK ? url_from_stdin(ctl) : k;
    }

    if (strcmp(cmd, "drain") == 0) {
        ctl->request = json_pack("{s:s, s:s}", "cmd", "drain", "by", user);
        ctl->wait = 1;
        if (i < argc && strcmp(argv[i], "--no-wait") == 0) {
            ctl->wait = 0;
            i++;
        }
        return parse_subopts(ctl, argc, argv, i, drain_opts, cmd);
    }

    if (strcmp(cmd, "dlq") == 0) {
        if (i >= argc) {
            return usage_error("dlq needs %s", "list, retry ID, retry-all or "
                               "purge");
        }
        sub = argv[i++];

        if (strcmp(sub, "list") == 0) {
            ctl->request = json_pack("{s:s}", "cmd", "dlq_list");
            return parse_subopts(ctl, argc, argv, i, limit_opts, "dlq list");
        }

        if (strcmp(sub, "retry") == 0) {
            if (i >= argc) {
                return usage_error("dlq retry needs a %s", "job id");
            }
            ctl->request = json_pack("{s:s, s:s}", "cmd", "dlq_retry", "id",
                                     argv[i++]);
            return parse_subopts(ctl, argc, argv, i, NULL, "dlq retry");
        }

        if (strcmp(sub, "retry-all") == 0 || strcmp(sub, "purge") == 0) {
            ctl->request = json_pack("{s:s}", "cmd", sub[0] == 'p'
                                     ? "dlq_purge" : "dlq_retry_all");
            return parse_subopts(ctl, argc, argv, i, NULL, "dlq");
        }

        return usage_error("unknown dlq command \"%s\"", sub);
    }

    return usage_error("unknown command \"%s\"", cmd);
}


/* ---- human output ---------------------------------------------------- */

static const char *
str(const json_t *o, const char *key)
{
    const char  *s = json_string_value(json_object_get(o, key));

    return s ? s : "-";
}


/* "12s ago" from a ms-since-epoch string field. */
static const char *
ago(const json_t *o, const char *key, char *buf, size_t cap)
{
    const char  *s = json_string_value(json_object_get(o, key));
    long long    secs;

    if (s == NULL) {
        return "-";
    }

    secs = (pb_now_ms() - strtoll(s, NULL, 10)) / 1000;
    snprintf(buf, cap, "%llds ago", secs);

    return buf;
}


static void
print_jobs(const char *set, const json_t *jobs)
{
    size_t   i;
    char     when[64];
    json_t  *j;

    if (json_array_size(jobs) == 0) {
        printf("(no %s jobs)\n", set);
        return;
    }

    printf("%-4s %-28s %-18s %5s %-10s %3s %-12s %s\n", "#", "JOB", "AGENT",
           "PRIO", "STATE", "TRY", "SINCE", "CONTAINER / ERROR");

    json_array_foreach(jobs, i, j) {
        printf("%-4zu %-28s %-18s %5s %-10s %3s %-12s %s\n", i + 1,
               str(j, "id"), str(j, "agent"), str(j, "priority"),
               str(j, "state"), str(j, "attempts"),
               ago(j, strcmp(set, "dead") == 0 ? "dead_at"
                      : strcmp(set, "done") == 0 ? "finished_at"
                      : strcmp(set, "running") == 0 ? "claimed_at"
                      : "enqueued_at", when, sizeof(when)),
               json_object_get(j, "error") ? str(j, "error")
               : json_object_get(j, "last_error") ? str(j, "last_error")
               : str(j, "container"));
    }
}


/* A typed column of a status table: text, integer or ms shown as s. */
typedef struct {
    const char  *title;
    const char  *key;
    int          width;
    char         kind;          /* 's', 'i' or 'd' */
} column_t;


static void
print_cell(const json_t *row, const column_t *c)
{
    char     buf[64];
    json_t  *v = json_object_get(row, c->key);

    if (json_is_string(v)) {
        printf(" %-*s", c->width, json_string_value(v));
        return;
    }

    if (!json_is_number(v)) {
        snprintf(buf, sizeof(buf), "-");
    } else if (c->kind == 'd') {
        snprintf(buf, sizeof(buf), "%.1fs", json_number_value(v) / 1000);
    } else {
        snprintf(buf, sizeof(buf), "%.0f", json_number_value(v));
    }

    printf(" %*s", c->width, buf);
}


static void
print_table(const char *title, const json_t *rows, const column_t *cols)
{
    size_t           i;
    json_t          *row;
    const column_t  *c;

    printf("\n%s\n", title);

    if (json_array_size(rows) == 0) {
        printf("  (none)\n");
        return;
    }

    for (c = cols; c->title != NULL; c++) {
        printf(c->kind == 's' ? " %-*s" : " %*s", c->width, c->title);
    }
    printf("\n");

    json_array_foreach(rows, i, row) {
        for (c = cols; c->title != NULL; c++) {
            print_cell(row, c);
        }
        printf("\n");
    }
}


static void
print_status(const json_t *s)
{
    static const column_t  running[] = {
        { "JOB", "id", 28, 's' }, { "AGENT", "agent", 18, 's' },
        { "STATE", "state", 9, 's' }, { "ELAPSED", "elapsed_ms", 9, 'd' },
        { "LEFT", "remaining_ms", 9, 'd' },
        { "CONTAINER", "container", 18, 's' }, { NULL, NULL, 0, 0 }
    };
    static const column_t  pending[] = {
        { "#", "position", 4, 'i' }, { "JOB", "id", 28, 's' },
        { "AGENT", "agent", 18, 's' }, { "PRIO", "priority", 5, 'i' },
        { "WAITING", "waiting_ms", 9, 'd' },
        { "STARTS IN", "starts_in_ms", 9, 'd' },
        { "DONE IN", "done_in_ms", 9, 'd' }, { NULL, NULL, 0, 0 }
    };
    static const column_t  dead[] = {
        { "JOB", "id", 28, 's' }, { "AGENT", "agent", 18, 's' },
        { "TRY", "attempts", 3, 'i' }, { "ERROR", "error", 30, 's' },
        { NULL, NULL, 0, 0 }
    };
    static const column_t  recent[] = {
        { "JOB", "id", 28, 's' }, { "AGENT", "agent", 18, 's' },
        { "OUTCOME", "outcome", 9, 's' }, { "TOOK", "duration_ms", 9, 'd' },
        { "BY", "found_by", 8, 's' }, { "EXIT", "exit_message", 20, 's' },
        { NULL, NULL, 0, 0 }
    };

    size_t       i;
    const char  *key;
    json_t      *lane = json_object_get(s, "lane");
    json_t      *counts = json_object_get(s, "counts");
    json_t      *eta = json_object_get(s, "eta");
    json_t      *hooks = json_object_get(s, "webhooks");
    json_t      *w, *v, *flag;

#define NUM(o, name)  json_number_value(json_object_get(o, name))

    printf("lane      %s", str(lane, "state"));
    flag = json_object_get(lane, "paused");
    if (!json_is_object(flag)) {
        flag = json_object_get(lane, "draining");
    }
    if (json_is_object(flag)) {
        printf(" (by %s at %s)", str(flag, "by"), str(flag, "at"));
    }
    if (NUM(lane, "closed_ms") > 0) {
        printf(" (reopens in %.1fs)", NUM(lane, "closed_ms") / 1000);
    }

    printf("\nslots     %.0f/%.0f running\n", NUM(counts, "running"),
           NUM(s, "max_running"));
    printf("jobs      pending %.0f  retry %.0f  dead %.0f  done %.0f\n",
           NUM(counts, "pending"), NUM(counts, "retry"),
           NUM(counts, "dead"), NUM(counts, "done"));

    if (json_is_number(json_object_get(eta, "queue_done_in_ms"))) {
        printf("eta       queue done in %.0fs%s\n",
               NUM(eta, "queue_done_in_ms") / 1000,
               json_is_true(json_object_get(eta, "exact"))
               ? "" : " (estimated)");
    } else {
        printf("eta       unknown (%s)\n",
               json_is_string(json_object_get(eta, "blocked"))
               ? str(eta, "blocked") : "no run history yet");
    }

    printf("webhooks  queued %.0f  invalid %.0f  last ", NUM(hooks, "queued"),
           NUM(hooks, "invalid"));
    if (json_is_number(json_object_get(hooks, "last_age_ms"))) {
        printf("%.0fs ago\n", NUM(hooks, "last_age_ms") / 1000);
    } else {
        printf("never\n");
    }
    printf("audit     outbox %.0f  rejected %.0f\n",
           NUM(counts, "audit_outbox"), NUM(counts, "audit_rejected"));

    printf("workers  ");
    json_array_foreach(json_object_get(s, "workers"), i, w) {
        printf(" %s (%s)", str(w, "id"),
               json_is_true(json_object_get(w, "alive")) ? "alive" : "dead");
    }
    printf("%s\nmetrics  ", json_array_size(json_object_get(s, "workers"))
                            ? "" : " none");
    json_object_foreach(json_object_get(s, "metrics"), key, v) {
        printf(" %s=%.0f", key, json_number_value(v));
    }
    printf("\n");

    json_array_foreach(json_object_get(s, "alerts"), i, v) {
        printf("%s %s\n", i == 0 ? "\nalerts   " : "         ",
               str(v, "message"));
    }

    print_table("running", json_object_get(s, "running"), running);
    print_table("pending (first jobs)", json_object_get(s, "pending"),
                pending);
    print_table("dead letters (latest)", json_object_get(s, "dead"), dead);
    print_table("recent completions", json_object_get(s, "recent"), recent);

#undef NUM
}


/* configure-agent: one line per changed field, before -> after. */
static void
print_configured(const json_t *r)
{
    char         a[256], b[256];
    size_t       i, n;
    json_t      *changes = json_object_get(r, "changes"), *c;

    n = json_array_size(changes);

    if (n == 0) {
        printf("agent %s already configured: nothing to change\n",
               str(r, "agent"));
        return;
    }

    printf("agent %s: %zu field%s %s\n", str(r, "agent"), n,
           n == 1 ? "" : "s",
           json_is_true(json_object_get(r, "saved")) ? "changed (read back)"
           : "would change (dry run, nothing saved)");

    json_array_foreach(changes, i, c) {
        printf("  %s: %s -> %s\n", str(c, "field"),
               pb_change_text(c, "before", b, sizeof(b)),
               pb_change_text(c, "after", a, sizeof(a)));
    }
}


static void
print_result(const char *cmd, const json_t *r)
{
    if (strcmp(cmd, "status") == 0) {
        print_status(r);

    } else if (strcmp(cmd, "list") == 0 || strcmp(cmd, "dlq_list") == 0) {
        print_jobs(str(r, "set"), json_object_get(r, "jobs"));

    } else if (strcmp(cmd, "enqueue") == 0) {
        if (json_is_true(json_object_get(r, "created"))) {
            printf("enqueued %s at position %lld\n", str(r, "job_id"),
                   (long long) json_integer_value(json_object_get(r,
                                                                  "position")));
        } else {
            printf("job %s already exists (state %s); nothing done\n",
                   str(r, "job_id"), str(r, "state"));
        }

    } else if (strcmp(cmd, "dlq_retry") == 0) {
        printf("%s is back in line\n", str(r, "job_id"));

    } else if (strcmp(cmd, "dlq_retry_all") == 0) {
        printf("%lld jobs back in line\n",
               (long long) json_integer_value(json_object_get(r, "retried")));

    } else if (strcmp(cmd, "dlq_purge") == 0) {
        printf("%lld dead-lettered jobs purged\n",
               (long long) json_integer_value(json_object_get(r, "purged")));

    } else if (strcmp(cmd, "configure_agent") == 0) {
        print_configured(r);

    } else if (strcmp(cmd, "restart") == 0) {
        printf("running before %lld, after %lld: %lld slots freed\n",
               (long long) json_integer_value(json_object_get(r,
                                                       "running_before")),
               (long long) json_integer_value(json_object_get(r,
                                                       "running_after")),
               (long long) json_integer_value(json_object_get(r, "freed")));

    } else {
        printf("lane %s\n", str(r, "lane"));
    }
}


/* drain: polls until nothing runs (or the wait is over). */
static int
wait_drained(pbctl_t *ctl, pb_ctx_t *ctx)
{
    char             err[512];
    int64_t          until = ctl->wait_ms ? pb_now_ms() + ctl->wait_ms : 0;
    long long        running;
    json_t          *req = json_pack("{s:s}", "cmd", "status"), *s;
    struct timespec  ts = { 0, 500 * 1000000L };
    int              rc;

    for ( ;; ) {
        rc = pb_command_run(ctx, req, &s, err, sizeof(err));
        if (rc != PB_CMD_OK) {
            fprintf(stderr, "pbctl: %s\n", err);
            break;
        }

        running = json_integer_value(json_object_get(json_object_get(s,
                                                       "counts"), "running"));
        json_decref(s);

        if (running == 0) {
            if (!ctl->json) {
                printf("drained: nothing running; launching stays off until "
                       "pbctl resume\n");
            }
            break;
        }

        if (until && pb_now_ms() >= until) {
            fprintf(stderr, "pbctl: drain: %lld runs still going after the "
                    "wait\n", running);
            rc = PB_CMD_FAILED;
            break;
        }

        nanosleep(&ts, NULL);
    }

    json_decref(req);

    return rc;
}


int
main(int argc, char **argv)
{
    char          err[512];
    int           i, k, rc;
    json_t       *result = NULL;
    pbctl_t       ctl;
    pb_ctx_t      ctx;
    pb_config_t   cfg;

    memset(&ctl, 0, sizeof(ctl));
    memset(&ctx, 0, sizeof(ctx));

    /* --json and --verbose may come anywhere ("pbctl status --json") */
    for (i = 1, k = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            ctl.json = 1;
        } else if (strcmp(argv[i], "--verbose") == 0) {
            ctl.verbose = 1;
        } else {
            argv[k++] = argv[i];
        }
    }
    argc = k;
    argv[argc] = NULL;
    i = 1;

    if (pb_config_from_env(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "pbctl: %s\n", err);
        return PB_CMD_BADARGS;
    }

    /* global flags come before the command */
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s%s", usage_text, pb_config_usage);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("pbctl %s\n", PB_VERSION);
            return 0;
        }
        rc = pb_config_flag(&cfg, argc, argv, &i, err, sizeof(err));
        if (rc == 0) {
            return usage_error("unknown flag \"%s\"", argv[i]);
        }
        if (rc < 0) {
            fprintf(stderr, "pbctl: %s\n", err);
            return PB_CMD_BADARGS;
        }
    }

    if (i >= argc) {
        return usage_error("%s", "a command is required");
    }

    if (pb_config_check(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "pbctl: %s\n", err);
        return PB_CMD_BADARGS;
    }

    rc = parse_command(&ctl, argc, argv, i);
    if (rc != PB_CMD_OK) {
        goto done;
    }

    /* errors are one line on stderr; the JSON logs only with --verbose */
    pb_log_init("pbctl", cfg.worker_id,
                ctl.verbose ? (pb_log_level_t) cfg.log_level
                            : (pb_log_level_t) (PB_LOG_ERROR + 1));
    curl_global_init(CURL_GLOBAL_DEFAULT);

    ctx.cfg = &cfg;
    ctx.redis = pb_redis_open(cfg.redis_url, 10000, err, sizeof(err));
    if (ctx.redis == NULL) {
        fprintf(stderr, "pbctl: %s\n", err);
        rc = PB_CMD_BADARGS;
        goto done;
    }

    if (cfg.api_key[0] != '\0') {
        ctx.api = pb_api_new(cfg.api_url, cfg.api_key, cfg.http_timeout_ms,
                             cfg.retry_after_cap_ms);
    }

    rc = pb_command_run(&ctx, ctl.request, &result, err, sizeof(err));
    if (rc != PB_CMD_OK) {
        fprintf(stderr, "pbctl: %s\n", err);
        goto done;
    }

    if (ctl.json) {
        json_dumpf(result, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("\n");

    } else {
        print_result(json_string_value(json_object_get(ctl.request, "cmd")),
                     result);
    }

    if (ctl.wait) {
        rc = wait_drained(&ctl, &ctx);
    }

done:

    json_decref(result);
    json_decref(ctl.request);
    pb_api_free(ctx.api);
    pb_redis_close(ctx.redis);

    return rc;
}
