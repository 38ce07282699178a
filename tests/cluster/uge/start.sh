#!/bin/bash
# Start a private, throwaway Grid Engine cluster (Son of Grid Engine 8.1.9 from Debian, our stand-in for
# UGE): one sge_qmaster and one sge_execd on this host, queues all.q and legacy.q. (A cell whose
# qmaster and execution hosts are separate virtual nodes, for multi-host cases: vcell.sh.)
#
#   start.sh DIR
#
# Everything lives under DIR, nothing in the packages' system-wide cell (/var/lib/gridengine/default):
#   DIR/root            a private SGE_ROOT: bin, lib, utilbin, util are symlinks to the packaged ones,
#                       DIR/root/default/common is this cluster's cell (bootstrap, act_qmaster,
#                       host_aliases, configuration, sched_configuration, accounting)
#   DIR/spool/qmaster   qmaster spool (classic flat-file spooling, messages, qmaster.pid)
#   DIR/spool/execd     execd spool (<host>/messages, <host>/execd.pid, active_jobs)
#   DIR/tmp             the queues' tmpdir (1777), so that job TMPDIRs never collide between clusters
#   DIR/log             the daemons' stdout/stderr
# Because SGE_ROOT, the ports (SGE_QMASTER_PORT/SGE_EXECD_PORT, chosen free from 16444 up, in pairs)
# and the gid_range are private, several clusters can run at once on one host.
#
# Writes DIR/env.sh (source it: exports SGE_ROOT, SGE_CELL, SGE_QMASTER_PORT, SGE_EXECD_PORT),
# DIR/cluster.conf (shell variables for stop.sh: ports, host, gid range) and DIR/pids ("name pid" per
# line, read by stop.sh). Prints the time to ready.
#
# Needs root (execd runs jobs as their users). Daemons are started with a clean environment (env -i):
# execd's environment leaks into jobs. They daemonize; their PIDs come from their pid files and are
# checked to carry SGE_ROOT=DIR/root.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "start.sh: needs root" >&2; exit 1; }

mkdir -p "$1"
DIR=$(cd "$1" && pwd -P)
HERE=$(cd "$(dirname "$0")" && pwd -P)
READY_TIMEOUT=${UGE_READY_TIMEOUT:-60}
PROG=start.sh
. "$HERE/common.sh"
ADMIN=sgeadmin

if [ -s "$DIR/pids" ]; then
    echo "start.sh: $DIR/pids exists: a cluster may be running there (stop.sh $DIR first)" >&2
    exit 1
fi
# a cluster of this DIR whose pids file was lost (clients with DIR/env.sh sourced carry the same
# SGE_ROOT, so only the daemons and shepherds count)
for pid in $(sge_procs sge_qmaster sge_execd sge_shepherd); do
    echo "start.sh: process $pid ($(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline")) already runs with" \
         "$MARK (stop.sh $DIR first)" >&2
    exit 1
done
check_installed

t0=$(date +%s.%N)
HOST=$(hostname)

fail() {
    echo "start.sh: $*" >&2
    tail_logs
    if [ "${UGE_KEEP_ON_FAILURE:-0}" != 1 ]; then
        "$HERE/stop.sh" "$DIR" >&2 || true
    fi
    exit 1
}

# ---------------------------------------------------------------- layout
make_layout

# ---------------------------------------------------------------- ports and gid range
reserve_ports      # holds the port lock until the qmaster has bound its port
write_cluster_conf "# written by start.sh; read by stop.sh and the tests"

# ---------------------------------------------------------------- the cell
write_cell_files
# The hostname resolves to 127.0.0.1, which reverse-resolves to "localhost": without this alias clients get
# 'access denied (client IP resolved to host name "localhost")'.
if [ "$HOST" != localhost ]; then echo "$HOST localhost" > "$COMMON/host_aliases"; fi
write_global_conf 00:00:10
init_spool

# ---------------------------------------------------------------- daemons
# launch NAME PIDFILE DAEMON: start a daemonizing sge daemon with a clean environment, wait for its pid
# file, check the pid, append "NAME PID" to DIR/pids. Sets LAST_PID.
launch() {
    local name=$1 pidfile=$2 daemon=$3 out=$DIR/log/$1.out lpid rc pid="" exe
    rm -f $pidfile
    env -i PATH=$CLEAN_PATH LANG=C SGE_ROOT="$ROOT" SGE_CELL=$CELL SGE_QMASTER_PORT="$QPORT" \
        SGE_EXECD_PORT="$EPORT" setsid "$daemon" </dev/null >>"$out" 2>&1 9>&- &
    lpid=$!
    rc=0; wait "$lpid" || rc=$?
    [ "$rc" -eq 0 ] || fail "$name exited with status $rc at start"
    for _ in $(seq 200); do
        for f in $pidfile; do [ -s "$f" ] && pid=$(cat "$f" 2>/dev/null) || true; done
        if [ -n "$pid" ] && running "$pid"; then
            exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
            if [ "$exe" = "$SGE_LIB/$name" ] && ours "$pid"; then
                echo "$name $pid" >> "$DIR/pids"
                LAST_PID=$pid
                return 0
            fi
        fi
        pid=""
        sleep 0.05
    done
    fail "$name wrote no pid file ($pidfile) within 10s"
}

deadline=$(( $(date +%s) + READY_TIMEOUT ))
launch sge_qmaster "$DIR/spool/qmaster/qmaster.pid" /usr/sbin/sge_qmaster
QM_PID=$LAST_PID
until sge qconf -sh >/dev/null 2>&1; do
    running "$QM_PID" || fail "sge_qmaster (pid $QM_PID) exited"
    [ "$(date +%s)" -lt "$deadline" ] || fail "sge_qmaster not answering after ${READY_TIMEOUT}s"
    sleep 0.05
done
flock -u 9   # the qmaster port is bound now; execd's port is still reserved in ports.d

configure_sched sge
add_queues sge "$HOST"

launch sge_execd "$DIR/spool/execd/*/execd.pid" /usr/sbin/sge_execd

write_env_sh "source me: the clients need this cluster's SGE_ROOT, cell and ports"

# ---------------------------------------------------------------- wait for ready
# qhost reports load values for the host, and both queue instances are there without a state
# (no "a"larm/"u"nknown, ...).
QSTAT=""
while :; do
    for n in sge_qmaster sge_execd; do
        pid=$(awk -v n=$n '$1 == n {print $2}' "$DIR/pids")
        running "$pid" || fail "$n (pid $pid) exited"
    done
    load=$(sge qhost -h "$HOST" 2>/dev/null | awk -v h="$HOST" '$1 == h {print $7}')
    QSTAT=$(sge qstat -f 2>/dev/null | awk '$1 ~ /@/' || true)
    ok=$(printf '%s\n' "$QSTAT" | awk -v h="$HOST" '($1 == "all.q@" h || $1 == "legacy.q@" h) && NF == 5 && $4 != "-NA-"' | wc -l)
    if [ -n "$load" ] && [ "$load" != "-" ] && [ "$ok" -eq 2 ]; then break; fi
    [ "$(date +%s)" -lt "$deadline" ] || fail "not ready after ${READY_TIMEOUT}s; load=${load:-none}; qstat -f: $(printf '%s' "$QSTAT" | tr -s ' ' | tr '\n' ';')"
    sleep 0.05
done

printf 'start.sh: Grid Engine cluster ready in %ss: host %s, qmaster port %s, execd port %s, SGE_ROOT=%s, gid_range %s-%s\n' \
    "$(elapsed "$t0")" "$HOST" "$QPORT" "$EPORT" "$ROOT" "$GID_LO" "$GID_HI"
