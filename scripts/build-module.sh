#!/usr/bin/env bash
# Builds the nginx dynamic module against Debian's nginx-dev sources:
#
#   build/nginx/ngx_http_phantombuster_module.so
#
# Environment:
#   PB_MODULE_CFLAGS   extra compiler flags, e.g. "-O0 --coverage" or
#                      "-O1 -fsanitize=address -fno-omit-frame-pointer"
#   PB_MODULE_LDFLAGS  extra linker flags (defaults to PB_MODULE_CFLAGS when
#                      that contains --coverage or -fsanitize)
#   PB_NGINX_SRC       nginx-dev source tree (default /usr/share/nginx/src)
#   PB_BUILD_DIR       build directory (default <repo>/build/nginx)
#
# configure runs again only when the repository's `config`, the extra flags
# or the nginx sources changed since the last run.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src=${PB_NGINX_SRC:-/usr/share/nginx/src}
builddir=${PB_BUILD_DIR:-$root/build/nginx}
case $builddir in /*) ;; *) builddir=$PWD/$builddir ;; esac
cflags=${PB_MODULE_CFLAGS:-}
ldflags=${PB_MODULE_LDFLAGS:-}

case " $cflags " in
*--coverage*|*-fsanitize*) ldflags=${ldflags:-$cflags} ;;
esac

if [ ! -f "$src/conf_flags" ]; then
    echo "build-module.sh: $src/conf_flags not found;" \
         "install nginx-dev (apt-get install nginx-dev)" >&2
    exit 1
fi

# shellcheck disable=SC1091
source "$src/conf_flags"

# -g keeps symbols in the module for valgrind and gdb; nginx's own -W -Wall
# -Werror apply as well.
cc_opt="-g $cflags"
stamp_text="$(cat "$root/config")
cc=$cc_opt
ld=$ldflags
src=$src $(stat -c %Y "$src/conf_flags")"
stamp=$builddir/.pb-configure-stamp

if [ ! -f "$builddir/Makefile" ] || [ ! -f "$stamp" ] \
   || [ "$(cat "$stamp")" != "$stamp_text" ]
then
    mkdir -p "$builddir"
    # objects built with other flags must not survive a flag change
    rm -rf "$builddir/addon" "$builddir"/*.so
    (cd "$src" && ./configure "${NGX_CONF_FLAGS[@]}" \
        --with-cc-opt="$cc_opt" ${ldflags:+--with-ld-opt="$ldflags"} \
        --add-dynamic-module="$root" --builddir="$builddir") \
        > "$builddir/configure.log" 2>&1 || {
        cat "$builddir/configure.log" >&2
        echo "build-module.sh: nginx configure failed" >&2
        exit 1
    }
    printf '%s' "$stamp_text" > "$stamp"
fi

make -s -f "$builddir/Makefile" -C "$src" modules

so=$builddir/ngx_http_phantombuster_module.so
test -f "$so"
echo "built $so"
