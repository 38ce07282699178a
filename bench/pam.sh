#!/bin/bash
# PAM benchmark: an ssh login through a private sshd with and without pam_envsched (warm decision
# cache and shared view; cache=0). Not a test: prints medians, p10/p90 and ratios. Root; starts a
# private sshd on a free loopback port through the pytest fixtures of tests/pam/conftest.py and
# stops it at the end. See tests/pam/bench_pam.py.
#
#   bash bench/pam.sh            BENCH_ROUNDS=30 by default (each case once per round, interleaved)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/pam.sh: needs root" >&2; exit 1; }
[ -x .venv/bin/python ] || { echo "bench/pam.sh: run make venv first" >&2; exit 1; }
exec .venv/bin/python -m pytest tests/pam/bench_pam.py -q -s -p no:cacheprovider "$@"
