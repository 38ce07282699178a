#!/bin/bash
# make test-installed: the end-to-end suites (tests/ns, pam, torque, slurm, uge) against the files the
# Debian packages install instead of the checkout (ENVSCHED_TEST_INSTALLED=1, see tests/installed.py).
# Installs build/*.deb (make deb first) with apt-get, runs the suites, and purges the packages again
# unless they were installed before it started.
# Usage: packaging/test-installed.sh [pytest arguments...]
set -uo pipefail
cd "$(dirname "$0")/.."
packages=(envsched envsched-slurm envsched-gridengine envsched-torque envsched-openpbs libpam-envsched)
debs=()
for p in "${packages[@]}"; do debs+=(./build/"${p}"_*.deb); done
export DEBIAN_FRONTEND=noninteractive
before=$(dpkg-query -W -f='${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null | grep -c '^ii' || true)
apt-get install -y -q "${debs[@]}" >/dev/null || { echo "test-installed: apt-get install failed" >&2; exit 1; }
ENVSCHED_TEST_INSTALLED=1 "${PY:-.venv/bin/python}" -m pytest tests/ns tests/pam tests/torque tests/slurm tests/uge "$@"
rc=$?
if [ "$before" -eq 0 ]; then
    apt-get purge -y -q "${packages[@]}" >/dev/null || rc=1
fi
exit $rc
