# Shared by start.sh and restart-slurmd.sh (sourced; expects DIR, CONF and HERE to be set).
. "$HERE/../lib.sh"
CLEAN_PATH=/usr/sbin:/usr/bin:/sbin:/bin

record() { echo "$1 $2" >> "$DIR/pids"; }

# launch NAME OUTFILE CMD...: a foreground daemon in its own session with a clean environment
# (env -i: nothing of the caller's leaks into jobs), stdio to a file so that a caller's pipe is never
# held open. Sets LAST_PID and appends "NAME PID" to DIR/pids.
launch() {
    local name=$1 out=$2; shift 2
    env -i PATH=$CLEAN_PATH LANG=C SLURM_CONF="$CONF" setsid "$@" </dev/null >>"$out" 2>&1 9>&- &
    LAST_PID=$!
    record "$name" "$LAST_PID"
}

launch_slurmd() {   # NODE
    if [ ! -e "$DIR/vnet/nodes" ]; then
        launch "slurmd:$1" "$DIR/log/slurmd-$1.out" /usr/sbin/slurmd -D -N "$1" -f "$CONF"
        return 0
    fi
    # the virtual cluster: slurmd inside node NODE (vnet.sh's nsenter, which forks it into the node's
    # PID namespace and waits); DIR/pids gets slurmd's own (host) PID, the one stop.sh must TERM
    local init nse pid="" _
    init=$(awk -v n="$1" '$1 == n { print $3 }' "$DIR/vnet/nodes")
    [ -n "$init" ] && [ -d "/proc/$init" ] || { echo "launch_slurmd: no live vnet node $1" >&2; return 1; }
    env -i PATH=$CLEAN_PATH LANG=C SLURM_CONF="$CONF" setsid nsenter -t "$init" -n -u -m -p -- \
        /usr/sbin/slurmd -D -N "$1" -f "$CONF" </dev/null >>"$DIR/log/slurmd-$1.out" 2>&1 9>&- &
    nse=$!
    for _ in $(seq 200); do
        pid=$(awk '{print $1}' "/proc/$nse/task/$nse/children" 2>/dev/null)
        case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in */slurmd|*/slurmd-wlm) break ;; esac
        pid=""
        kill -0 "$nse" 2>/dev/null || break
        sleep 0.02
    done
    [ -n "$pid" ] || { echo "launch_slurmd: slurmd did not start in vnet node $1" >&2; return 1; }
    LAST_PID=$pid
    record "slurmd:$1" "$pid"
}

# node_listening NODE PORT: slurmd of NODE listens on PORT (in the node's network namespace if virtual)
node_listening() {
    local init
    if [ -e "$DIR/vnet/nodes" ]; then
        init=$(awk -v n="$1" '$1 == n { print $3 }' "$DIR/vnet/nodes")
        nsenter -t "$init" -n ss -Htln 2>/dev/null | awk '{print $4}' | sed 's/.*://' | grep -qx "$2"
    else
        ss -Htln | awk '{print $4}' | sed 's/.*://' | grep -qx "$2"
    fi
}

tail_logs() {
    local f
    for f in "$DIR"/log/*.log "$DIR"/log/*.out; do
        [ -s "$f" ] || continue
        echo "---- tail $f" >&2
        tail -n 25 "$f" >&2
    done
}

# wait_idle NODES TIMEOUT: every daemon in DIR/pids alive and NODES nodes idle; returns 1 on timeout,
# 2 if a daemon died (its name in DIED).
wait_idle() {
    local nodes=$1 deadline=$(( $(date +%s) + $2 )) name pid n_idle
    STATES=""
    while [ "$(date +%s)" -lt "$deadline" ]; do
        while read -r name pid; do
            kill -0 "$pid" 2>/dev/null || { DIED="$name (pid $pid)"; return 2; }
        done < "$DIR/pids"
        STATES=$(env -i PATH=$CLEAN_PATH SLURM_CONF="$CONF" sinfo -h -N -o '%N %t' 2>/dev/null | sort -u || true)
        n_idle=$(printf '%s\n' "$STATES" | awk '$2 == "idle"' | wc -l)
        [ "$n_idle" -eq "$nodes" ] && return 0
        sleep 0.05
    done
    return 1
}

