#!/usr/bin/env bash
# Static checks over the project's C: cppcheck, clang-tidy (.clang-tidy at
# the root) and the module's style rules (nginx's: no tabs, at most 80
# columns, no trailing whitespace).
#
#   scripts/quality/lint.sh [cppcheck|tidy|style ...]   default: all three
#
# Checks common/, worker/, fuzz/ and ngx_http_phantombuster_module/.  The
# module is checked against Debian's nginx-dev headers plus the
# ngx_auto_config.h that nginx's configure writes: the first run configures
# into build/quality/nginx-lint (scripts/build-module.sh, PB_BUILD_DIR).
# Suppressions live in place as `// cppcheck-suppress id` or
# `// NOLINT(check)` with the reason on the same line; the few global ones
# are below and in .clang-tidy, each with its reason.
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/../.."

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(cppcheck tidy style)

ngx_src=${PB_NGINX_SRC:-/usr/share/nginx/src}/src
ngx_build=build/quality/nginx-lint
ngx_incs=(-I"$ngx_src/core" -I"$ngx_src/event" -I"$ngx_src/event/modules"
          -I"$ngx_src/os/unix" -I"$ngx_src/http" -I"$ngx_src/http/modules"
          -I"$ngx_src/http/v2" -I"$ngx_build")

common_c=(common/*.c)
worker_c=(worker/*.c)
fuzz_c=(fuzz/*.c)
module_c=(ngx_http_phantombuster_module/*.c)
module_style=(ngx_http_phantombuster_module/*.[ch] config common/*.[ch])

# pkg-config knows hiredis, jansson, libcurl, libpq; sqlite3 is plain
worker_incs=(-Icommon -Iworker)
for pc in hiredis jansson libcurl libpq sqlite3; do
    read -ra f <<<"$(pkg-config --cflags "$pc" 2>/dev/null)"
    worker_incs+=("${f[@]}")
done

passed=0 failed=0 failed_steps=()
pass() { passed=$(( passed + 1 )); echo "lint: $1 clean"; }
fail() { failed=$(( failed + 1 )); failed_steps+=("$1"); echo "lint: $1 FAILED"; }

need() {
    command -v "$1" >/dev/null && return 0
    echo "lint: $1 not found (scripts/setup.sh installs it)" >&2
    return 1
}

ngx_headers() {
    [ ${#module_c[@]} -gt 0 ] || return 0
    [ -f "$ngx_build/ngx_auto_config.h" ] && return 0
    echo "lint: configuring nginx for its generated headers ($ngx_build)"
    # the build itself may fail while the module is being written; only
    # configure's headers are needed here
    PB_BUILD_DIR=$PWD/$ngx_build scripts/build-module.sh \
        >"build/quality/nginx-lint.log" 2>&1 || true
    if [ ! -f "$ngx_build/ngx_auto_config.h" ]; then
        echo "lint: nginx configure failed, see build/quality/nginx-lint.log" >&2
        return 1
    fi
}

run_cppcheck() {
    need cppcheck || { fail cppcheck; return; }
    local rc=0 opts
    # variableScope: nginx style declares every variable at the top of its
    #   function, which is what this check objects to.
    # missingIncludeSystem: system headers are not given to cppcheck (its
    #   own library configs model libc).
    # -D: one configuration (Linux, x86_64, GCC), as built; without them
    #   cppcheck tries every #ifdef combination of nginx's headers.
    opts=(-q --enable=warning,style,performance,portability
          --error-exitcode=1 --inline-suppr --std=c99
          -D__linux__ -D__x86_64__ -D__GNUC__=12
          --suppress=variableScope --suppress=missingIncludeSystem
          --suppress='*:/usr/*'
          --template='{file}:{line}: {severity}: {message} [{id}]')

    echo "=== cppcheck: common worker fuzz"
    local files=("${common_c[@]}" "${worker_c[@]}" "${fuzz_c[@]}")
    if [ ${#files[@]} -gt 0 ]; then
        cppcheck "${opts[@]}" -Icommon -Iworker "${files[@]}" || rc=1
    fi

    if [ ${#module_c[@]} -gt 0 ]; then
        echo "=== cppcheck: module"
        if ngx_headers; then
            cppcheck "${opts[@]}" -Icommon -Ingx_http_phantombuster_module \
                "${ngx_incs[@]}" "${module_c[@]}" || rc=1
        else
            rc=1
        fi
    fi

    [ $rc -eq 0 ] && pass cppcheck || fail cppcheck
}

# clang-tidy's notes (the analyzer's path) go to a log; the findings are
# printed.  One process per file, two at a time: clang-tidy 14 given
# several files in one run reports clang-analyzer-valist.Uninitialized on
# va_start/vsnprintf/va_end sequences that are correct (state leaks from
# one translation unit into the next).
# $1: label, then files, then -- and compiler flags.
tidy() {
    local label=$1 log=build/quality/clang-tidy-$1.log rc=0 files=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do files+=("$1"); shift; done
    shift
    echo "=== clang-tidy: $label"
    printf '%s\0' "${files[@]}" \
        | xargs -0 -P 2 -I{} clang-tidy --quiet {} -- "$@" >"$log" 2>&1 \
        || rc=1
    grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' "$log" \
        | sed 's/,-warnings-as-errors\]/]/' | sort -u
    [ $rc -eq 0 ] || echo "(analyzer paths in $log)"
    return $rc
}

run_tidy() {
    need clang-tidy || { fail clang-tidy; return; }
    local rc=0

    tidy common-fuzz "${common_c[@]}" "${fuzz_c[@]}" -- -std=gnu99 -Icommon \
        || rc=1

    if [ ${#worker_c[@]} -gt 0 ]; then
        tidy worker "${worker_c[@]}" -- -std=gnu99 -D_GNU_SOURCE \
            "${worker_incs[@]}" || rc=1
    fi

    if [ ${#module_c[@]} -gt 0 ]; then
        if ngx_headers; then
            tidy module "${module_c[@]}" -- -std=gnu99 -Icommon \
                -Ingx_http_phantombuster_module "${ngx_incs[@]}" || rc=1
        else
            rc=1
        fi
    fi

    [ $rc -eq 0 ] && pass clang-tidy || fail clang-tidy
}

run_style() {
    echo "=== style: ${module_style[*]}"
    if python3 - "${module_style[@]}" <<'PY'
import sys
bad = 0
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    if data and not data.endswith(b"\n"):
        print("%s:%d: no newline at end of file" % (path, len(lines)))
        bad += 1
    for no, line in enumerate(lines, 1):
        if "\r" in line:
            print("%s:%d: carriage return" % (path, no)); bad += 1
        if "\t" in line:
            print("%s:%d: tab" % (path, no)); bad += 1
        if len(line) > 80:
            print("%s:%d: %d columns (max 80)" % (path, no, len(line)))
            bad += 1
        if line != line.rstrip():
            print("%s:%d: trailing whitespace" % (path, no)); bad += 1
sys.exit(1 if bad else 0)
PY
    then pass style; else fail style; fi
}

mkdir -p build/quality
for s in "${steps[@]}"; do
    case $s in
    cppcheck) run_cppcheck ;;
    tidy|clang-tidy) run_tidy ;;
    style) run_style ;;
    *) echo "usage: $0 [cppcheck|tidy|style ...]" >&2; exit 2 ;;
    esac
done

[ ${#failed_steps[@]} -eq 0 ] || echo "lint: failed: ${failed_steps[*]}"
echo "lint: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
