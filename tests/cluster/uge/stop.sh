#!/bin/bash
# Stop the throwaway Grid Engine cluster that start.sh started in DIR, and nothing else.
#
#   stop.sh DIR
#
# 1. asks this cluster's own qmaster (its SGE_ROOT and ports; other clusters are never asked) to shut
#    down execd together with its jobs (qconf -kej), and waits for execd and the shepherds to go,
# 2. TERMs the daemons listed in DIR/pids (each checked to still carry SGE_ROOT=DIR/root in
#    /proc/PID/environ, so a recycled PID is never hit), waits, then KILLs; the same for any
#    sge_qmaster/sge_execd carrying this SGE_ROOT but not listed (a lost pids file),
# 3. kills leftover sge_shepherd processes of this cluster (same SGE_ROOT in their environ), the
#    processes below them, and any process holding a supplementary gid from this cluster's gid_range
#    (every job process has one; the ranges of concurrent clusters never overlap),
# 4. verifies that none of them is left (zombies do not count). Exit 1 if something survived.
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ -d "$1" ] || { echo "stop.sh: no such directory: $1" >&2; exit 2; }
DIR=$(cd "$1" && pwd -P)
HERE=$(cd "$(dirname "$0")" && pwd -P)
QPORT="" EPORT="" HOST="" GID_LO="" GID_HI=""
. "$HERE/common.sh"
# shellcheck disable=SC1091
[ -f "$DIR/cluster.conf" ] && . "$DIR/cluster.conf"

job_procs() {   # shepherds of this cluster, what runs below them, and holders of our job gids
    local sh
    sh=$(sge_procs sge_shepherd)
    {
        echo $sh
        descendants $sh
        if [ -n "$GID_LO" ]; then addgrp_procs "$GID_LO" "$GID_HI"; fi
    } | tr ' ' '\n' | awk 'NF' | sort -un
}

qmaster=""
execd=""
if [ -s "$DIR/pids" ]; then
    while read -r name pid; do
        [ -n "$pid" ] || continue
        running "$pid" && ours "$pid" || continue
        case "$name" in
            sge_qmaster) qmaster=$pid ;;
            sge_execd) execd=$pid ;;
        esac
    done < "$DIR/pids"
fi
[ -n "$qmaster" ] || qmaster=$(sge_procs sge_qmaster | head -n 1)
[ -n "$execd" ] || execd=$(sge_procs sge_execd | head -n 1)

# 1. execd and its jobs, through this cluster's own qmaster
if [ -n "$qmaster" ] && [ -n "$execd" ] && [ -n "$QPORT" ]; then
    sge timeout 10 qconf -kej all >/dev/null 2>&1
    for _ in $(seq 200); do
        [ -z "$(alive $execd)" ] && [ -z "$(sge_procs sge_shepherd)" ] && break
        sleep 0.05
    done
fi

# 2. the daemons. execd exits ~0.8 s after TERM. qmaster has deregistered its scheduler and event
#    clients within ~1 s of TERM but then takes ~7 s more to exit (measured); it is a throwaway with
#    synchronous classic spooling and accounting_flush_time=0, so it gets 2 s, then a silent KILL.
jobs_before=$(job_procs)
term_wait_kill 5 $execd
if [ -n "$(alive $qmaster)" ]; then
    kill -TERM $qmaster 2>/dev/null
    for _ in $(seq 40); do [ -z "$(alive $qmaster)" ] && break; sleep 0.05; done
    [ -n "$(alive $qmaster)" ] && kill -KILL $qmaster 2>/dev/null
    for _ in $(seq 40); do [ -z "$(alive $qmaster)" ] && break; sleep 0.05; done
fi
extra=$(sge_procs sge_qmaster sge_execd)
if [ -n "$extra" ]; then
    echo "stop.sh: also stopping unlisted daemons of this cluster: $(echo $extra)" >&2
    term_wait_kill 3 $extra
fi

# 3. leftover shepherds and job processes
left_jobs=$(alive $(echo $jobs_before $(job_procs) | tr ' ' '\n' | sort -un))
if [ -n "$left_jobs" ]; then
    echo "stop.sh: leftover shepherd/job processes: $(echo $left_jobs)" >&2
    term_wait_kill 3 $left_jobs
fi

# 4. verify
left=$(alive $qmaster $execd $extra $left_jobs $(sge_procs sge_qmaster sge_execd sge_shepherd) \
       $(job_procs))
if [ -n "$left" ]; then
    echo "stop.sh: still alive: $(echo $left)" >&2
    exit 1
fi
rm -f "/var/lock/envsched-uge-ports.d/$(echo "$DIR" | tr / _)"
[ -f "$DIR/pids" ] && mv -f "$DIR/pids" "$DIR/pids.stopped"
echo "stop.sh: cluster in $DIR stopped"
