# Shared by start.sh and stop.sh (sourced; expects DIR and HERE to be set).
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
