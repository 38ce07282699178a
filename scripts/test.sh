#!/bin/bash
# `make test`: every suite as root, then the unit tests again as an ordinary user.
#
# As root the shims refuse to run a resolver, or its interpreter, from a directory that anyone
# but root can write (docs/security.md, "Programs and code root runs are root's"), and the tests
# use the checkout's own .venv/bin/envsched as the resolver. A checkout below /tmp or in a home
# directory is such a place, so there the suite runs from a root-owned copy of the working tree
# (tracked and untracked files, not ignored ones) in /var/cache/envsched-tests/checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

trusted() {     # the directory and every one above it: root's, not writable by group or others
    /usr/bin/python3 -I -c '
import os, stat, sys
p = os.path.abspath(sys.argv[1])
while True:
    st = os.lstat(p)
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        sys.exit(1)
    if p == "/":
        sys.exit(0)
    p = os.path.dirname(p)' "$1"
}

if [ "$(id -u)" -eq 0 ] && [ -z "${ENVSCHED_TEST_COPY:-}" ] && ! trusted "$PWD"; then
    dest=/var/cache/envsched-tests/checkout
    echo "== $PWD can be written by others than root: the tests run from a root-owned copy in $dest"
    umask 022
    install -d -m 0755 /var/cache/envsched-tests "$dest"
    find "$dest" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
        tar --null -T - -cf - | tar -C "$dest" --no-same-owner --no-same-permissions -xf -
    cd "$dest"
    exec env ENVSCHED_TEST_COPY=1 make test PYTEST_ARGS="$*"
fi

# the fuzzers in a process of their own: after the deeply nested inputs they feed the parsers,
# Debian 12's Python 3.11.2 was seen unable to parse source ("SystemError: AST constructor
# recursion depth mismatch"), and pytest parses source to show any later failure
status=0
.venv/bin/python -m pytest tests --ignore=tests/fuzz "$@" || status=$?
.venv/bin/python -m pytest tests/fuzz "$@" || status=$?
[ "$status" -eq 0 ] || exit "$status"
if [ "$(id -u)" -eq 0 ]; then
    echo "== unit tests again as an unprivileged user"
    bash scripts/test-unprivileged.sh "$@"
fi
# CI (.ci/run): then the packages, built, installed, and the end-to-end suites run against the
# installed files (make test-installed purges them again)
if [ -n "${ENVSCHED_TEST_WITH_PACKAGES:-}" ] && [ "$(id -u)" -eq 0 ]; then
    echo "== the Debian packages: make test-packages, make test-installed"
    make test-packages PYTEST_ARGS="$*"
    make test-installed PYTEST_ARGS="$*"
fi
