#!/bin/bash
# Stop the throwaway cluster that start.sh started in DIR, and nothing else.
#
#   stop.sh DIR
#
# 1. cancels this cluster's own jobs (its SLURM_CONF; other clusters are never asked),
# 2. TERMs exactly the daemons listed in DIR/pids (each checked to still carry SLURM_CONF=DIR/slurm.conf
#    in /proc/PID/environ, so a recycled PID is never hit), waits, then KILLs; then the same for any
#    munged/slurmctld/slurmd that carries this SLURM_CONF but is not listed (a lost pids file),
# 3. kills leftover slurmstepd processes of this cluster (their environ carries the same SLURM_CONF)
#    and the processes below them,
# 4. on the virtual cluster (start.sh --vnet: DIR/vnet), takes its nodes down (vnet.sh down: every
#    process left on a node dies with its PID namespace, the bridge and veth pairs are removed),
# 5. verifies that none of them is left. Exit 1 if something survived.
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ -d "$1" ] || { echo "stop.sh: no such directory: $1" >&2; exit 2; }
DIR=$(cd "$1" && pwd -P)
CONF=$DIR/slurm.conf
MARK="SLURM_CONF=$CONF"
CLEAN_PATH=/usr/sbin:/usr/bin:/sbin:/bin
. "$(cd "$(dirname "$0")" && pwd -P)/../lib.sh"

ours() {   # pid: does it carry our SLURM_CONF?
    tr '\0' '\n' 2>/dev/null < "/proc/$1/environ" | grep -qxF -- "$MARK"
}

stepds() {   # this cluster's slurmstepd processes
    local d pid exe
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        exe=$(readlink "$d/exe" 2>/dev/null) || continue
        case "$exe" in */slurmstepd|*/slurmstepd-wlm) ours "$pid" && echo "$pid" ;; esac
    done
}

strays() {   # daemons of this cluster (our SLURM_CONF) not listed in DIR/pids
    local d pid exe
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        exe=$(readlink "$d/exe" 2>/dev/null) || continue
        case "$exe" in
            /usr/sbin/munged|/usr/sbin/slurmctld*|/usr/sbin/slurmd|/usr/sbin/slurmd-wlm)
                case " ${daemons[*]} ${munged[*]} " in *" $pid "*) continue ;; esac
                ours "$pid" && echo "$pid" ;;
        esac
    done
}

daemons=()
munged=()
ctld=""
if [ -s "$DIR/pids" ]; then
    while read -r name pid; do
        [ -n "$pid" ] || continue
        if kill -0 "$pid" 2>/dev/null && ours "$pid"; then
            if [ "$name" = munged ]; then munged+=("$pid"); else daemons+=("$pid"); fi
            if [ "$name" = slurmctld ]; then ctld=$pid; fi
        fi
    done < "$DIR/pids"
fi

# 1. cancel this cluster's jobs (only through its own slurmctld, if that is alive)
if [ -n "$ctld" ] && [ -f "$CONF" ]; then
    jobs=$(env -i PATH=$CLEAN_PATH SLURM_CONF="$CONF" timeout 5 squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// }" ]; then
        env -i PATH=$CLEAN_PATH SLURM_CONF="$CONF" timeout 5 scancel $jobs 2>/dev/null
        for _ in $(seq 100); do
            [ -z "$(stepds)" ] && break
            sleep 0.05
        done
    fi
fi

# 2. the daemons we started, then unlisted ones of this cluster. Each takes 1.6-1.9 s to exit after
#    TERM, so they are stopped together; munged too unless job steps remain (they might still need it).
steps_before=$(stepds)
tree=$(descendants $steps_before)
if [ -z "$steps_before" ]; then
    term_wait_kill 10 "${daemons[@]}" "${munged[@]}"
else
    term_wait_kill 10 "${daemons[@]}"
fi
extra=()
for pid in $(strays); do
    echo "stop.sh: also stopping unlisted daemon of this cluster: $pid $(tr '\0' ' ' 2>/dev/null < /proc/$pid/cmdline)" >&2
    if [ "$(readlink /proc/$pid/exe)" = /usr/sbin/munged ]; then munged+=("$pid"); else extra+=("$pid"); fi
done
term_wait_kill 10 "${extra[@]}"
daemons+=("${extra[@]}")

# 3. leftover slurmstepd of this cluster and what runs below them
steps=$(alive $(echo $steps_before $(stepds) | tr ' ' '\n' | sort -un))
tree=$(alive $(echo $tree $(descendants $steps) | tr ' ' '\n' | sort -un))
if [ -n "$steps$tree" ]; then
    echo "stop.sh: leftover slurmstepd/job processes: $(echo $steps $tree)" >&2
    term_wait_kill 3 $steps $tree
fi

term_wait_kill 5 $(alive "${munged[@]}")

# 4. the virtual cluster's nodes
if [ -e "$DIR/vnet" ]; then
    "$(cd "$(dirname "$0")" && pwd -P)/../vnet/vnet.sh" down "$DIR" || echo "stop.sh: vnet.sh down $DIR failed" >&2
fi

# 5. verify
left=$(alive "${daemons[@]}" "${munged[@]}" $steps $tree $(stepds) $(strays))
if [ -n "$left" ]; then
    echo "stop.sh: still alive: $(echo $left)" >&2
    exit 1
fi
rm -f "/var/lock/envsched-slurm-ports.d/$(echo "$DIR" | tr / _)"
[ -f "$DIR/pids" ] && mv -f "$DIR/pids" "$DIR/pids.stopped"
echo "stop.sh: cluster in $DIR stopped"
