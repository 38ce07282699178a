#!/bin/bash
# A submission's cost on Torque (the submit filter) and OpenPBS (the queuejob hook), before and
# after the submit-time cache (#13): bench/submit_bench.py. Root.
#   bench/submit.sh [TREE]      (default: a mini tree built here; N rounds, default 30)
exec bash "$(dirname "$0")/with-mini-tree.sh" submit_bench.py "$@"
