#!/usr/bin/env bash
# Tests of the PhantomBuster simulator (scripts/pb-simulator.py). Last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
exec python3 t/sim/test_simulator.py "$@"
