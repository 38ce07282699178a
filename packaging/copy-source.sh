#!/bin/bash
# Copy the checkout as it is now (tracked files and untracked ones git does not ignore, so no
# build outputs) to DEST, for `make deb` / `make rpm`, which build there and not in the tree.
# Usage: packaging/copy-source.sh DEST
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=$1
mkdir -p "$dest"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$repo" ls-files -z --cached --others --exclude-standard |
        (cd "$repo" && while IFS= read -r -d '' f; do
             if [[ -e $f || -L $f ]]; then printf '%s\0' "$f"; fi      # not tracked files deleted here
         done) |
        tar -C "$repo" --null -T - -cf - | tar -C "$dest" -xf -
else                                  # an unpacked tarball: everything but build outputs
    tar -C "$repo" --exclude=./build --exclude=./.venv --exclude=./.git --exclude='*.o' --exclude='*.so' \
        --exclude=__pycache__ --exclude='*.egg-info' -cf - . | tar -C "$dest" -xf -
fi
