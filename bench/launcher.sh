#!/bin/bash
# make bench-launcher: what an environment's `launcher` (#12) costs per task, and how much of that is
# envsched's own (bench/launcher_bench.py has the sections). About 2 minutes, as root.
#
#   bash bench/launcher.sh        BENCH_ROUNDS (15) srun/prepare rounds, BENCH_MICRO_N (2000) execs
#                                 per micro case, BENCH_TASKS (1,8), BENCH_SECTIONS (all)
#
# Sets up, like bench/slurm.sh: /var/lib/envsched-bench-launcher-<random>/ (a one-node throwaway Slurm
# cluster, tests/cluster/slurm/start.sh DIR 1; a copy of the plugin and of its stub envsched-launch
# beside it; os/deb12, a mini tree; policy.toml: `plain` and `launched`, the same tree, the second
# with launcher = ["/usr/bin/env"]) and /run/envsched-bench-launcher-<random>/ (run_dir). On exit:
# the cluster stopped, pins released, both directories removed, the host mount table compared.
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cluster_scripts=$repo/tests/cluster/slurm
ROUNDS=${BENCH_ROUNDS:-15}
MICRO_N=${BENCH_MICRO_N:-2000}
TASKS=${BENCH_TASKS:-1,8}
SECTIONS=${BENCH_SECTIONS:-micro,python,prepare,slurm}

die() { echo "bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (slurmd, munged, pins)"
resolver=$repo/.venv/bin/envsched
[ -x "$resolver" ] || die "$resolver not found: make venv first"
rand=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
DIR=/var/lib/envsched-bench-launcher-$rand
RUN=/run/envsched-bench-launcher-$rand
out=$repo/bench/out
mkdir -p "$out"
stamp=$(date +%Y%m%d-%H%M%S)
result=$out/launcher-$stamp.txt
mounts_before=$(cat /proc/self/mountinfo)
started=""

under() { awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo; }

cleanup() {
    local rc=$? k
    trap - EXIT INT TERM
    set +e
    [ -n "$started" ] && { "$cluster_scripts/stop.sh" "$DIR" >/dev/null || { echo "bench: stop.sh failed" >&2; rc=1; }; }
    if [ -d "$RUN" ]; then
        for k in $(ls -A "$RUN" | grep -vx '.jobs'); do
            echo "bench: pin $k left after the jobs ended" >&2; rc=1
            "$resolver" --policy "$DIR/policy.toml" release --key "$k" --quiet
        done
        [ -z "$(under "$RUN")" ] && rm -rf "$RUN" || { echo "bench: still mounted under $RUN" >&2; rc=1; }
    fi
    if [ -d "$DIR" ]; then
        [ -z "$(under "$DIR")" ] && rm -rf "$DIR" || { echo "bench: still mounted under $DIR" >&2; rc=1; }
    fi
    if [ "$(cat /proc/self/mountinfo)" != "$mounts_before" ]; then
        echo "bench: the host mount table differs from the one at the start (other engineers' tests" \
             "may mount things too):" >&2
        diff <(echo "$mounts_before") /proc/self/mountinfo >&2
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$cluster_scripts/install.sh" >/dev/null
make -s -C "$repo/plugins/slurm-spank"
"${CC:-cc}" -O2 -Wall -Wextra -o "$out/launch_bench" "$here/launch_bench.c"
mkdir -m 0755 "$DIR"
chown 0:0 "$DIR"
mkdir -m 0755 "$DIR/scripts" "$DIR/work" "$DIR/os"
# private copies: slurmstepd loads the plugin at every step (a rebuild in the work tree must not swap
# it mid-run), and the plugin binds the stub it finds beside itself
install -m 0755 "$repo/plugins/slurm-spank/envsched_spank.so" "$DIR/envsched_spank.so"
install -m 0755 "$repo/plugins/slurm-spank/envsched-launch" "$DIR/envsched-launch"
started=1
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$cluster_scripts/start.sh" "$DIR" 1 >/dev/null
"$repo/tests/envs/build-mini-env.sh" "$DIR/os/deb12" debian 12 "Debian 12 (mini)" >/dev/null
cat > "$DIR/policy.toml" <<EOF
[site]
default = "local"
run_dir = "$RUN"
log_file = "$DIR/envsched.log"

[environments.plain]
path = "$DIR/os/deb12"
[environments.launched]
path = "$DIR/os/deb12"
launcher = ["/usr/bin/env"]
EOF
chmod 0644 "$DIR/policy.toml"
echo "required $DIR/envsched_spank.so policy=$DIR/policy.toml resolver=$resolver" \
     "run_dir=$RUN bind=$DIR/spool bind=$DIR/munge" > "$DIR/plugstack.line"
cp "$DIR/plugstack.line" "$DIR/plugstack.conf"
chmod 0644 "$DIR/plugstack.conf"
"$cluster_scripts/restart-slurmd.sh" "$DIR" >/dev/null     # job_epilog runs only if slurmd started with the plugin

{
    echo "# envsched launcher bench $stamp, $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo ?)" \
         "$(git -C "$repo" status --porcelain 2>/dev/null | grep -q . && echo '(dirty)')"
    echo "# $(uname -sr), $(nproc) CPUs, $(SLURM_CONF=$DIR/slurm.conf sinfo --version)," \
         "load average $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$result"
set +e
SLURM_CONF=$DIR/slurm.conf "$repo/.venv/bin/python" "$here/launcher_bench.py" --cluster "$DIR" --run-dir "$RUN" \
    --plugstack-line-file "$DIR/plugstack.line" --policy "$DIR/policy.toml" --resolver "$resolver" \
    --stub "$DIR/envsched-launch" --launch-bench "$out/launch_bench" --rounds "$ROUNDS" --micro-n "$MICRO_N" \
    --tasks "$TASKS" --sections "$SECTIONS" 2>&1 | tee -a "$result"
status=${PIPESTATUS[0]}
set -e
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$result"
echo "bench: output in $result"
[ "$status" = 0 ]
