#!/bin/bash
# Grid Engine benchmark: the turnaround of a job with envsched (JSV, prolog, starter, epilog) against
# the same job on a cluster without it, and the JSV's cost per submission. Not a test: prints medians
# and ratios. Root; starts two throwaway Son of Grid Engine clusters (tests/cluster/uge) through the
# pytest fixtures of tests/uge/conftest.py and stops them at the end. See tests/uge/bench_uge.py.
#
#   bash bench/uge.sh            BENCH_ROUNDS=20 by default (each case once per round, interleaved)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/uge.sh: needs root" >&2; exit 1; }
[ -x .venv/bin/python ] || { echo "bench/uge.sh: run make venv first" >&2; exit 1; }
exec .venv/bin/python -m pytest tests/uge/bench_uge.py -q -s -p no:cacheprovider "$@"
