# Shared by start.sh, vcell.sh and stop.sh (sourced; expects DIR and HERE to be set; the functions that
# start a cell also PROG, the script's name for its messages, and ADMIN).
. "$HERE/../lib.sh"
CLEAN_PATH=/usr/sbin:/usr/bin:/sbin:/bin
ROOT=$DIR/root                   # this cluster's private SGE_ROOT (see start.sh)
CELL=default
COMMON=$ROOT/$CELL/common
MARK="SGE_ROOT=$ROOT"            # every daemon and shepherd of this cluster carries it in its environ
SGE_LIB=/usr/lib/gridengine      # where Debian puts the real binaries (/usr/sbin/sge_* are wrappers)

# sge [CMD...]: a client command against this cluster, with a clean environment
sge() {
    env -i PATH=$CLEAN_PATH LANG=C HOME=/root USER=root LOGNAME=root SGE_ROOT="$ROOT" SGE_CELL=$CELL \
        SGE_QMASTER_PORT="$QPORT" SGE_EXECD_PORT="$EPORT" "$@"
}

ours() {   # pid: does it carry this cluster's SGE_ROOT?
    tr '\0' '\n' 2>/dev/null < "/proc/$1/environ" | grep -qxF -- "$MARK"
}

# sge_procs NAME...: pids of this cluster's processes whose executable is $SGE_LIB/NAME
sge_procs() {
    local d pid exe n
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        exe=$(readlink "$d/exe" 2>/dev/null) || continue
        for n in "$@"; do
            if [ "$exe" = "$SGE_LIB/$n" ]; then
                running "$pid" && ours "$pid" && echo "$pid"
                break
            fi
        done
    done
    return 0
}

# addgrp_procs LO HI: processes holding a supplementary group in [LO, HI] (this cluster's gid_range:
# Grid Engine gives every job one, and the ranges of concurrent test clusters never overlap)
addgrp_procs() {
    local d pid g
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        for g in $(awk '/^Groups:/{ $1=""; print }' "$d/status" 2>/dev/null); do
            if [ "$g" -ge "$1" ] && [ "$g" -le "$2" ]; then
                running "$pid" && echo "$pid"
                break
            fi
        done
    done
    return 0
}

tail_logs() {
    local f
    for f in "$DIR"/log/*.out "$DIR"/spool/qmaster/messages "$DIR"/spool/execd/*/messages; do
        [ -s "$f" ] || continue
        echo "---- tail $f" >&2
        tail -n 25 "$f" >&2
    done
}

# ---------------------------------------------------------------- starting a cell (start.sh, vcell.sh)
PORTS_D=/var/lock/envsched-uge-ports.d    # one file per running cell: its two reserved ports

check_installed() {   # the packaged binaries and files, and the admin user (install.sh)
    local f
    for f in "$SGE_LIB/sge_qmaster" "$SGE_LIB/sge_execd" "$SGE_LIB/spoolinit" /usr/sbin/sge_qmaster \
             /usr/share/gridengine/default-configuration /var/lib/gridengine/bin; do
        [ -e "$f" ] || { echo "$PROG: $f missing (run install.sh)" >&2; exit 1; }
    done
    id "$ADMIN" >/dev/null 2>&1 || { echo "$PROG: no user $ADMIN (run install.sh)" >&2; exit 1; }
}

make_layout() {   # DIR/root (the private SGE_ROOT and its cell), spool, log, conf, tmp; an empty DIR/pids
    local x
    rm -rf "$ROOT" "$DIR/spool"
    mkdir -p "$COMMON" "$DIR/spool/qmaster" "$DIR/spool/execd" "$DIR/log" "$DIR/conf" "$DIR/tmp"
    chmod 0755 "$DIR" "$ROOT" "$ROOT/$CELL" "$COMMON" "$DIR/spool" "$DIR/log" "$DIR/conf"
    chmod 1777 "$DIR/tmp"
    for x in bin lib utilbin; do ln -s "/var/lib/gridengine/$x" "$ROOT/$x"; done
    ln -s /usr/share/gridengine/util "$ROOT/util"
    : > "$DIR/pids"
}

# reserve_ports: sets QPORT, EPORT (free from UGE_BASE_PORT or 16444 up, in pairs), GID_LO, GID_HI and
# records the ports in PORTS_D. Serialises port choice + bind between concurrent starts on this host:
# returns holding the port lock on fd 9 (the caller lets go with `flock -u 9`).
reserve_ports() {
    local listening reserved
    exec 9>/var/lock/envsched-uge-ports.lock
    flock -w 60 9 || { echo "$PROG: could not take the port lock" >&2; exit 1; }
    listening=" $(ss -Htln | awk '{print $4}' | sed 's/.*://' | sort -un | tr '\n' ' ') "
    reserved=" $(cat "$PORTS_D"/* 2>/dev/null | tr '\n' ' ' || true) "
    port_free() { case "$listening$reserved" in *" $1 "*) return 1 ;; esac; return 0; }
    QPORT=${UGE_BASE_PORT:-16444}
    while ! { port_free "$QPORT" && port_free $((QPORT + 1)); }; do
        QPORT=$((QPORT + 2))
        [ "$QPORT" -lt 30000 ] || { echo "$PROG: no free ports" >&2; exit 1; }
    done
    EPORT=$((QPORT + 1))
    mkdir -p "$PORTS_D"
    printf '%s\n%s\n' "$QPORT" "$EPORT" > "$PORTS_D/$(echo "$DIR" | tr / _)"
    # Every job gets a supplementary gid from gid_range, and execd kills by it (ENABLE_ADDGRP_KILL is on
    # by default): the ranges of concurrent clusters must never overlap. Derived from the unique port.
    GID_LO=$((200000 + QPORT * 32))
    GID_HI=$((GID_LO + 31))
}

# write_cluster_conf HEADER [LINE...]: DIR/cluster.conf (shell variables: ports, host, gid range),
# the LINEs after HOST
write_cluster_conf() {
    local header=$1
    shift
    {
        echo "$header"
        echo "QPORT=$QPORT"
        echo "EPORT=$EPORT"
        echo "HOST=$HOST"
        [ $# -eq 0 ] || printf '%s\n' "$@"
        echo "GID_LO=$GID_LO"
        echo "GID_HI=$GID_HI"
    } > "$DIR/cluster.conf"
}

write_cell_files() {   # the cell's bootstrap, act_qmaster (HOST) and settings.sh
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
}

# write_global_conf LOAD_REPORT_TIME [SED_ARG...]: DIR/conf/global, the global configuration: Debian's
# default, made fit for tests (the SED_ARGs change more). Builtin qlogin/rlogin/rsh (already the
# Debian default) make qrsh work without rsh/ssh.
write_global_conf() {
    local load_report_time=$1 k
    shift
    sed -e "s|^execd_spool_dir .*|execd_spool_dir        $DIR/spool/execd|" \
        -e 's|^mailer .*|mailer                 /bin/true|' \
        -e 's|^min_uid .*|min_uid                0|' \
        -e 's|^min_gid .*|min_gid                0|' \
        -e "s|^load_report_time .*|load_report_time       $load_report_time|" \
        "$@" \
        -e 's|^loglevel .*|loglevel               log_info|' \
        -e 's|^administrator_mail .*|administrator_mail     none|' \
        -e 's|^reporting_params .*|reporting_params       accounting=true reporting=false flush_time=00:00:01 joblog=false sharelog=00:00:00 accounting_flush_time=00:00:00|' \
        -e "s|^gid_range .*|gid_range              $GID_LO-$GID_HI|" \
        /usr/share/gridengine/default-configuration > "$DIR/conf/global"
    for k in qlogin_command qlogin_daemon rlogin_command rlogin_daemon rsh_command rsh_daemon; do
        grep -Eq "^$k[[:space:]]+builtin\$" "$DIR/conf/global" || echo "$k builtin" >> "$DIR/conf/global"
    done
    chmod 0644 "$DIR/conf/global"
}

as_admin() {
    env -i PATH=$CLEAN_PATH LANG=C SGE_ROOT="$ROOT" SGE_CELL=$CELL \
        setpriv --reuid="$ADMIN" --regid="$ADMIN" --clear-groups -- "$@"
}

init_spool() {   # the qmaster's classic spool: configuration, complexes, usersets, managers (calls fail)
    chown -R "$ADMIN:$ADMIN" "$COMMON" "$DIR/spool/qmaster" "$DIR/spool/execd"
    (
        cd "$COMMON"
        as_admin "$SGE_LIB/spoolinit" classic libspoolc "$COMMON;$DIR/spool/qmaster" init
        as_admin "$SGE_LIB/spooldefaults" configuration "$DIR/conf/global"
        as_admin "$SGE_LIB/spooldefaults" complexes /usr/share/gridengine/util/resources/centry
        as_admin "$SGE_LIB/spooldefaults" usersets /usr/share/gridengine/util/resources/usersets
        as_admin "$SGE_LIB/spooldefaults" managers "$ADMIN" root
    ) > "$DIR/log/init.out" 2>&1 || { cat "$DIR/log/init.out" >&2; fail "initialising the spool failed"; }
}

# configure_sched CLIENT: through CLIENT (the script's client function: a qconf against the qmaster),
# the scheduler (1 s interval, queues by seq_no (all.q first), no load adjustments) and HOST as submit host
configure_sched() {
    "$1" qconf -ssconf | sed -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
        -e 's/^queue_sort_method .*/queue_sort_method                 seqno/' \
        -e 's/^job_load_adjustments .*/job_load_adjustments              NONE/' \
        -e 's/^load_adjustment_decay_time .*/load_adjustment_decay_time        0:0:0/' > "$DIR/conf/sched_configuration"
    "$1" qconf -Msconf "$DIR/conf/sched_configuration" >> "$DIR/log/qconf.out" 2>&1 || fail "qconf -Msconf failed"
    "$1" qconf -as "$HOST" >> "$DIR/log/qconf.out" 2>&1 || fail "qconf -as $HOST failed"
}

# add_queues CLIENT HOSTLIST [TMPDIR]: all.q (seq_no 0) and legacy.q (10) on HOSTLIST, 2 slots each,
# tmpdir TMPDIR (default DIR/tmp): the template without pe_list (make smp mpi: no such PEs here) and
# np_load_avg threshold
add_queues() {
    local client=$1 hostlist=$2 tmpdir=${3:-$DIR/tmp} q
    "$client" qconf -sq > "$DIR/conf/queue.template"
    for q in "all.q 0" "legacy.q 10"; do
        set -- $q
        sed -e "s|^qname .*|qname                 $1|" \
            -e "s|^hostlist .*|hostlist              $hostlist|" \
            -e "s|^seq_no .*|seq_no                $2|" \
            -e 's|^load_thresholds .*|load_thresholds       NONE|' \
            -e 's|^pe_list .*|pe_list               NONE|' \
            -e 's|^slots .*|slots                 2|' \
            -e "s|^tmpdir .*|tmpdir                $tmpdir|" \
            "$DIR/conf/queue.template" > "$DIR/conf/$1"
        "$client" qconf -Aq "$DIR/conf/$1" >> "$DIR/log/qconf.out" 2>&1 || fail "qconf -Aq $1 failed"
    done
}

# write_env_sh COMMENT: DIR/env.sh (exports SGE_ROOT, SGE_CELL and the ports); 0644 with cluster.conf
write_env_sh() {
    cat > "$DIR/env.sh" <<EOF
# $1
export SGE_ROOT=$ROOT
export SGE_CELL=$CELL
export SGE_QMASTER_PORT=$QPORT
export SGE_EXECD_PORT=$EPORT
EOF
    chmod 0644 "$DIR/env.sh" "$DIR/cluster.conf"
}
