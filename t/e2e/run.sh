#!/usr/bin/env bash
# End-to-end tests: simulator + nginx module + Redis (6398) + pb-worker + audit DB.
# Needs `make` first (build/nginx/*.so, build/worker/pb-worker, pbctl).
# Last line: "N passed, N failed". Options: --only 1,3  --list
set -u
cd "$(dirname "$0")/../.."
exec python3 t/e2e/e2e.py "$@"
