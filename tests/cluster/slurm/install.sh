#!/bin/bash
# Install the Debian Slurm + munge packages for the throwaway test cluster, only if missing.
# Idempotent; never leaves a daemon running: a policy-rc.d (temporary, unless one already exists)
# tells the maintainer scripts not to start services, and any munged/slurm daemon that still
# appears during the install with the packages' default configuration is stopped by PID.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PKGS=(slurm-wlm munge libslurm-dev slurm-client)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
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

created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    created_policy=1
fi
cleanup() { [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d; true; }
trap cleanup EXIT

echo "install.sh: installing ${missing[*]}"
if ! apt-get install -y --no-install-recommends "${PKGS[@]}" >/tmp/envsched-slurm-install.$$.log 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y --no-install-recommends "${PKGS[@]}" >>/tmp/envsched-slurm-install.$$.log 2>&1 || {
        tail -n 30 /tmp/envsched-slurm-install.$$.log >&2; exit 1; }
fi
rm -f /tmp/envsched-slurm-install.$$.log

# Anything started by a maintainer script (not ours: ours always run with a private config/socket)
for pid in $(daemon_pids); do
    case "$before" in *" $pid "*) continue ;; esac
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -q '^SLURM_CONF=' \
       || tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- '--socket'; then
        continue   # a test cluster started concurrently, not a packaged service
    fi
    echo "install.sh: stopping daemon started by the packages: $pid $(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
done
echo "install.sh: done"
