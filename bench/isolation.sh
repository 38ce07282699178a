#!/bin/bash
# Isolation namespaces (#12): per-job and per-task cost of namespaces = ["pid", "ipc", "uts"]
# against the same environment without (bench/isolation_bench.py). Root.
#   bench/isolation.sh [TREE]      (default: a mini tree built here)
exec bash "$(dirname "$0")/with-mini-tree.sh" isolation_bench.py "$@"
