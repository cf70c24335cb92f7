#!/bin/sh
# Applies the audit-log migrations by hand, with the database's own CLI:
#
#   scripts/migrate.sh postgresql://user@host:port/db
#   scripts/migrate.sh sqlite:/var/lib/pb/audit.db
#
# pb-worker runs the same files itself at start (pb_audit_migrate, from
# the copy embedded by scripts/migrations/embed.sh); this is for a DBA or
# a deploy step that wants the schema in place before any worker runs.
# Every file is idempotent, so running it again changes nothing.  The URL
# defaults to $AUDIT_DATABASE_URL.

set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=$here/migrations
url=${1:-${AUDIT_DATABASE_URL:-}}

die() { echo "migrate.sh: $*" >&2; exit 1; }

[ -n "$url" ] || die "usage: $0 URL (postgresql://... or sqlite:PATH)"

migrate_pg() {
    command -v psql >/dev/null || die "psql not found (apt-get install postgresql-client)"
    for f in "$dir"/postgresql/*.sql; do
        # One transaction per file; NOTICEs about existing columns are noise.
        PGOPTIONS="-c client_min_messages=warning" \
            psql -X -q -v ON_ERROR_STOP=1 --single-transaction \
                 -d "$url" -f "$f" >/dev/null \
            || die "$(basename "$f") failed"
        echo "migrate.sh: applied postgresql/$(basename "$f")"
    done
}

# SQLite has no ADD COLUMN IF NOT EXISTS: run the statements one by one and
# skip an "ALTER TABLE t ADD COLUMN c" whose column exists, as
# pb_audit_migrate does.  Statements end with ";" at the end of a line.
migrate_sqlite() {
    db=$1
    command -v sqlite3 >/dev/null || die "sqlite3 not found (apt-get install sqlite3)"
    sqlite3 "$db" "PRAGMA journal_mode = WAL" >/dev/null || die "cannot open $db"

    for f in "$dir"/sqlite/*.sql; do
        tmp=$(mktemp -d)
        # Drop comment lines, then write statement N to $tmp/N.
        sed -e 's/^[[:space:]]*--.*$//' "$f" | awk -v d="$tmp" '
            /^[[:space:]]*$/ { next }
            { buf = buf $0 "\n" }
            /;[[:space:]]*$/ { n++; printf "%s", buf > (d "/" sprintf("%04d", n)); close(d "/" sprintf("%04d", n)); buf = "" }
            END { if (buf != "") { n++; printf "%s", buf > (d "/" sprintf("%04d", n)) } }'

        for s in "$tmp"/*; do
            [ -f "$s" ] || continue
            set -f; set -- $(tr '\n' ' ' <"$s"); set +f
            if [ $# -ge 6 ] \
               && [ "$(echo "$1 $2 $4 $5" | tr '[:lower:]' '[:upper:]')" = "ALTER TABLE ADD COLUMN" ]; then
                has=$(sqlite3 "$db" "SELECT count(*) FROM pragma_table_info('$3') WHERE name = '$6'") \
                    || die "$(basename "$f"): cannot read table_info($3)"
                [ "$has" = 0 ] || continue
            fi
            sqlite3 -bail "$db" <"$s" >/dev/null || { rm -rf "$tmp"; die "$(basename "$f") failed"; }
        done
        rm -rf "$tmp"
        echo "migrate.sh: applied sqlite/$(basename "$f")"
    done
}

case $url in
    postgresql://*|postgres://*) migrate_pg ;;
    sqlite:*)
        path=${url#sqlite:}
        case $path in //*) path=${path#//} ;; esac
        [ -n "$path" ] || die "sqlite URL has no path (want sqlite:PATH)"
        migrate_sqlite "$path"
        ;;
    *) die "unsupported database URL scheme (want sqlite:PATH or postgresql://...)" ;;
esac
