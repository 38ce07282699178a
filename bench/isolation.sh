#!/bin/bash
# Isolation namespaces (#12): per-job and per-task cost of namespaces = ["pid", "ipc", "uts"]
# against the same environment without (bench/isolation_bench.py). Root.
#   bench/isolation.sh [TREE]      (default: a mini tree built here)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$here/../.venv/bin/python}
tree=${1:-}
if [ -z "$tree" ]; then
    tmp=$(mktemp -d /run/envsched-bench-tree.XXXXXX); chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    "$here/../tests/envs/build-mini-env.sh" "$tmp/tree" debian 12 "Debian 12 (mini)" >/dev/null
    tree=$tmp/tree
fi
"$py" "$here/isolation_bench.py" "$tree"      # not exec: the EXIT trap removes the tree
