#!/usr/bin/env bash
# The status page in headless Chromium (Debian's chromium package) against
# nginx + the module + Redis + the simulator + pb-worker; see
# t/browser/browser_test.py.  Needs `make` first.  Last line:
# "N passed, N failed"; the exit status is non-zero on any failure.
set -u
cd "$(dirname "$0")/../.."
if ! command -v "${PB_CHROMIUM:-chromium}" >/dev/null; then
    echo "t/browser/run.sh: chromium is not installed (apt-get install chromium)"
    echo "0 passed, 1 failed"
    exit 1
fi
exec python3 t/browser/browser_test.py "$@"
