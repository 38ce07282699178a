#!/bin/bash
# Restart the slurmd daemons of the cluster in DIR (started by start.sh), e.g. after rewriting
# DIR/plugstack.conf. Needed for SPANK hooks that slurmd decides on at its own start:
# slurm_spank_slurmd_init and slurm_spank_job_prolog/job_epilog are only run if plugstack.conf listed
# a plugin when slurmd started; `scontrol reconfigure` and SIGHUP do not change that (measured on
# 22.05.8). Running jobs survive (their slurmstepd are separate processes).
#
#   restart-slurmd.sh DIR [NODE...]
#
# With NODEs, only theirs (e.g. a virtual node's after its reboot, `vnet.sh restart DIR NODE`: its old
# slurmd died with it); then every node of the cluster must be idle again.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DIR [NODE...]" >&2; exit 2; }
DIR=$(cd "$1" && pwd -P)
HERE=$(cd "$(dirname "$0")" && pwd -P)
CONF=$DIR/slurm.conf
shift
ONLY=" $* "
. "$HERE/common.sh"
[ -s "$DIR/pids" ] || { echo "restart-slurmd.sh: no cluster running in $DIR" >&2; exit 1; }
t0=$(date +%s.%N)

nodes=()
old=()
while read -r name pid; do
    case "$name" in slurmd:*)
        [ "$ONLY" = "  " ] || case "$ONLY" in *" ${name#slurmd:} "*) ;; *) continue ;; esac
        nodes+=("${name#slurmd:}"); old+=("$pid") ;;
    esac
done < "$DIR/pids"
for n in $ONLY; do
    case " ${nodes[*]} " in *" $n "*) ;; *) echo "restart-slurmd.sh: no slurmd of node $n in $DIR/pids" >&2; exit 1 ;; esac
done
ours=()   # only those still ours (a dead node's slurmd PID may have been reused since)
for pid in "${old[@]}"; do
    if tr '\0' '\n' 2>/dev/null < "/proc/$pid/environ" | grep -qxF "SLURM_CONF=$CONF"; then
        ours+=("$pid"); kill -TERM "$pid" 2>/dev/null || true
    fi
done
for pid in "${ours[@]}"; do
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; sleep 0.1; fi
done
awk -v drop=" ${nodes[*]} " '!($1 ~ /^slurmd:/ && index(drop, " " substr($1, 8) " "))' "$DIR/pids" > "$DIR/pids.new" || true
mv -f "$DIR/pids.new" "$DIR/pids"

for n in "${nodes[@]}"; do launch_slurmd "$n"; done
# the new slurmd must be listening on its port before a launch request can reach it
for _ in $(seq 400); do
    missing=0
    for n in "${nodes[@]}"; do
        p=$(awk -v n="NodeName=$n" '$1 == n {for(i=1;i<=NF;i++) if ($i ~ /^Port=/) {sub("Port=","",$i); print $i}}' "$CONF")
        node_listening "$n" "$p" || missing=1
    done
    [ $missing -eq 0 ] && break
    sleep 0.05
done
rc=0
wait_idle "$(grep -c '^NodeName=' "$CONF")" "${SLURM_READY_TIMEOUT:-30}" || rc=$?
if [ $rc -ne 0 ]; then
    echo "restart-slurmd.sh: slurmd not back (rc=$rc ${DIED:-}); sinfo: $(printf '%s' "$STATES" | tr '\n' ';')" >&2
    tail_logs
    exit 1
fi
echo "restart-slurmd.sh: ${#nodes[@]} slurmd restarted in $(elapsed "$t0")s"
