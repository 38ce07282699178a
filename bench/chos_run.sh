#!/bin/bash
# `chos run NAME -- true` (the C front, warm, and the Python command) against ch-run and bwrap on
# one tree, as an ordinary user; `envsched exec` and bwrap as root (bench/chos_run_bench.py). Root.
#   bench/chos_run.sh [TREE]    (default: a mini tree built here, with the mount points ch-run
#                                needs: dev proc sys tmp home run var/tmp)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
make -s -C "$here/../plugins/chos" PYTHON="$here/../.venv/bin/python"
top=$(mktemp -d /run/envsched-bench-chos.XXXXXX); chmod 755 "$top"
trap 'umount -R -l "$top/run" 2>/dev/null || true; rm -rf "$top"' EXIT
tree=${1:-}
if [ -z "$tree" ]; then
    "$here/../tests/envs/build-mini-env.sh" "$top/tree" debian 12 "Debian 12 (mini)" >/dev/null
    mkdir -p "$top"/tree/{dev,proc,sys,tmp,home,run,var/tmp}
    tree=$top/tree
fi
"$here/../.venv/bin/python" "$here/chos_run_bench.py" "$tree" "$top"
