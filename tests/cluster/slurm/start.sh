#!/bin/bash
# Start a private, throwaway Slurm cluster (one slurmctld, NODES slurmd on this host, a private munged).
#
#   start.sh DIR [NODES=2]
#
# Everything lives under DIR: slurm.conf, plugstack.conf (empty; tests rewrite it), a munge key and
# socket, state, spool (per node), logs, pid files. Ports are chosen free from 16817 up. Prints the time
# to ready. Writes DIR/env.sh (source it: exports SLURM_CONF) and DIR/pids ("name pid" per line, read by
# stop.sh). Extra slurm.conf lines may be passed in the environment variable SLURM_EXTRA_CONF.
#
# Needs root (slurmd runs jobs as their users; munged runs as user munge). Daemons are started with a
# clean environment (env -i) so nothing of the caller's leaks into jobs.
set -euo pipefail

usage() { echo "usage: $0 DIR [NODES=2]" >&2; exit 2; }
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
MUNGE_USER=munge
id "$MUNGE_USER" >/dev/null 2>&1 || { echo "start.sh: no user $MUNGE_USER (run install.sh)" >&2; exit 1; }

# ---------------------------------------------------------------- layout
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run" "$DIR/munge"
chmod 0755 "$DIR" "$DIR/spool" "$DIR/log" "$DIR/run"
chmod 0700 "$DIR/state"
for i in $(seq 1 "$NODES"); do mkdir -p -m 0755 "$DIR/spool/node$i"; done
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
LEGACY=node$NODES
{
cat <<EOF
# Throwaway test cluster written by tests/cluster/slurm/start.sh; do not edit by hand.
ClusterName=envtest
SlurmctldHost=$CTLHOST(127.0.0.1)
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
SlurmdTimeout=60
SlurmctldTimeout=60
TmpFS=/tmp
EOF
for i in $(seq 1 "$NODES"); do
    echo "NodeName=node$i NodeHostname=$CTLHOST NodeAddr=127.0.0.1 Port=${PORTS[$i]} CPUs=$CPUS RealMemory=1000 State=UNKNOWN"
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
for i in $(seq 1 "$NODES"); do
    launch_slurmd "node$i"
done

# ---------------------------------------------------------------- wait for ready
rc=0
wait_idle "$NODES" "$READY_TIMEOUT" || rc=$?
flock -u 9
[ $rc -ne 2 ] || fail "$DIED exited"
[ $rc -eq 0 ] || fail "not ready after ${READY_TIMEOUT}s; sinfo: $(printf '%s' "$STATES" | tr '\n' ';')"

printf 'start.sh: cluster envtest ready in %ss: %s nodes, slurmctld port %s, slurmd ports %s, SLURM_CONF=%s\n' \
    "$(elapsed "$t0")" "$NODES" "$CTLPORT" "${PORTS[*]:1}" "$CONF"
