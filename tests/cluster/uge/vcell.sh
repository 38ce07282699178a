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
# trees are shared as on a cluster with NFS; /run is each node's own.
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
. "$HERE/common.sh"
ADMIN=sgeadmin
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
    for f in "$SGE_LIB/sge_qmaster" "$SGE_LIB/sge_execd" "$SGE_LIB/spoolinit" /usr/sbin/sge_qmaster \
             /usr/share/gridengine/default-configuration /var/lib/gridengine/bin; do
        [ -e "$f" ] || { echo "vcell.sh: $f missing (run install.sh)" >&2; exit 1; }
    done
    id "$ADMIN" >/dev/null 2>&1 || { echo "vcell.sh: no user $ADMIN (run install.sh)" >&2; exit 1; }
    t0=$(date +%s.%N)

    rm -rf "$ROOT" "$DIR/spool"
    mkdir -p "$COMMON" "$DIR/spool/qmaster" "$DIR/spool/execd" "$DIR/log" "$DIR/conf" "$DIR/tmp"
    chmod 0755 "$DIR" "$ROOT" "$ROOT/$CELL" "$COMMON" "$DIR/spool" "$DIR/log" "$DIR/conf"
    chmod 1777 "$DIR/tmp"
    for x in bin lib utilbin; do ln -s "/var/lib/gridengine/$x" "$ROOT/$x"; done
    ln -s /usr/share/gridengine/util "$ROOT/util"
    : > "$DIR/pids"

    # ports (and from them the gid range), reserved as start.sh does
    exec 9>/var/lock/envsched-uge-ports.lock
    flock -w 60 9 || { echo "vcell.sh: could not take the port lock" >&2; exit 1; }
    listening=" $(ss -Htln | awk '{print $4}' | sed 's/.*://' | sort -un | tr '\n' ' ') "
    reserved=" $(cat /var/lock/envsched-uge-ports.d/* 2>/dev/null | tr '\n' ' ' || true) "
    port_free() { case "$listening$reserved" in *" $1 "*) return 1 ;; esac; return 0; }
    QPORT=${UGE_BASE_PORT:-16444}
    while ! { port_free "$QPORT" && port_free $((QPORT + 1)); }; do
        QPORT=$((QPORT + 2))
        [ "$QPORT" -lt 30000 ] || { echo "vcell.sh: no free ports" >&2; exit 1; }
    done
    EPORT=$((QPORT + 1))
    mkdir -p /var/lock/envsched-uge-ports.d
    printf '%s\n%s\n' "$QPORT" "$EPORT" > "/var/lock/envsched-uge-ports.d/$(echo "$DIR" | tr / _)"
    flock -u 9
    GID_LO=$((200000 + QPORT * 32))
    GID_HI=$((GID_LO + 31))
    cat > "$DIR/cluster.conf" <<EOF
# written by vcell.sh; read by vcell.sh and the tests
QPORT=$QPORT
EPORT=$EPORT
HOST=$HOST
EXECS="$EXECS"
GID_LO=$GID_LO
GID_HI=$GID_HI
EOF

    bash "$VNET" up "$DIR" "$HOST" $EXECS || fail "vnet.sh up failed"

    cat > "$COMMON/bootstrap" <<EOF
# Version: 8.1.9
admin_user              $ADMIN
default_domain          none
ignore_fqdn             true
spooling_method         classic
spooling_lib            libspoolc
spooling_params         $COMMON;$DIR/spool/qmaster
binary_path             /usr/sbin
qmaster_spool_dir       $DIR/spool/qmaster
security_mode           none
listener_threads        2
worker_threads          2
scheduler_threads       1
EOF
    echo "$HOST" > "$COMMON/act_qmaster"
    cat > "$COMMON/settings.sh" <<EOF
SGE_ROOT=$ROOT; export SGE_ROOT
SGE_CELL=$CELL; export SGE_CELL
SGE_QMASTER_PORT=$QPORT; export SGE_QMASTER_PORT
SGE_EXECD_PORT=$EPORT; export SGE_EXECD_PORT
EOF
    # start.sh's global configuration; execd reports load every 5 s (a failed host is noticed sooner)
    sed -e "s|^execd_spool_dir .*|execd_spool_dir        $DIR/spool/execd|" \
        -e 's|^mailer .*|mailer                 /bin/true|' \
        -e 's|^min_uid .*|min_uid                0|' \
        -e 's|^min_gid .*|min_gid                0|' \
        -e 's|^load_report_time .*|load_report_time       00:00:05|' \
        -e 's|^max_unheard .*|max_unheard            00:00:20|' \
        -e 's|^reschedule_unknown .*|reschedule_unknown     00:00:00|' \
        -e 's|^loglevel .*|loglevel               log_info|' \
        -e 's|^administrator_mail .*|administrator_mail     none|' \
        -e 's|^reporting_params .*|reporting_params       accounting=true reporting=false flush_time=00:00:01 joblog=false sharelog=00:00:00 accounting_flush_time=00:00:00|' \
        -e "s|^gid_range .*|gid_range              $GID_LO-$GID_HI|" \
        /usr/share/gridengine/default-configuration > "$DIR/conf/global"
    for k in qlogin_command qlogin_daemon rlogin_command rlogin_daemon rsh_command rsh_daemon; do
        grep -Eq "^$k[[:space:]]+builtin\$" "$DIR/conf/global" || echo "$k builtin" >> "$DIR/conf/global"
    done
    chmod 0644 "$DIR/conf/global"
    chown -R "$ADMIN:$ADMIN" "$COMMON" "$DIR/spool/qmaster" "$DIR/spool/execd"
    as_admin() {
        env -i PATH=$CLEAN_PATH LANG=C SGE_ROOT="$ROOT" SGE_CELL=$CELL \
            setpriv --reuid="$ADMIN" --regid="$ADMIN" --clear-groups -- "$@"
    }
    (
        cd "$COMMON"
        as_admin "$SGE_LIB/spoolinit" classic libspoolc "$COMMON;$DIR/spool/qmaster" init
        as_admin "$SGE_LIB/spooldefaults" configuration "$DIR/conf/global"
        as_admin "$SGE_LIB/spooldefaults" complexes /usr/share/gridengine/util/resources/centry
        as_admin "$SGE_LIB/spooldefaults" usersets /usr/share/gridengine/util/resources/usersets
        as_admin "$SGE_LIB/spooldefaults" managers "$ADMIN" root
    ) > "$DIR/log/init.out" 2>&1 || { cat "$DIR/log/init.out" >&2; fail "initialising the spool failed"; }

    deadline=$(( $(date +%s) + READY_TIMEOUT ))
    launch "$HOST" sge_qmaster /usr/sbin/sge_qmaster
    until qsh qconf -sh >/dev/null 2>&1; do
        [ -n "$(node_procs "$HOST" sge_qmaster)" ] || fail "sge_qmaster exited"
        [ "$(date +%s)" -lt "$deadline" ] || fail "sge_qmaster not answering after ${READY_TIMEOUT}s"
        sleep 0.05
    done
    qsh qconf -ssconf | sed -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
        -e 's/^queue_sort_method .*/queue_sort_method                 seqno/' \
        -e 's/^job_load_adjustments .*/job_load_adjustments              NONE/' \
        -e 's/^load_adjustment_decay_time .*/load_adjustment_decay_time        0:0:0/' > "$DIR/conf/sched_configuration"
    qsh qconf -Msconf "$DIR/conf/sched_configuration" >> "$DIR/log/qconf.out" 2>&1 || fail "qconf -Msconf failed"
    qsh qconf -as "$HOST" >> "$DIR/log/qconf.out" 2>&1 || fail "qconf -as $HOST failed"
    for h in $EXECS; do
        qsh qconf -ah "$h" >> "$DIR/log/qconf.out" 2>&1 || fail "qconf -ah $h failed"
    done
    for h in $EXECS; do launch "$h" sge_execd /usr/sbin/sge_execd; done
    until [ "$(qsh qconf -sel 2>/dev/null | grep -cxF -f <(printf '%s\n' $EXECS) || true)" -eq "$(echo $EXECS | wc -w)" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "execution hosts not registered after ${READY_TIMEOUT}s: $(qsh qconf -sel 2>&1 | tr '\n' ' ')"
        sleep 0.1
    done

    qsh qconf -sq > "$DIR/conf/queue.template"
    queue() {   # NAME SEQ_NO
        sed -e "s|^qname .*|qname                 $1|" \
            -e "s|^hostlist .*|hostlist              $EXECS|" \
            -e "s|^seq_no .*|seq_no                $2|" \
            -e 's|^load_thresholds .*|load_thresholds       NONE|' \
            -e 's|^pe_list .*|pe_list               NONE|' \
            -e 's|^slots .*|slots                 2|' \
            -e "s|^tmpdir .*|tmpdir                $DIR/tmp|" \
            "$DIR/conf/queue.template" > "$DIR/conf/$1"
        qsh qconf -Aq "$DIR/conf/$1" >> "$DIR/log/qconf.out" 2>&1 || fail "qconf -Aq $1 failed"
    }
    queue all.q 0
    queue legacy.q 10

    cat > "$DIR/env.sh" <<EOF
# source me on the head node ($HOST): the clients need this cell's SGE_ROOT, cell and ports
export SGE_ROOT=$ROOT
export SGE_CELL=$CELL
export SGE_QMASTER_PORT=$QPORT
export SGE_EXECD_PORT=$EPORT
EOF
    chmod 0644 "$DIR/env.sh" "$DIR/cluster.conf"

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
    rm -f "/var/lock/envsched-uge-ports.d/$(echo "$DIR" | tr / _)"
    [ -f "$DIR/pids" ] && mv -f "$DIR/pids" "$DIR/pids.stopped"
    echo "vcell.sh: cell in $DIR stopped"
    ;;
*) sed -n '8,18p' "$0" >&2; exit 2 ;;
esac
