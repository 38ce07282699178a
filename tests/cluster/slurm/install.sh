#!/bin/bash
# Install the Debian Slurm + munge packages for the throwaway test cluster, only if missing.
# Idempotent; never leaves a daemon running: a policy-rc.d (temporary, unless one already exists)
# tells the maintainer scripts not to start services, and any munged/slurm daemon that still
# appears during the install with the packages' default configuration is stopped by PID.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PKGS=(slurm-wlm munge libslurm-dev slurm-client)

. "$(cd "$(dirname "$0")" && pwd -P)/../lib.sh"
mapfile -t missing < <(missing_packages "${PKGS[@]}")
if [ ${#missing[@]} -eq 0 ]; then
    echo "install.sh: ${PKGS[*]} already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: need root to install: ${missing[*]}" >&2
    exit 1
fi

daemon_pids() {
    # PIDs of munged/slurmctld/slurmd/slurmdbd whose executable is the packaged one
    local pid exe
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
        case "$exe" in
            /usr/sbin/munged|/usr/sbin/slurmctld|/usr/sbin/slurmd|/usr/sbin/slurmdbd) echo "$pid" ;;
        esac
    done
}
before=" $(daemon_pids | tr '\n' ' ') "

forbid_service_starts
LOG=/tmp/envsched-slurm-install.$$.log
cleanup() { allow_service_starts; rm -f "$LOG"; }
trap cleanup EXIT

echo "install.sh: installing ${missing[*]}"
apt_install "$LOG" "${PKGS[@]}"

# Anything started by a maintainer script (not ours: ours always run with a private config/socket)
for pid in $(daemon_pids); do
    case "$before" in *" $pid "*) continue ;; esac
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -q '^SLURM_CONF=' \
       || tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- '--socket'; then
        continue   # a test cluster started concurrently, not a packaged service
    fi
    echo "install.sh: stopping daemon started by the packages: $pid $(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
done
echo "install.sh: done"
