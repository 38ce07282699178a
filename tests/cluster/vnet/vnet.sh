#!/bin/bash
# A virtual multi-node cluster on one host (#15): each node is its own network, UTS, mount and PID
# namespace, with its own hostname, address, /run and /proc, joined to the host by a private bridge.
# A pin, a view or a run_dir entry made on one node is invisible to the others, as on real hardware;
# killing a node (its PID namespace's init) kills everything on it at once, as a node failure does.
#
#   vnet.sh up DIR NAME...        make a bridge (host address 10.213.K.1/24) and one node per NAME
#                                 (NAME number i gets 10.213.K.(10+i)); writes DIR/vnet/
#   vnet.sh exec DIR NAME CMD...  run CMD on node NAME (nsenter: net, uts, mount, pid), as root
#   vnet.sh pid DIR NAME          the host PID of NAME's init (its /proc/PID/root is the node's view)
#   vnet.sh kill DIR NAME         node failure: SIGKILL its init (the kernel kills the rest)
#   vnet.sh restart DIR NAME      reboot: kill NAME if it still runs, then a fresh node of that name and
#                                 address (new namespaces, empty /run, new init PID in DIR/vnet/nodes)
#   vnet.sh down DIR              kill every node, remove the bridge and DIR/vnet
#
# DIR/vnet/nodes has "NAME ADDRESS INIT_PID" per node, DIR/vnet/hosts the /etc/hosts every node sees
# (bind-mounted over /etc/hosts inside the node only), DIR/vnet/head the host's address on the bridge,
# DIR/vnet/bridge the bridge's name. The host's own /etc/hosts, mount table and /run are not touched.
#
# Each node: `unshare --net --uts --mount --propagation slave --pid --fork --mount-proc`, then
#   1. hostname NAME (UTS namespace: slurmd/execd see their own name);
#   2. a tmpfs on /run (its own run_dir, lock and pid files; nothing of the host's /run);
#   3. DIR/vnet/hosts bound read-only over /etc/hosts (every node and the head resolve each other);
#   4. init: a small reaper (PID 1 of the node adopts every daemonized process and must reap it).
# The host side then adds a veth pair: one end on the bridge, the other as the node's eth0.
# Mounts made on the host later still reach the nodes (propagation slave); none go back.
set -euo pipefail

usage() { sed -n '6,14p' "$0" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "vnet.sh: needs root" >&2; exit 1; }
[ $# -ge 2 ] || usage
CMD=$1 DIR=$2
shift 2
V=$DIR/vnet
LOCKS=/var/lock/envsched-vnet.d
PY=/usr/bin/python3

node_field() {   # NAME FIELD(2=address, 3=pid)
    awk -v n="$1" -v f="$2" '$1 == n { print $f }' "$V/nodes" 2>/dev/null
}

init_pid() {
    local pid
    pid=$(node_field "$1" 3)
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || { echo "vnet.sh: no node $1 in $V" >&2; return 1; }
    echo "$pid"
}

kill_node() {    # NAME: SIGKILL the node's init; its PID namespace goes with it
    local pid
    pid=$(node_field "$1" 3)
    [ -n "$pid" ] || return 0
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.05; done
}

# The node's init: PID 1 of its PID namespace reaps whatever it adopts (daemons double-fork).
INIT='
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.5)
'

# start_node NAME I: a fresh node NAME with address 10.213.K.(10+I) (K, BR from DIR/vnet); appends
# "NAME ADDRESS INIT_PID" to DIR/vnet/nodes
start_node() {
    local n=$1 i=$2 K BR addr outer pid
    K=$(cat "$V/subnet") BR=$(cat "$V/bridge")
    addr=10.213.$K.$((10 + i))
    rm -f "$V/$n.ready"
    setsid unshare --net --uts --mount --propagation slave --pid --fork --mount-proc -- /bin/sh -c '
        set -e
        hostname "$1"
        mount -t tmpfs -o mode=0755,nosuid,nodev,size=256m "vnet-$1" /run
        mkdir -m 1777 /run/lock
        mount --bind -o ro "$2/hosts" /etc/hosts
        : > "$2/$1.ready"
        exec "$3" -I -S -c "$4"' vnet-node "$n" "$V" "$PY" "$INIT" </dev/null >/dev/null 2>"$V/$n.err" &
    outer=$!
    pid=
    for _ in $(seq 1 100); do
        [ -e "$V/$n.ready" ] && pid=$(cat "/proc/$outer/task/$outer/children" 2>/dev/null | awk '{print $1}')
        [ -n "$pid" ] && break
        sleep 0.05
    done
    [ -n "$pid" ] || { echo "vnet.sh: node $n did not start: $(cat "$V/$n.err")" >&2; exit 1; }
    echo "$n $addr $pid" >> "$V/nodes"
    ip link add "esv${K}n$i" type veth peer name eth0 netns "$pid"
    ip link set "esv${K}n$i" master "$BR" up
    nsenter -t "$pid" -n sh -c "ip addr add $addr/24 dev eth0 && ip link set eth0 up && ip link set lo up"
}

wait_reach() {   # NAME: until the node reaches the head (the bridge forwards once its port is up)
    local pid
    pid=$(node_field "$1" 3)
    for _ in $(seq 1 100); do
        nsenter -t "$pid" -n "$PY" -I -S -c "
import socket, sys
try:
    socket.create_connection(('$(cat "$V/head")', 9), timeout=0.2)
except ConnectionRefusedError:
    pass
except OSError:
    sys.exit(1)" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "vnet.sh: node $1 does not reach $(cat "$V/head")" >&2
    return 1
}

case "$CMD" in
up)
    [ $# -ge 1 ] || usage
    [ ! -e "$V/nodes" ] || { echo "vnet.sh: $V/nodes exists (vnet.sh down $DIR first)" >&2; exit 1; }
    mkdir -p "$V" "$LOCKS"
    chmod 0755 "$V"
    # a free /24: not reserved by another cluster of ours, no bridge of that name, no route into it
    exec 9>"$LOCKS/.lock"
    flock -w 30 9 || { echo "vnet.sh: could not take the lock" >&2; exit 1; }
    K=
    for k in $(seq 1 250); do
        [ -e "$LOCKS/$k" ] && continue
        ip link show "esvb$k" >/dev/null 2>&1 && continue
        ip route show to match "10.213.$k.1" 2>/dev/null | grep -q "10.213.$k" && continue
        K=$k; break
    done
    [ -n "$K" ] || { echo "vnet.sh: no free 10.213.K.0/24" >&2; exit 1; }
    echo "$DIR" > "$LOCKS/$K"
    flock -u 9
    BR=esvb$K HEAD=10.213.$K.1
    echo "$BR" > "$V/bridge"
    echo "$HEAD" > "$V/head"
    echo "$K" > "$V/subnet"
    ip link add "$BR" type bridge
    ip addr add "$HEAD/24" dev "$BR"
    ip link set "$BR" up
    {
        echo "127.0.0.1 localhost"
        echo "$HEAD $(hostname -s) vhead"
        i=0
        for n in "$@"; do i=$((i + 1)); echo "10.213.$K.$((10 + i)) $n"; done
    } > "$V/hosts"
    chmod 0644 "$V/hosts"
    : > "$V/nodes"
    i=0
    for n in "$@"; do
        i=$((i + 1))
        start_node "$n" "$i"
    done
    # ready when every node reaches the head (the bridge forwards once its ports are up)
    for n in "$@"; do wait_reach "$n" || true; done
    ;;
exec)
    [ $# -ge 2 ] || usage
    pid=$(init_pid "$1")
    shift
    exec nsenter -t "$pid" -n -u -m -p -- "$@"
    ;;
pid)
    [ $# -eq 1 ] || usage
    init_pid "$1"
    ;;
kill)
    [ $# -eq 1 ] || usage
    kill_node "$1"
    ;;
restart)
    [ $# -eq 1 ] || usage
    addr=$(node_field "$1" 2)
    [ -n "$addr" ] || { echo "vnet.sh: no node $1 in $V" >&2; exit 1; }
    i=$(( ${addr##*.} - 10 ))
    kill_node "$1"
    # the host end of its veth pair goes with the node's network namespace (asynchronously)
    for _ in $(seq 1 100); do ip link show "esv$(cat "$V/subnet")n$i" >/dev/null 2>&1 || break; sleep 0.05; done
    ip link del "esv$(cat "$V/subnet")n$i" 2>/dev/null || true
    awk -v n="$1" '$1 != n' "$V/nodes" > "$V/nodes.new"
    mv -f "$V/nodes.new" "$V/nodes"
    start_node "$1" "$i"
    wait_reach "$1"
    ;;
down)
    if [ -e "$V/nodes" ]; then
        while read -r n _ _; do kill_node "$n"; done < "$V/nodes"
    fi
    if [ -s "$V/subnet" ]; then   # the nodes' veth pairs go with their namespaces, asynchronously
        K=$(cat "$V/subnet")
        for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^esv${K}n[0-9]*$"); do
            ip link del "$l" 2>/dev/null || true
        done
    fi
    if [ -s "$V/bridge" ]; then ip link del "$(cat "$V/bridge")" 2>/dev/null || true; fi
    if [ -s "$V/subnet" ]; then rm -f "$LOCKS/$(cat "$V/subnet")"; fi
    rm -rf "$V"
    ;;
*) usage ;;
esac
