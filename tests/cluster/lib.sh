# Shell helpers shared by the throwaway clusters' scripts (tests/cluster/slurm, tests/cluster/uge);
# sourced. Process helpers take PIDs only: the scripts decide which PIDs are theirs.

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }

running() {   # pid: alive and not a zombie
    local st
    st=$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

alive() { local p; for p in "$@"; do running "$p" && echo "$p"; done; return 0; }

descendants() {   # pids...: all their descendants
    [ $# -gt 0 ] || return 0
    ps -e -o pid=,ppid= | awk -v roots=" $* " '
        { kids[$2] = kids[$2] " " $1 }
        END {
            n = split(roots, q, " "); head = 1
            while (head <= n) { p = q[head++]; m = split(kids[p], k, " ")
                for (i = 1; i <= m; i++) { print k[i]; q[++n] = k[i] } }
        }'
}

term_wait_kill() {   # seconds pids...: TERM, wait up to SECONDS, then KILL and wait 2 s more
    local secs=$1; shift
    set -- $(alive "$@")
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null
    local n=$((secs * 20))
    while [ $n -gt 0 ] && [ -n "$(alive "$@")" ]; do sleep 0.05; n=$((n - 1)); done
    local left
    left=$(alive "$@")
    if [ -n "$left" ]; then
        echo "stop.sh: KILL $(echo $left)" >&2
        kill -KILL $left 2>/dev/null
        n=40
        while [ $n -gt 0 ] && [ -n "$(alive $left)" ]; do sleep 0.05; n=$((n - 1)); done
    fi
    return 0
}

# --- package installation (install.sh) ----------------------------------------------------------
missing_packages() {   # pkgs...: those not installed, one per line
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

# Maintainer scripts must not start the packaged services: a policy-rc.d saying so, unless one
# exists already; allow_service_starts removes it again if we made it (call it from an EXIT trap).
CREATED_POLICY_RC=""
forbid_service_starts() {
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        CREATED_POLICY_RC=1
    fi
}
allow_service_starts() { [ -z "$CREATED_POLICY_RC" ] || rm -f /usr/sbin/policy-rc.d; }

apt_install() {   # log pkgs...: install, with one `apt-get update` retry; the log's tail on failure
    local log=$1; shift
    if ! apt-get install -y --no-install-recommends "$@" >"$log" 2>&1; then
        apt-get update -q >/dev/null
        apt-get install -y --no-install-recommends "$@" >>"$log" 2>&1 || { tail -n 30 "$log" >&2; return 1; }
    fi
}
