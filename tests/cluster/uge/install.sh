#!/bin/bash
# Install Debian's Son of Grid Engine 8.1.9 (stand-in for UGE) for the throwaway test cluster, only if
# missing. Idempotent; never leaves a daemon running.
#
# debconf is preseeded so that the maintainer scripts run non-interactively and gridengine-master's
# postinst initialises the packages' system-wide cell /var/lib/gridengine/default
# (shared/gridengineconfig=true, cell "default", master $(hostname)). The test clusters do not use that
# cell (start.sh gives each its own SGE_ROOT); they need the binaries, /var/lib/gridengine/{bin,lib,
# utilbin} and /usr/share/gridengine. The postinsts call invoke-rc.d to start the daemons: a temporary
# policy-rc.d (unless one already exists) forbids it, and any sge daemon that still appears with the
# packages' configuration is stopped by PID.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PKGS=(gridengine-master gridengine-exec gridengine-client gridengine-drmaa1.0 libjemalloc2)

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

daemon_pids() {   # PIDs of processes whose executable is a packaged sge daemon
    local d exe
    for d in /proc/[0-9]*; do
        exe=$(readlink "$d/exe" 2>/dev/null) || continue
        case "$exe" in
            /usr/lib/gridengine/sge_qmaster|/usr/lib/gridengine/sge_execd|/usr/sbin/sge_qmaster|/usr/sbin/sge_execd)
                echo "${d#/proc/}" ;;
        esac
    done
}
before=" $(daemon_pids | tr '\n' ' ') "

forbid_service_starts
LOG=/tmp/envsched-uge-install.$$.log
cleanup() { allow_service_starts; rm -f "$LOG"; }
trap cleanup EXIT

HOST=$(hostname)
debconf-set-selections <<SEL
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridenginemaster string $HOST
gridengine-master shared/gridengineconfig boolean true
gridengine-master shared/gridenginecell string default
gridengine-master shared/gridenginemaster string $HOST
gridengine-client shared/gridengineconfig boolean true
gridengine-client shared/gridenginecell string default
gridengine-client shared/gridenginemaster string $HOST
gridengine-exec shared/gridengineconfig boolean true
gridengine-exec shared/gridenginecell string default
gridengine-exec shared/gridenginemaster string $HOST
SEL

echo "install.sh: installing ${missing[*]}"
t0=$(date +%s)
apt_install "$LOG" "${PKGS[@]}"
# Anything started by a maintainer script. A test cluster's daemons (start.sh) carry their private
# SGE_ROOT (not the packages' /var/lib/gridengine) in their environment: those are left alone.
for pid in $(daemon_pids); do
    case "$before" in *" $pid "*) continue ;; esac
    root=$(tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | sed -n 's/^SGE_ROOT=//p' | head -n 1)
    if [ -n "$root" ] && [ "$root" != /var/lib/gridengine ]; then
        continue   # a test cluster started concurrently, not a packaged service
    fi
    echo "install.sh: stopping daemon started by the packages: $pid $(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
done
echo "install.sh: done in $(( $(date +%s) - t0 ))s"
