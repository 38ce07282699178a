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
for f in "$SGE_LIB/sge_qmaster" "$SGE_LIB/sge_execd" "$SGE_LIB/spoolinit" /usr/sbin/sge_qmaster \
         /usr/share/gridengine/default-configuration /var/lib/gridengine/bin; do
    [ -e "$f" ] || { echo "start.sh: $f missing (run install.sh)" >&2; exit 1; }
done
id "$ADMIN" >/dev/null 2>&1 || { echo "start.sh: no user $ADMIN (run install.sh)" >&2; exit 1; }

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
rm -rf "$ROOT" "$DIR/spool"
mkdir -p "$COMMON" "$DIR/spool/qmaster" "$DIR/spool/execd" "$DIR/log" "$DIR/conf" "$DIR/tmp"
chmod 0755 "$DIR" "$ROOT" "$ROOT/$CELL" "$COMMON" "$DIR/spool" "$DIR/log" "$DIR/conf"
chmod 1777 "$DIR/tmp"
for x in bin lib utilbin; do ln -s "/var/lib/gridengine/$x" "$ROOT/$x"; done
ln -s /usr/share/gridengine/util "$ROOT/util"
: > "$DIR/pids"

# ---------------------------------------------------------------- ports and gid range
# Serialise port choice + bind between concurrent start.sh runs on this host.
exec 9>/var/lock/envsched-uge-ports.lock
flock -w 60 9 || { echo "start.sh: could not take the port lock" >&2; exit 1; }
listening=" $(ss -Htln | awk '{print $4}' | sed 's/.*://' | sort -un | tr '\n' ' ') "
reserved=" $(cat /var/lock/envsched-uge-ports.d/* 2>/dev/null | tr '\n' ' ' || true) "
port_free() { case "$listening$reserved" in *" $1 "*) return 1 ;; esac; return 0; }
QPORT=${UGE_BASE_PORT:-16444}
while ! { port_free "$QPORT" && port_free $((QPORT + 1)); }; do
    QPORT=$((QPORT + 2))
    [ "$QPORT" -lt 30000 ] || { echo "start.sh: no free ports" >&2; exit 1; }
done
EPORT=$((QPORT + 1))
mkdir -p /var/lock/envsched-uge-ports.d
printf '%s\n%s\n' "$QPORT" "$EPORT" > "/var/lock/envsched-uge-ports.d/$(echo "$DIR" | tr / _)"
# Every job gets a supplementary gid from gid_range, and execd kills by it (ENABLE_ADDGRP_KILL is on
# by default): the ranges of concurrent clusters must never overlap. Derived from the unique port.
GID_LO=$((200000 + QPORT * 32))
GID_HI=$((GID_LO + 31))

cat > "$DIR/cluster.conf" <<EOF
# written by start.sh; read by stop.sh and the tests
QPORT=$QPORT
EPORT=$EPORT
HOST=$HOST
GID_LO=$GID_LO
GID_HI=$GID_HI
EOF

# ---------------------------------------------------------------- the cell
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
# The hostname resolves to 127.0.0.1, which reverse-resolves to "localhost": without this alias clients get
# 'access denied (client IP resolved to host name "localhost")'.
if [ "$HOST" != localhost ]; then echo "$HOST localhost" > "$COMMON/host_aliases"; fi
cat > "$COMMON/settings.sh" <<EOF
SGE_ROOT=$ROOT; export SGE_ROOT
SGE_CELL=$CELL; export SGE_CELL
SGE_QMASTER_PORT=$QPORT; export SGE_QMASTER_PORT
SGE_EXECD_PORT=$EPORT; export SGE_EXECD_PORT
EOF

# Global configuration: Debian's default, made fit for tests. Builtin qlogin/rlogin/rsh (already the
# Debian default) make qrsh work without rsh/ssh.
sed -e "s|^execd_spool_dir .*|execd_spool_dir        $DIR/spool/execd|" \
    -e 's|^mailer .*|mailer                 /bin/true|' \
    -e 's|^min_uid .*|min_uid                0|' \
    -e 's|^min_gid .*|min_gid                0|' \
    -e 's|^load_report_time .*|load_report_time       00:00:10|' \
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

# scheduler: 1 s interval, queues by seq_no (all.q first), no load adjustments
sge qconf -ssconf | sed -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
    -e 's/^queue_sort_method .*/queue_sort_method                 seqno/' \
    -e 's/^job_load_adjustments .*/job_load_adjustments              NONE/' \
    -e 's/^load_adjustment_decay_time .*/load_adjustment_decay_time        0:0:0/' > "$DIR/conf/sched_configuration"
sge qconf -Msconf "$DIR/conf/sched_configuration" >> "$DIR/log/qconf.out" 2>&1 || fail "qconf -Msconf failed"
sge qconf -as "$HOST" >> "$DIR/log/qconf.out" 2>&1 || fail "qconf -as $HOST failed"

# queues: the template without pe_list (make smp mpi: no such PEs here) and np_load_avg threshold
sge qconf -sq > "$DIR/conf/queue.template"
queue() {   # NAME SEQ_NO
    sed -e "s|^qname .*|qname                 $1|" \
        -e "s|^hostlist .*|hostlist              $HOST|" \
        -e "s|^seq_no .*|seq_no                $2|" \
        -e 's|^load_thresholds .*|load_thresholds       NONE|' \
        -e 's|^pe_list .*|pe_list               NONE|' \
        -e 's|^slots .*|slots                 2|' \
        -e "s|^tmpdir .*|tmpdir                $DIR/tmp|" \
        "$DIR/conf/queue.template" > "$DIR/conf/$1"
    sge qconf -Aq "$DIR/conf/$1" >> "$DIR/log/qconf.out" 2>&1 || fail "qconf -Aq $1 failed"
}
queue all.q 0
queue legacy.q 10

launch sge_execd "$DIR/spool/execd/*/execd.pid" /usr/sbin/sge_execd

cat > "$DIR/env.sh" <<EOF
# source me: the clients need this cluster's SGE_ROOT, cell and ports
export SGE_ROOT=$ROOT
export SGE_CELL=$CELL
export SGE_QMASTER_PORT=$QPORT
export SGE_EXECD_PORT=$EPORT
EOF
chmod 0644 "$DIR/env.sh" "$DIR/cluster.conf"

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
