#!/bin/bash
# Slurm benchmark: what the envsched SPANK plugin costs per step and per job on a real (throwaway)
# cluster. Not a test: prints medians, ratios to plain Slurm and paired differences.
#
#   bash bench/slurm.sh [-n ROUNDS] [-t TASK_ROUNDS] [-b SBATCH_ROUNDS]        (root)
#
# Sets up, like tests/slurm/conftest.py and tests/slurm/test_spank.py do:
#   /var/lib/envsched-bench-slurm-<random>/   the cluster (tests/cluster/slurm/start.sh DIR 1: one
#                                             slurmctld, one slurmd, a private munged, free ports),
#                                             os/deb12 (tests/envs/build-mini-env.sh), policy.toml
#                                             (site default `local`, environment deb12), envsched.log
#   /run/envsched-bench-slurm-<random>/       the plugin's run_dir (pins, and .jobs/: the job records)
#   plugstack.conf                            required DIR/envsched_spank.so (a copy of the one built
#                                             in the work tree) policy=... resolver=<repo>/
#                                             .venv/bin/envsched run_dir=... bind=DIR/spool bind=DIR/munge
# then runs bench/slurm_bench.py (sections: jobs, tasks, steps, steptasks, sbatch, direct, timeline; see
# there), and on exit -- normal, error, SIGINT/SIGTERM -- stops the cluster with stop.sh, reports
# and releases any pin left under run_dir, removes both directories (never while something is
# mounted under them) and compares the host mount table with the one taken at the start.
#
# Environment:
#   BENCH_ROUNDS (40)         recorded rounds, 1-task sections (each case once per round)
#   BENCH_TASK_ROUNDS (20)    recorded rounds, N = 1, 2, 8, 32 task sections
#   BENCH_SBATCH_ROUNDS (12)  recorded rounds, sbatch turnaround
#   BENCH_DIRECT_ROUNDS (30)  recorded rounds, the resolver started directly
#   BENCH_WARMUP (3)          warm-up rounds per section, not recorded
#   BENCH_SEED (1)            seed of the per-round shuffle
#   BENCH_TIMELINE_ROUNDS (10) rounds of the timeline section (resolver behind a timing wrapper)
#   BENCH_BURST_ROUNDS (5)    rounds of the burst section (a job alone, then BENCH_BURST_JOBS at once)
#   BENCH_BURST_JOBS (16)     jobs started at once in the burst section
#   BENCH_SECTIONS            comma list (default jobs,tasks,steps,steptasks,sbatch,direct,timeline,burst)
#   BENCH_KEEP=1              keep the cluster directory (logs) after stopping the cluster
#
# Exit: 0 ok; 1 error, a failed launch, a pin left after the jobs ended, or the host mount table
# not restored.
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cluster_scripts=$repo/tests/cluster/slurm
ROUNDS=${BENCH_ROUNDS:-40}
TASK_ROUNDS=${BENCH_TASK_ROUNDS:-20}
SBATCH_ROUNDS=${BENCH_SBATCH_ROUNDS:-12}
DIRECT_ROUNDS=${BENCH_DIRECT_ROUNDS:-30}
WARMUP=${BENCH_WARMUP:-3}
SEED=${BENCH_SEED:-1}
TIMELINE_ROUNDS=${BENCH_TIMELINE_ROUNDS:-10}
BURST_ROUNDS=${BENCH_BURST_ROUNDS:-5}
BURST_JOBS=${BENCH_BURST_JOBS:-16}
SECTIONS=${BENCH_SECTIONS:-jobs,tasks,steps,steptasks,sbatch,direct,timeline,burst}
while getopts "n:t:b:" opt; do
    case $opt in
    n) ROUNDS=$OPTARG ;;
    t) TASK_ROUNDS=$OPTARG ;;
    b) SBATCH_ROUNDS=$OPTARG ;;
    *) echo "usage: $0 [-n ROUNDS] [-t TASK_ROUNDS] [-b SBATCH_ROUNDS]" >&2; exit 64 ;;
    esac
done

die() { echo "bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (slurmd, munged, pins)"
resolver=$repo/.venv/bin/envsched
[ -x "$resolver" ] || die "$resolver not found: make venv first"
for n in "$ROUNDS" "$TASK_ROUNDS" "$SBATCH_ROUNDS" "$DIRECT_ROUNDS" "$TIMELINE_ROUNDS" "$WARMUP" "$SEED"; do
    [[ $n =~ ^[0-9]+$ ]] || die "counts must be non-negative integers (got '$n')"
done
[ "$ROUNDS" -ge 30 ] || echo "bench: note: ROUNDS=$ROUNDS < 30; the issue asks for >= 30" >&2
[ "$SBATCH_ROUNDS" -ge 10 ] || echo "bench: note: SBATCH_ROUNDS=$SBATCH_ROUNDS < 10; asked: >= 10" >&2

rand=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
DIR=/var/lib/envsched-bench-slurm-$rand
RUN=/run/envsched-bench-slurm-$rand
[ ! -e "$DIR" ] && [ ! -e "$RUN" ] || die "$DIR or $RUN exists"
out=$repo/bench/out
mkdir -p "$out"
stamp=$(date +%Y%m%d-%H%M%S)
result=$out/slurm-$stamp.txt
mounts_before=$(cat /proc/self/mountinfo)
started=""
status=0

under() {   # mount points (from mountinfo) at or below $1
    awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo
}

cleanup() {
    local rc=$? left m
    trap - EXIT INT TERM
    set +e
    if [ -n "$started" ]; then
        "$cluster_scripts/stop.sh" "$DIR" || { echo "bench: stop.sh failed" >&2; rc=1; }
    fi
    if [ -d "$RUN" ]; then
        records=$(ls -A "$RUN/.jobs" 2>/dev/null)
        if [ -n "$records" ]; then
            echo "bench: job records left under $RUN/.jobs after the jobs ended: $(echo $records)" >&2
            rc=1
        fi
        # the shared views kept warm (site.view_hold) are let go here; the cache entries are no mounts
        "$resolver" --policy "$DIR/policy.toml" gc --idle-views >/dev/null ||
            echo "bench: envsched gc --idle-views failed" >&2
        left=$(ls -A "$RUN" | grep -vxE '\.jobs|\.views|\.decisions')
        if [ -n "$left" ]; then
            echo "bench: pins left under $RUN after the jobs ended: $(echo $left)" >&2
            rc=1
            for k in $left; do
                "$resolver" --policy "$DIR/policy.toml" release --key "$k" --quiet ||
                    echo "bench: could not release $k" >&2
            done
        fi
        m=$(under "$RUN")
        if [ -n "$m" ]; then
            echo "bench: still mounted under $RUN (not removed): $(echo $m)" >&2
            rc=1
        else
            rm -rf "$RUN"
        fi
    fi
    # the clients ran as root: their submit-time answers for this cluster's policies (submitcache.py)
    grep -lsF "policy=$DIR/" "$HOME"/.cache/envsched/submit/* 2>/dev/null | xargs -r rm -f
    if [ -d "$DIR" ]; then
        m=$(under "$DIR")
        if [ -n "$m" ]; then
            echo "bench: still mounted under $DIR (not removed): $(echo $m)" >&2
            rc=1
        elif [ "${BENCH_KEEP:-0}" = 1 ]; then
            echo "bench: kept $DIR"
        else
            rm -rf "$DIR"
        fi
    fi
    if [ "$(cat /proc/self/mountinfo)" != "$mounts_before" ]; then
        echo "bench: the host mount table differs from the one at the start" \
             "(another engineer's tests may mount things too):" >&2
        diff <(echo "$mounts_before") /proc/self/mountinfo >&2
        rc=1
    else
        echo "bench: host mount table unchanged"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ cluster, trees, policy, plugin
"$cluster_scripts/install.sh" >/dev/null
make -s -C "$repo/plugins/slurm-spank"
mkdir -m 0755 "$DIR"
chown 0:0 "$DIR"
mkdir -m 0755 "$DIR/scripts" "$DIR/work" "$DIR/os"
# a private copy of the plugin: slurmstepd loads it at every step, and a rebuild in the work tree
# (other engineers) must not swap it in the middle of a run
install -m 0755 "$repo/plugins/slurm-spank/envsched_spank.so" "$DIR/envsched_spank.so"
started=1
# the burst section's partition: jobs share the node's CPUs (16 standalone jobs run at once on 2)
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    SLURM_EXTRA_CONF="PartitionName=burst Nodes=ALL MaxTime=INFINITE State=UP OverSubscribe=FORCE:$BURST_JOBS" \
    "$cluster_scripts/start.sh" "$DIR" 1
"$repo/tests/envs/build-mini-env.sh" "$DIR/os/deb12" debian 12 "Debian 12 (mini)" >/dev/null
cat > "$DIR/policy.toml" <<EOF
[site]
default = "local"
run_dir = "$RUN"
log_file = "$DIR/envsched.log"

[environments.deb12]
path = "$DIR/os/deb12"
EOF
chmod 0644 "$DIR/policy.toml"
cp -p "$DIR/policy.toml" "$DIR/policy-cold.toml"       # the `cold` case's own copy (slurm_bench.py)
echo "required $DIR/envsched_spank.so policy=$DIR/policy.toml resolver=$resolver" \
     "run_dir=$RUN bind=$DIR/spool bind=$DIR/munge" > "$DIR/plugstack.line"
cp "$DIR/plugstack.line" "$DIR/plugstack.conf"
# for the timeline section: the same resolver behind a wrapper that logs its start and end
cat > "$DIR/resolver-timed" <<EOF
#!/bin/bash
s=\$EPOCHREALTIME
"$resolver" "\$@"
rc=\$?
printf '%s %s %s\\n' "\$3" "\$s" "\$EPOCHREALTIME" >> "$DIR/timeline.log"
exit \$rc
EOF
chmod 0755 "$DIR/resolver-timed"
sed "s|resolver=$resolver |resolver=$DIR/resolver-timed |" "$DIR/plugstack.line" > "$DIR/plugstack-timed.line"
sed "s|policy=$DIR/policy.toml |policy=$DIR/policy-cold.toml |" "$DIR/plugstack.line" > "$DIR/plugstack-cold.line"
chmod 0644 "$DIR/plugstack.conf"
# job_epilog runs only if slurmd started with the plugin listed
"$cluster_scripts/restart-slurmd.sh" "$DIR" >/dev/null

{
    echo "# envsched Slurm bench $stamp, $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo ?)" \
         "$(git -C "$repo" status --porcelain 2>/dev/null | grep -q . && echo '(dirty)')"
    echo "# plugin sha256 $(sha256sum "$DIR/envsched_spank.so" | cut -c1-16), uncommitted changes in" \
         "plugins/slurm-spank + src: $(git -C "$repo" status --porcelain -- plugins/slurm-spank src 2>/dev/null |
         grep -v '^??' | wc -l) files"
    echo "# $(uname -sr), $(nproc) CPUs, $(SLURM_CONF=$DIR/slurm.conf sinfo --version)," \
         "load average $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$result"
set +e
SLURM_CONF=$DIR/slurm.conf /usr/bin/python3 "$here/slurm_bench.py" all \
    --cluster "$DIR" --run-dir "$RUN" --plugstack-line-file "$DIR/plugstack.line" \
    --policy "$DIR/policy.toml" --resolver "$resolver" --env-name deb12 \
    --rounds "$ROUNDS" --task-rounds "$TASK_ROUNDS" --sbatch-rounds "$SBATCH_ROUNDS" \
    --direct-rounds "$DIRECT_ROUNDS" --warmup "$WARMUP" --seed "$SEED" --sections "$SECTIONS" \
    --timeline-line-file "$DIR/plugstack-timed.line" --timeline-rounds "$TIMELINE_ROUNDS" \
    --burst-rounds "$BURST_ROUNDS" --burst-jobs "$BURST_JOBS" \
    --cold-line-file "$DIR/plugstack-cold.line" --cold-policy "$DIR/policy-cold.toml" \
    --json "$out/slurm-$stamp.json" 2>&1 | tee -a "$result"
status=${PIPESTATUS[0]}
set -e
{
    echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# pins under $RUN now: $(ls -A "$RUN" 2>/dev/null | grep -vxE '\.jobs|\.views|\.decisions' | wc -l)," \
         "job records: $(ls -A "$RUN/.jobs" 2>/dev/null | wc -l)"
    # timestamps and job ids stripped, so that repeats count together
    for f in "$DIR"/log/slurmctld.log "$DIR"/log/slurmd-*.log; do
        echo "# $(basename "$f"): $(grep -ci error "$f") lines with 'error', $(grep -c 'envsched:' "$f") with 'envsched:'"
        grep -iE 'error|envsched:' "$f" | sed -E 's/^\[[^]]*\] (\[[^]]*\] )?//' | sort | uniq -c | sort -rn |
            sed -n '1,12s/^/#   /p'
    done
    echo "# envsched.log events: $(grep -o 'event=[a-z]*' "$DIR/envsched.log" 2>/dev/null | sort | uniq -c | tr '\n' ' ')"
} | tee -a "$result"
echo "bench: raw output in $result"
[ "$status" = 0 ] || exit 1
