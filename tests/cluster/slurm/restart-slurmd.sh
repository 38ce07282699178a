#!/bin/bash
# Restart the slurmd daemons of the cluster in DIR (started by start.sh), e.g. after rewriting
# DIR/plugstack.conf. Needed for SPANK hooks that slurmd decides on at its own start:
# slurm_spank_slurmd_init and slurm_spank_job_prolog/job_epilog are only run if plugstack.conf listed
# a plugin when slurmd started; `scontrol reconfigure` and SIGHUP do not change that (measured on
# 22.05.8). Running jobs survive (their slurmstepd are separate processes).
#
#   restart-slurmd.sh DIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(cd "$1" && pwd -P)
HERE=$(cd "$(dirname "$0")" && pwd -P)
CONF=$DIR/slurm.conf
. "$HERE/common.sh"
[ -s "$DIR/pids" ] || { echo "restart-slurmd.sh: no cluster running in $DIR" >&2; exit 1; }
t0=$(date +%s.%N)

nodes=()
old=()
while read -r name pid; do
    case "$name" in slurmd:*) nodes+=("${name#slurmd:}"); old+=("$pid") ;; esac
done < "$DIR/pids"
for pid in "${old[@]}"; do
    tr '\0' '\n' 2>/dev/null < "/proc/$pid/environ" | grep -qxF "SLURM_CONF=$CONF" && kill -TERM "$pid" 2>/dev/null || true
done
for pid in "${old[@]}"; do
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; sleep 0.1; fi
done
grep -v '^slurmd:' "$DIR/pids" > "$DIR/pids.new" || true
mv -f "$DIR/pids.new" "$DIR/pids"

for n in "${nodes[@]}"; do launch_slurmd "$n"; done
# the new slurmd must be listening on its port before a launch request can reach it
ports=$(awk '/^NodeName=/{for(i=1;i<=NF;i++) if ($i ~ /^Port=/) {sub("Port=","",$i); print $i}}' "$CONF")
for _ in $(seq 400); do
    missing=0
    listening=" $(ss -Htln | awk '{print $4}' | sed 's/.*://' | tr '\n' ' ') "
    for p in $ports; do case "$listening" in *" $p "*) ;; *) missing=1 ;; esac; done
    [ $missing -eq 0 ] && break
    sleep 0.05
done
rc=0
wait_idle "${#nodes[@]}" "${SLURM_READY_TIMEOUT:-30}" || rc=$?
if [ $rc -ne 0 ]; then
    echo "restart-slurmd.sh: slurmd not back (rc=$rc ${DIED:-}); sinfo: $(printf '%s' "$STATES" | tr '\n' ';')" >&2
    tail_logs
    exit 1
fi
echo "restart-slurmd.sh: ${#nodes[@]} slurmd restarted in $(elapsed "$t0")s"
