#!/bin/bash
# A throwaway Grid Engine cell across virtual nodes (#15): sge_qmaster on a head node and one sge_execd
# on each execution node, every node its own network, UTS, mount and PID namespace
# (tests/cluster/vnet/vnet.sh: own hostname and address, own /run, the generated /etc/hosts), so
# that Grid Engine sees hosts that are as separate as real ones: a job's pin on one host is not on
# another, and a host can fail (vnet.sh kill) and come back (vnet.sh restart).
#
#   vcell.sh start DIR [HEAD EXEC...]   nodes HEAD (default ghead) and EXEC... (gexec1 gexec2), the cell,
#                                       qmaster on HEAD, execd on each EXEC; queues all.q and legacy.q
#                                       (2 slots each on every EXEC); prints the time to ready
#   vcell.sh stop DIR                   every node down (the daemons and jobs die with them), then
#                                       checks that no process of this cell is left
#   vcell.sh execd DIR NODE             start sge_execd on NODE (after a restart of it or of the node)
#   vcell.sh pids DIR NODE NAME...      host PIDs of this cell's NAME processes (sge_execd,
#                                       sge_shepherd, sge_qmaster) on NODE
#   vcell.sh qsh DIR CMD...             a client command on the head node (SGE_* set, as root)
#
# The layout is start.sh's (DIR/root: the private SGE_ROOT, DIR/spool, DIR/tmp, DIR/log, DIR/conf,
# DIR/env.sh, DIR/cluster.conf) plus DIR/vnet (the nodes). The file system is the host's in every
# node: the cell, the spool (execd spools under spool/execd/<host>), home directories and the test's
# trees are shared as on a cluster with NFS; /run is each node's own, and so the queues' tmpdir
# (/run/uge-tmp: a job's TMPDIR is local to each host, as on real hosts).
#
# Host names: inside the nodes every name resolves through the generated /etc/hosts, both ways, to the
# node's bridge address (not 127.0.0.1), so no host_aliases are needed; act_qmaster is HEAD. The host
# itself cannot resolve the nodes' names: clients run on HEAD (`vcell.sh qsh`, VNet.argv). Each node
# has its own network namespace, so the ports could be anything; they are still reserved like
# start.sh's, because the gid_range derives from them and gids are not namespaced (stop.sh kills
# by them).
#
# Daemons write their pid files with the PIDs of their node's namespace; DIR/pids has "NAME PID NODE"
# with the host's PID, found by executable, SGE_ROOT=DIR/root in the environment and the node's PID
# namespace.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '8,18p' "$0" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "vcell.sh: needs root" >&2; exit 1; }
CMD=$1
[ "$CMD" != start ] || mkdir -p "$2"
[ -d "$2" ] || { echo "vcell.sh: no such directory: $2" >&2; exit 2; }
DIR=$(cd "$2" && pwd -P)
shift 2
HERE=$(cd "$(dirname "$0")" && pwd -P)
VNET=$HERE/../vnet/vnet.sh
READY_TIMEOUT=${UGE_READY_TIMEOUT:-60}
QPORT="" EPORT="" HOST="" GID_LO="" GID_HI="" EXECS=""
PROG=vcell.sh
. "$HERE/common.sh"
ADMIN=sgeadmin
NODE_TMP=/run/uge-tmp           # the queues' tmpdir, on each execution node's own /run
# shellcheck disable=SC1091
[ -f "$DIR/cluster.conf" ] && . "$DIR/cluster.conf"

node_init() { awk -v n="$1" '$1 == n { print $3 }' "$DIR/vnet/nodes" 2>/dev/null; }

# node_procs NODE NAME...: host PIDs of this cell's NAME processes in NODE's PID namespace
node_procs() {
    local node=$1 init ns pid
    shift
    init=$(node_init "$node")
    [ -n "$init" ] || return 0
    ns=$(readlink "/proc/$init/ns/pid" 2>/dev/null) || return 0
    for pid in $(sge_procs "$@"); do
        [ "$(readlink "/proc/$pid/ns/pid" 2>/dev/null)" = "$ns" ] && echo "$pid"
    done
    return 0
}

on() {   # NODE CMD...: as root on NODE with a clean environment (execd's leaks into jobs)
    local node=$1
    shift
    bash "$VNET" exec "$DIR" "$node" env -i PATH=$CLEAN_PATH LANG=C HOME=/root USER=root LOGNAME=root \
        SGE_ROOT="$ROOT" SGE_CELL=$CELL SGE_QMASTER_PORT="$QPORT" SGE_EXECD_PORT="$EPORT" "$@"
}

qsh() { on "$HOST" "$@"; }

fail() {
    echo "vcell.sh: $*" >&2
    tail_logs
    if [ "${UGE_KEEP_ON_FAILURE:-0}" != 1 ]; then "$0" stop "$DIR" >&2 || true; fi
    exit 1
}

# launch NODE NAME DAEMON: start a daemonizing sge daemon on NODE; appends "NAME PID NODE" to DIR/pids
launch() {
    local node=$1 name=$2 daemon=$3 pid=""
    # the queues' tmpdir is node-local, as on real hosts: execd makes a job's TMPDIR there and
    # removes it when its own part of the job ends (a shared one: a PE job's task on one host lost
    # its TMPDIR when the other host's part ended first)
    [ "$name" != sge_execd ] || on "$node" mkdir -p -m 1777 "$NODE_TMP" || fail "mkdir $NODE_TMP on $node"
    on "$node" setsid "$daemon" </dev/null >>"$DIR/log/$name-$node.out" 2>&1 9>&- \
        || fail "$name on $node exited with status $? at start"
    for _ in $(seq 200); do
        pid=$(node_procs "$node" "$name" | head -n 1)
        [ -n "$pid" ] && break
        sleep 0.05
    done
    [ -n "$pid" ] || fail "$name did not start on $node"
    echo "$name $pid $node" >> "$DIR/pids"
}

case "$CMD" in
start)
    [ $# -ge 2 ] || set -- ghead gexec1 gexec2
    HOST=$1
    shift
    EXECS="$*"
    if [ -s "$DIR/pids" ] || [ -e "$DIR/vnet/nodes" ]; then
        echo "vcell.sh: a cell may be running in $DIR (vcell.sh stop $DIR first)" >&2
        exit 1
    fi
    check_installed
    t0=$(date +%s.%N)

    make_layout
    reserve_ports      # (and from them the gid range)
    flock -u 9
    write_cluster_conf "# written by vcell.sh; read by vcell.sh and the tests" "EXECS=\"$EXECS\""

    bash "$VNET" up "$DIR" "$HOST" $EXECS || fail "vnet.sh up failed"

    write_cell_files
    # start.sh's global configuration; execd reports load every 5 s (a failed host is noticed sooner)
    write_global_conf 00:00:05 \
        -e 's|^max_unheard .*|max_unheard            00:00:20|' \
        -e 's|^reschedule_unknown .*|reschedule_unknown     00:00:00|'
    init_spool

    deadline=$(( $(date +%s) + READY_TIMEOUT ))
    launch "$HOST" sge_qmaster /usr/sbin/sge_qmaster
    until qsh qconf -sh >/dev/null 2>&1; do
        [ -n "$(node_procs "$HOST" sge_qmaster)" ] || fail "sge_qmaster exited"
        [ "$(date +%s)" -lt "$deadline" ] || fail "sge_qmaster not answering after ${READY_TIMEOUT}s"
        sleep 0.05
    done
    configure_sched qsh
    for h in $EXECS; do
        qsh qconf -ah "$h" >> "$DIR/log/qconf.out" 2>&1 || fail "qconf -ah $h failed"
    done
    for h in $EXECS; do launch "$h" sge_execd /usr/sbin/sge_execd; done
    until [ "$(qsh qconf -sel 2>/dev/null | grep -cxF -f <(printf '%s\n' $EXECS) || true)" -eq "$(echo $EXECS | wc -w)" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "execution hosts not registered after ${READY_TIMEOUT}s: $(qsh qconf -sel 2>&1 | tr '\n' ' ')"
        sleep 0.1
    done

    add_queues qsh "$EXECS" "$NODE_TMP"
    write_env_sh "source me on the head node ($HOST): the clients need this cell's SGE_ROOT, cell and ports"

    # ready: every execution host reports load, every queue instance is there without a state
    want=$(( 2 * $(echo $EXECS | wc -w) ))
    while :; do
        QSTAT=$(qsh qstat -f 2>/dev/null | awk '$1 ~ /@/ && NF == 5 && $4 != "-NA-"' || true)
        ok=$(printf '%s\n' "$QSTAT" | awk 'NF' | wc -l)
        [ "$ok" -eq "$want" ] && break
        [ "$(date +%s)" -lt "$deadline" ] || fail "not ready after ${READY_TIMEOUT}s; qstat -f: $(printf '%s' "$QSTAT" | tr -s ' ' | tr '\n' ';')"
        sleep 0.1
    done
    printf 'vcell.sh: Grid Engine cell ready in %ss: qmaster on %s, execd on %s, qmaster port %s, execd port %s, SGE_ROOT=%s, gid_range %s-%s\n' \
        "$(elapsed "$t0")" "$HOST" "$EXECS" "$QPORT" "$EPORT" "$ROOT" "$GID_LO" "$GID_HI"
    ;;
execd)
    [ $# -eq 1 ] || { echo "usage: vcell.sh execd DIR NODE" >&2; exit 2; }
    [ -z "$(node_procs "$1" sge_execd)" ] || { echo "vcell.sh: sge_execd already runs on $1" >&2; exit 1; }
    launch "$1" sge_execd /usr/sbin/sge_execd
    ;;
pids)
    [ $# -ge 2 ] || { echo "usage: vcell.sh pids DIR NODE NAME..." >&2; exit 2; }
    node_procs "$@"
    ;;
qsh)
    qsh "$@"
    ;;
stop)
    # every node at once: its init's SIGKILL takes the daemons, shepherds and jobs with it, and the
    # node's /run (run_dir, pins) with its mount namespace
    if [ -e "$DIR/vnet" ]; then bash "$VNET" down "$DIR"; fi
    left=""
    for _ in $(seq 60); do
        left=$(alive $(sge_procs sge_qmaster sge_execd sge_shepherd) \
               $( [ -n "$GID_LO" ] && addgrp_procs "$GID_LO" "$GID_HI"))
        [ -z "$left" ] && break
        sleep 0.05
    done
    if [ -n "$left" ]; then
        echo "vcell.sh: processes of this cell outside its nodes: $(echo $left)" >&2
        term_wait_kill 3 $left
        left=$(alive $left)
        [ -z "$left" ] || { echo "vcell.sh: still alive: $(echo $left)" >&2; exit 1; }
    fi
    rm -f "$PORTS_D/$(echo "$DIR" | tr / _)"
    [ -f "$DIR/pids" ] && mv -f "$DIR/pids" "$DIR/pids.stopped"
    echo "vcell.sh: cell in $DIR stopped"
    ;;
*) sed -n '8,18p' "$0" >&2; exit 2 ;;
esac
