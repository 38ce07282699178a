#!/bin/bash
# Run a bench (a Python script of bench/) on a tree: the one given, or a mini tree built here
# and removed afterwards. Root.
#   bench/with-mini-tree.sh BENCH.py [TREE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$here/../.venv/bin/python}
bench=$1
tree=${2:-}
if [ -z "$tree" ]; then
    tmp=$(mktemp -d /run/envsched-bench-tree.XXXXXX); chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    "$here/../tests/envs/build-mini-env.sh" "$tmp/tree" debian 12 "Debian 12 (mini)" >/dev/null
    tree=$tmp/tree
fi
"$py" "$here/$bench" "$tree"      # not exec: the EXIT trap removes the tree
