#!/usr/bin/env bash
# Installs, from Debian's packages, what the project needs on a fresh
# Debian 12 machine.  Idempotent and quick when everything is present.
#
#   scripts/setup.sh            build + demo + tests
#   scripts/setup.sh bench      also what `make bench` compares against
set -euo pipefail

packages=(
    build-essential pkg-config git
    nginx nginx-dev
    libhiredis-dev libjansson-dev libcurl4-openssl-dev libpq-dev
    libsqlite3-dev
    redis-server redis-tools
    postgresql postgresql-client sqlite3
    perl python3 curl procps strace
    valgrind clang libclang-rt-14-dev gcovr cppcheck clang-tidy
    supervisor chromium
)

if [ "${1:-}" = bench ]; then
    packages+=(wrk libnginx-mod-http-lua libnginx-mod-http-echo lua-nginx-redis
               lua-cjson
               gnuplot-nox linux-perf)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
        || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
fi

echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Debian starts packaged servers where it can; the project runs its own
# instances on their own ports, so the packaged ones are left alone.
