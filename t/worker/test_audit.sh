#!/bin/sh
# Builds and runs the audit-log tests (t/worker/test_audit.c) against real
# SQLite files and the test PostgreSQL cluster, which it starts (and leaves
# running, like the other suites; scripts/postgres.sh stop ends it).
#
#   t/worker/test_audit.sh              everything
#   PB_TEST_SKIP_PG=1 t/worker/test_audit.sh   SQLite only
#
# The last line of output is "N passed, N failed"; exit status non-zero on
# any failure.

set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

port=${PB_TEST_PG_PORT:-5499}
out=build/t/worker
mkdir -p "$out"

# The embedded migrations must match the .sql files.
if ! scripts/migrations/embed.sh --check; then
    echo "0 passed, 1 failed"
    exit 1
fi

pq_cflags=$(pkg-config --cflags libpq 2>/dev/null || echo "-I$(pg_config --includedir)")

${CC:-cc} -std=gnu99 -g -O2 -Wall -Wextra -Werror -Wstrict-prototypes -Wwrite-strings \
    $pq_cflags -Iworker \
    worker/audit.c worker/audit_sqlite.c worker/audit_pg.c \
    t/worker/test_audit.c -o "$out/test_audit" -lpq -lsqlite3

if [ "${PB_TEST_SKIP_PG:-0}" != 1 ]; then
    scripts/postgres.sh start "$port" >/dev/null
fi

tmp=$(mktemp -d /tmp/pb-audit-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM

PB_TEST_PG_PORT=$port PB_TEST_TMP=$tmp \
PB_POSTGRES_SH=$root/scripts/postgres.sh PB_MIGRATE_SH=$root/scripts/migrate.sh \
    "$out/test_audit"
