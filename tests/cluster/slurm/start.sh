#!/bin/bash
# Start a private, throwaway Slurm cluster (one slurmctld, NODES slurmd on this host, a private munged).
#
#   start.sh DIR [NODES=2] [--vnet]
#
# --vnet (or SLURM_VNET=1): the virtual multi-node cluster (#15). Each slurmd runs in its own node of
# tests/cluster/vnet/vnet.sh (own network, UTS, mount and PID namespace, own hostname and /run), named
# vnode1..vnodeNODES, NodeAddr its address on a private bridge, NodeHostname its name; slurmctld is
# reached at the bridge's host address (SlurmctldHost=HOST(10.213.K.1)), which srun's callbacks use too;
# the munge socket is a path under DIR (a Unix socket works across network namespaces). A node failure
# is `vnet.sh kill DIR NODE` (SlurmdTimeout is 10 s here, so slurmctld notices it in seconds); its
# reboot `vnet.sh restart DIR NODE` then `restart-slurmd.sh DIR NODE`. stop.sh takes the nodes down.
#
# Everything lives under DIR: slurm.conf, plugstack.conf (empty; tests rewrite it), a munge key and
# socket, state, spool (per node), logs, pid files. Ports are chosen free from 16817 up. Prints the time
# to ready. Writes DIR/env.sh (source it: exports SLURM_CONF) and DIR/pids ("name pid" per line, read by
# stop.sh). Extra slurm.conf lines may be passed in the environment variable SLURM_EXTRA_CONF.
#
# Needs root (slurmd runs jobs as their users; munged runs as user munge). Daemons are started with a
# clean environment (env -i) so nothing of the caller's leaks into jobs.
set -euo pipefail

usage() { echo "usage: $0 DIR [NODES=2] [--vnet]" >&2; exit 2; }
VNET=${SLURM_VNET:-0}
args=()
for a in "$@"; do
    if [ "$a" = --vnet ]; then VNET=1; else args+=("$a"); fi
done
set -- "${args[@]}"
[ $# -ge 1 ] && [ $# -le 2 ] || usage
NODES=${2:-2}
case "$NODES" in ''|*[!0-9]*) usage ;; esac
[ "$NODES" -ge 1 ] || usage
[ "$(id -u)" -eq 0 ] || { echo "start.sh: needs root" >&2; exit 1; }

mkdir -p "$1"
DIR=$(cd "$1" && pwd -P)
HERE=$(cd "$(dirname "$0")" && pwd -P)
READY_TIMEOUT=${SLURM_READY_TIMEOUT:-30}
CONF=$DIR/slurm.conf
. "$HERE/common.sh"

if [ -s "$DIR/pids" ]; then
    echo "start.sh: $DIR/pids exists: a cluster may be running there (stop.sh $DIR first)" >&2
    exit 1
fi
for d in /proc/[0-9]*; do   # a cluster of this DIR whose pids file was lost
    if tr '\0' '\n' 2>/dev/null < "$d/environ" | grep -qxF "SLURM_CONF=$CONF"; then
        echo "start.sh: process ${d#/proc/} ($(tr '\0' ' ' 2>/dev/null < "$d/cmdline")) already runs with" \
             "SLURM_CONF=$CONF (stop.sh $DIR first)" >&2
        exit 1
    fi
done

t0=$(date +%s.%N)
CTLHOST=$(hostname -s)
CTLADDR=127.0.0.1
SLURMD_TIMEOUT=60
NODE_NAMES=()
for i in $(seq 1 "$NODES"); do NODE_NAMES+=("node$i"); done
if [ "$VNET" = 1 ]; then
    [ ! -e "$DIR/vnet/nodes" ] || { echo "start.sh: $DIR/vnet exists (stop.sh $DIR first)" >&2; exit 1; }
    NODE_NAMES=()
    for i in $(seq 1 "$NODES"); do NODE_NAMES+=("vnode$i"); done
    "$HERE/../vnet/vnet.sh" up "$DIR" "${NODE_NAMES[@]}" || {
        "$HERE/../vnet/vnet.sh" down "$DIR" || true; exit 1; }
    CTLADDR=$(cat "$DIR/vnet/head")
    SLURMD_TIMEOUT=${SLURM_VNET_SLURMD_TIMEOUT:-10}
fi
MUNGE_USER=munge
id "$MUNGE_USER" >/dev/null 2>&1 || { echo "start.sh: no user $MUNGE_USER (run install.sh)" >&2; exit 1; }

# ---------------------------------------------------------------- layout
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run" "$DIR/munge"
chmod 0755 "$DIR" "$DIR/spool" "$DIR/log" "$DIR/run"
chmod 0700 "$DIR/state"
for n in "${NODE_NAMES[@]}"; do mkdir -p -m 0755 "$DIR/spool/$n"; done
chown "$MUNGE_USER:$MUNGE_USER" "$DIR/munge"
chmod 0755 "$DIR/munge"       # clients (any user) must reach the socket; munged wants it not group/other-writable
: > "$DIR/pids"
[ -e "$DIR/plugstack.conf" ] || : > "$DIR/plugstack.conf"
chmod 0644 "$DIR/plugstack.conf"

# ---------------------------------------------------------------- munge (private key and socket)
MSOCK=$DIR/munge/munge.socket
if [ ! -s "$DIR/munge/munge.key" ]; then
    mungekey --create --keyfile="$DIR/munge/munge.key" --force >/dev/null
fi
chown "$MUNGE_USER:$MUNGE_USER" "$DIR/munge/munge.key"
chmod 0600 "$DIR/munge/munge.key"

fail() {
    echo "start.sh: $*" >&2
    tail_logs
    if [ "${SLURM_KEEP_ON_FAILURE:-0}" != 1 ]; then
        "$HERE/stop.sh" "$DIR" >&2 || true
    fi
    exit 1
}

# ---------------------------------------------------------------- ports
# Serialise port choice + bind between concurrent start.sh runs on this host.
exec 9>/var/lock/envsched-slurm-ports.lock
flock -w 60 9 || { echo "start.sh: could not take the port lock" >&2; exit 1; }
listening=" $(ss -Htln | awk '{print $4}' | sed 's/.*://' | sort -un | tr '\n' ' ') "
# ports reserved by other test clusters of ours that are starting or running (not yet listening)
reserved=" $(cat /var/lock/envsched-slurm-ports.d/* 2>/dev/null | tr "\n" " " || true) "
port_free() { case "$listening$reserved" in *" $1 "*) return 1 ;; esac; return 0; }
need=$((NODES + 1))
base=${SLURM_BASE_PORT:-16817}
PORTS=()
p=$base
while [ ${#PORTS[@]} -lt $need ]; do
    [ $p -lt 30000 ] || { echo "start.sh: no free ports" >&2; exit 1; }
    port_free $p && PORTS+=("$p")
    p=$((p + 1))
done
mkdir -p /var/lock/envsched-slurm-ports.d
printf '%s\n' "${PORTS[@]}" > "/var/lock/envsched-slurm-ports.d/$(echo "$DIR" | tr / _)"
CTLPORT=${PORTS[0]}

# ---------------------------------------------------------------- slurm.conf
CPUS=$(nproc)
LEGACY=${NODE_NAMES[$((NODES - 1))]}
{
cat <<EOF
# Throwaway test cluster written by tests/cluster/slurm/start.sh; do not edit by hand.
ClusterName=envtest
SlurmctldHost=$CTLHOST($CTLADDR)
SlurmctldPort=$CTLPORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MSOCK
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$DIR/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MailProg=/bin/true
MinJobAge=3600
MaxJobCount=100000
KillWait=2
InactiveLimit=0
SlurmdTimeout=$SLURMD_TIMEOUT
SlurmctldTimeout=60
TmpFS=/tmp
EOF
for i in $(seq 1 "$NODES"); do
    n=${NODE_NAMES[$((i - 1))]}
    if [ "$VNET" = 1 ]; then
        addr=$(awk -v n="$n" '$1 == n { print $2 }' "$DIR/vnet/nodes")
        echo "NodeName=$n NodeHostname=$n NodeAddr=$addr Port=${PORTS[$i]} CPUs=$CPUS RealMemory=1000 State=UNKNOWN"
    else
        echo "NodeName=$n NodeHostname=$CTLHOST NodeAddr=127.0.0.1 Port=${PORTS[$i]} CPUs=$CPUS RealMemory=1000 State=UNKNOWN"
    fi
done
echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
echo "PartitionName=legacy Nodes=$LEGACY MaxTime=INFINITE State=UP"
if [ -n "${SLURM_EXTRA_CONF:-}" ]; then
    echo "# SLURM_EXTRA_CONF"
    printf '%s\n' "$SLURM_EXTRA_CONF"
fi
} > "$CONF"
chmod 0644 "$CONF"

cat > "$DIR/env.sh" <<EOF
# source me: the clients need the private config
export SLURM_CONF=$CONF
EOF
chmod 0644 "$DIR/env.sh"

# ---------------------------------------------------------------- start daemons
launch munged "$DIR/log/munged.out" \
    setpriv --reuid="$MUNGE_USER" --regid="$MUNGE_USER" --clear-groups -- \
    /usr/sbin/munged --foreground --socket="$MSOCK" --key-file="$DIR/munge/munge.key" \
    --log-file="$DIR/munge/munged.log" --pid-file="$DIR/munge/munged.pid" \
    --seed-file="$DIR/munge/munged.seed"
for _ in $(seq 100); do
    [ -S "$MSOCK" ] && munge -n -S "$MSOCK" </dev/null | unmunge -S "$MSOCK" >/dev/null 2>&1 && break
    kill -0 "$LAST_PID" 2>/dev/null || fail "munged exited"
    sleep 0.05
done
munge -n -S "$MSOCK" </dev/null | unmunge -S "$MSOCK" >/dev/null 2>&1 || fail "munged not answering on $MSOCK"

launch slurmctld "$DIR/log/slurmctld.out" /usr/sbin/slurmctld -D -i -f "$CONF"
for n in "${NODE_NAMES[@]}"; do
    launch_slurmd "$n" || fail "slurmd $n did not start"
done

# ---------------------------------------------------------------- wait for ready
rc=0
wait_idle "$NODES" "$READY_TIMEOUT" || rc=$?
flock -u 9
[ $rc -ne 2 ] || fail "$DIED exited"
[ $rc -eq 0 ] || fail "not ready after ${READY_TIMEOUT}s; sinfo: $(printf '%s' "$STATES" | tr '\n' ';')"

printf 'start.sh: cluster envtest ready in %ss: %s nodes%s, slurmctld port %s, slurmd ports %s, SLURM_CONF=%s\n' \
    "$(elapsed "$t0")" "$NODES" "$([ "$VNET" = 1 ] && echo " (virtual: ${NODE_NAMES[*]}, head $CTLADDR)")" \
    "$CTLPORT" "${PORTS[*]:1}" "$CONF"
