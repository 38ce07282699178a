#!/bin/bash
# The Slurm part of `make demo`: a throwaway cluster (munged, slurmctld, 2 slurmd) on this
# machine with the envsched SPANK plugin; an `sbatch --chos=deb12` job and an
# `srun --chos=deb13` step, side by side; then everything is stopped and removed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
demo=${DEMO_DIR:-/var/lib/envsched-demo}
cluster=$demo/slurm
run_dir=/run/envsched-demo-slurm

bash tests/cluster/slurm/install.sh >/dev/null
make -s -C plugins/slurm-spank
[ -e "$cluster/pids" ] && bash tests/cluster/slurm/stop.sh "$cluster" >/dev/null 2>&1 || true
rm -rf "$cluster"
install -d -m 0755 "$cluster"
stop() {
    bash "$repo/tests/cluster/slurm/stop.sh" "$cluster" >/dev/null 2>&1 || echo "demo: stop.sh failed; see $cluster/log" >&2
    rm -rf "$cluster" "$run_dir"
}
trap stop EXIT
echo "== starting a throwaway Slurm cluster"
bash tests/cluster/slurm/start.sh "$cluster" 2 | tail -1
export SLURM_CONF=$cluster/slurm.conf

sed -e "s|^run_dir = .*|run_dir = \"$run_dir\"|" "$demo/policy.toml" > "$cluster/policy.toml"
chmod 0644 "$cluster/policy.toml"
echo "required $repo/plugins/slurm-spank/envsched_spank.so policy=$cluster/policy.toml" \
     "resolver=$repo/.venv/bin/envsched run_dir=$run_dir bind=$cluster/spool bind=$cluster/munge" \
     > "$cluster/plugstack.conf"
bash tests/cluster/slurm/restart-slurmd.sh "$cluster" >/dev/null   # slurmd must see the plugin at start

cd /tmp                  # the jobs' cwd must exist in the views: /tmp is shared
show='grep -E "^PRETTY_NAME=" /etc/os-release; echo "CHOS=$CHOS"; echo "node=$SLURMD_NODENAME"'
job=$(sbatch --parsable --chos=deb12 -o "$cluster/batch.out" --wrap "$show")
step=$(srun --chos=deb13 -N1 sh -c "$show")
for _ in $(seq 100); do
    state=$(scontrol show job "$job" -o | grep -o 'JobState=[A-Z]*' | cut -d= -f2)
    case $state in COMPLETED|FAILED|CANCELLED) break ;; esac
    sleep 0.2
done
echo
echo "== sbatch --chos=deb12 (job $job, $state) | srun --chos=deb13"
paste <(cat "$cluster/batch.out") <(echo "$step") | column -t -s $'\t'
echo
echo "== sbatch --chos=sl5 (refused at submit, never queued)"
sbatch --chos=sl5 --wrap true 2>&1 | head -1 || true
