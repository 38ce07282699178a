#!/bin/bash
# Run the unit tests again as an ordinary user (created here if missing): they must not
# depend on root. Used by `make test` when it runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
user=${ENVSCHED_TEST_USER:-envsched-ci}
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
base=$(mktemp -d /tmp/envsched-unpriv.XXXXXX)
trap 'rm -rf "$base"' EXIT
chown "$user": "$base"
setpriv --reuid="$user" --regid="$user" --init-groups -- \
    env -i PATH=/usr/bin:/bin HOME="$base" LANG=C.UTF-8 \
    .venv/bin/python -m pytest tests/unit -p no:cacheprovider --basetemp="$base/pytest" "$@"
