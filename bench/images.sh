#!/bin/bash
# Image benchmark (issue #11): import time and store size of a real Debian bookworm image; the
# per-job cost of an image environment against a tree environment and against Slurm without the
# plugin, on a real (throwaway) cluster; the per-job cost of a user's own image (squashfuse); and
# the launch cost of envsched / chos against ch-run, podman and bwrap on the same image.
# Not a test: prints medians, p10/p90, ratios and paired differences.
#
#   bash bench/images.sh            (root; `make bench-images` calls this; ≈ 5 min with defaults)
#   BENCH_N=2 bash bench/images.sh  (smoke run, ≈ 1.2 min)
#
# Sets up, in its own directories (<r> random):
#   /var/lib/envsched-bench-images-<r>/
#       oci/layout                OCI layout (umoci init/new/insert of the bookworm tree, tag bookworm)
#       oci/bookworm.docker.tar   skopeo copy of it to a docker archive (envsched/bookworm:latest)
#       oci/bundle/rootfs         umoci unpack of the layout: the directory image for ch-run (the
#                                 directory case), bwrap and podman (podman writes into its rootfs:
#                                 /run/.containerenv, /etc/hostname, /etc/mtab -- never the cache)
#       images/                   the admins' store (policy image_dir): bookworm (the docker
#                                 archive), bookworm-oci (the layout), bookworm-dir (the directory)
#       policy.toml               default `local`; environments tree (the bookworm tree itself) and
#                                 img (image "bookworm"); [user_images] enabled
#       cluster (tests/cluster/slurm/start.sh DIR 1, SLURM_BASE_PORT=19817), envsched_spank.so
#       (a private copy), plugstack.line, envsched.log, podman/ (podman's --root/--runroot/--tmpdir)
#   /run/envsched-bench-images-<r>/      the plugin's run_dir
#   user envsched-bimg-<r>               an ordinary user (created, removed at the end with its
#                                        home): imports user:bookworm with `chos image import`, runs
#                                        every Slurm job, `chos run`, ch-run and bwrap
#   /dev/fuse mode 0666                  for the user's squashfuse (udev's mode on ordinary nodes);
#                                        put back to the mode it had at the start
# The tree is /var/cache/envsched-tests/deb12-real, the test suite's (built here with
# site-config/environments/build-debootstrap.sh under the suite's lock if missing; read only).
# Then bench/images_bench.py (sections import, jobs, launch; see there). On exit -- normal, error,
# SIGINT/SIGTERM -- the cluster is stopped by PID (stop.sh), pins left under run_dir are reported
# and released, squashfuse / ch-run / podman processes of ours are reported and ended by PID,
# every mount under our directories is reported and unmounted, loop devices backed by our store
# are reported and detached, the user and both directories are removed, /dev/fuse gets its mode
# back, and the host mount table is compared with the one at the start.
#
# Environment:
#   BENCH_N (30)          recorded rounds of the Slurm jobs section (every case once per round)
#   BENCH_LAUNCH_N (100)  recorded rounds of the launch section (default BENCH_N when BENCH_N < 30)
#   BENCH_IMPORT_N (3)    recorded rounds of the import section (default 1 when BENCH_N < 3)
#   BENCH_WARMUP (3)      warm-up rounds per section (1 for import), not recorded
#   BENCH_SEED (1)        seed of the per-round shuffle
#   BENCH_SECTIONS        comma list (default import,jobs,launch)
#   BENCH_KEEP=1          keep the bench directory (logs, images) after stopping the cluster
#
# Exit: 0 ok; 1 error, a failed launch, something of ours left behind (pin, mount, loop device,
# process), or the host mount table changed below our directories.
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cluster_scripts=$repo/tests/cluster/slurm
N=${BENCH_N:-30}
[[ $N =~ ^[0-9]+$ && $N -ge 1 ]] || { echo "bench: BENCH_N must be a positive integer" >&2; exit 1; }
if [ "$N" -lt 30 ]; then LAUNCH_N=${BENCH_LAUNCH_N:-$N}; else LAUNCH_N=${BENCH_LAUNCH_N:-100}; fi
if [ "$N" -lt 3 ]; then IMPORT_N=${BENCH_IMPORT_N:-1}; else IMPORT_N=${BENCH_IMPORT_N:-3}; fi
WARMUP=${BENCH_WARMUP:-3}
SEED=${BENCH_SEED:-1}
SECTIONS=${BENCH_SECTIONS:-import,jobs,launch}
TREE=/var/cache/envsched-tests/deb12-real

die() { echo "bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (slurmd, munged, loop mounts, a user of its own)"
resolver=$repo/.venv/bin/envsched
chos=$repo/.venv/bin/chos
[ -x "$resolver" ] && [ -x "$chos" ] || die "$resolver not found: make venv first"
for n in "$LAUNCH_N" "$IMPORT_N" "$WARMUP" "$SEED"; do
    [[ $n =~ ^[0-9]+$ ]] || die "counts must be non-negative integers (got '$n')"
done
for tool in umoci skopeo mksquashfs squashfuse bwrap ch-run setpriv useradd; do
    command -v "$tool" >/dev/null ||
        die "$tool not found (apt-get install umoci skopeo squashfs-tools squashfuse bubblewrap charliecloud-runtime)"
done
# podman (and runc: Debian's crun refuses this host's hybrid cgroup layout) are optional
podman_ok=1
for tool in podman runc; do
    command -v "$tool" >/dev/null || {
        echo "bench: $tool not found: the podman case is left out" \
             "(apt-get install -y --no-install-recommends podman runc)" >&2
        podman_ok=0
    }
done
[ "$N" -ge 30 ] || echo "bench: note: BENCH_N=$N < 30 rounds: a smoke run, not numbers to quote" >&2

rand=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
DIR=/var/lib/envsched-bench-images-$rand
RUN=/run/envsched-bench-images-$rand
BUSER=envsched-bimg-$rand
[ ! -e "$DIR" ] && [ ! -e "$RUN" ] || die "$DIR or $RUN exists"
! id "$BUSER" >/dev/null 2>&1 || die "user $BUSER exists"
out=$repo/bench/out
mkdir -p "$out"
stamp=$(date +%Y%m%d-%H%M%S)
result=$out/images-$stamp.txt
mounts_before=$(cat /proc/self/mountinfo)
fuse_mode=$(stat -c %a /dev/fuse)
started=""
user_made=""

under() {   # mount points (from mountinfo) at or below $1, deepest first
    awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

our_pids() {   # processes of ours that may outlive a launch: the user's, or podman/conmon on our dirs
    local d pid exe uid buid=""
    [ -n "$user_made" ] && buid=$(id -u "$BUSER" 2>/dev/null)
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [ "$pid" = $$ ] && continue
        uid=$(awk '/^Uid:/ { print $2 }' "$d/status" 2>/dev/null) || continue
        if [ -n "$buid" ] && [ "$uid" = "$buid" ]; then
            echo "$pid"
            continue
        fi
        exe=$(readlink "$d/exe" 2>/dev/null) || continue
        case "$exe" in
        */podman | */conmon | */runc)
            tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -qF -- "$DIR/" && echo "$pid" ;;
        esac
    done
}

cleanup() {
    local rc=$? m p left loops
    trap - EXIT INT TERM
    set +e
    if [ -n "$started" ]; then
        "$cluster_scripts/stop.sh" "$DIR" || { echo "bench: stop.sh failed" >&2; rc=1; }
    fi
    if [ -d "$RUN" ]; then
        left=$(ls -A "$RUN" | grep -vx -e '.jobs' -e '.images')
        if [ -n "$left" ] || [ -n "$(ls -A "$RUN/.jobs" 2>/dev/null)" ]; then
            echo "bench: pins or job records left under $RUN after the jobs ended:" \
                 "$(echo $left) $(ls -A "$RUN/.jobs" 2>/dev/null | tr '\n' ' ')" >&2
            rc=1
            for k in $left; do
                "$resolver" --policy "$DIR/policy.toml" release --key "$k" --quiet ||
                    echo "bench: could not release $k" >&2
            done
        fi
        # the node's one mount of each image (holders, kept site.image_hold after the last job)
        "$resolver" --policy "$DIR/policy.toml" gc --idle-images >/dev/null ||
            { echo "bench: envsched gc --idle-images failed" >&2; rc=1; }
    fi
    # processes of ours (squashfuse servers, ch-run, podman's conmon) that outlived their launch
    for _ in $(seq 50); do [ -z "$(our_pids)" ] && break; sleep 0.1; done
    p=$(our_pids)
    if [ -n "$p" ]; then
        echo "bench: processes of ours still running, ended by PID:" >&2
        for x in $p; do echo "  $x $(tr '\0' ' ' < /proc/$x/cmdline 2>/dev/null)" >&2; done
        kill -TERM $p 2>/dev/null; sleep 0.5; kill -KILL $p 2>/dev/null
        rc=1
    fi
    for d in "$RUN" "$DIR"; do
        m=$(under "$d")
        if [ -n "$m" ]; then
            echo "bench: still mounted under $d, unmounting: $(echo $m)" >&2
            rc=1
            for x in $m; do umount "$x" || umount -l "$x"; done
        fi
    done
    loops=$(losetup -a 2>/dev/null | grep -F "$DIR/" | cut -d: -f1)
    if [ -n "$loops" ]; then
        echo "bench: loop devices backed by our store, detaching: $(echo $loops)" >&2
        rc=1
        for x in $loops; do losetup -d "$x"; done
    fi
    if [ -n "$user_made" ]; then
        userdel --remove "$BUSER" 2>/dev/null || { echo "bench: userdel $BUSER failed" >&2; rc=1; }
        rm -rf "/var/tmp/$BUSER.ch"
    fi
    if [ "$(stat -c %a /dev/fuse)" != "$fuse_mode" ]; then
        chmod "$fuse_mode" /dev/fuse
    fi
    echo "bench: /dev/fuse mode $(stat -c %a /dev/fuse) (was $fuse_mode at the start)"
    [ -d "$RUN" ] && [ -z "$(under "$RUN")" ] && rm -rf "$RUN"
    if [ -d "$DIR" ]; then
        if [ -n "$(under "$DIR")" ]; then
            echo "bench: still mounted under $DIR (not removed)" >&2
            rc=1
        elif [ "${BENCH_KEEP:-0}" = 1 ]; then
            echo "bench: kept $DIR"
        else
            rm -rf "$DIR"
        fi
    fi
    # other engineers' tests mount and unmount too: only a change below our directories counts
    if [ "$(cat /proc/self/mountinfo)" != "$mounts_before" ]; then
        if diff <(echo "$mounts_before") /proc/self/mountinfo | grep -E '^[<>]' | grep -qF -e "$DIR" -e "$RUN"; then
            echo "bench: the host mount table differs below our directories:" >&2
            diff <(echo "$mounts_before") /proc/self/mountinfo >&2
            rc=1
        else
            echo "bench: host mount table: nothing of ours; other changes (other engineers' tests):" \
                 "$(diff <(echo "$mounts_before") /proc/self/mountinfo | grep -cE '^[<>]') lines"
        fi
    else
        echo "bench: host mount table unchanged"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ the bookworm tree
if [ ! -x "$TREE/bin/sh" ] || [ ! -f "$TREE/etc/profile" ]; then
    echo "bench: building $TREE (debootstrap bookworm, minbase) under the test suite's lock"
    mkdir -p -m 0755 "$(dirname "$TREE")"
    (
        flock 9
        if [ ! -x "$TREE/bin/sh" ] || [ ! -f "$TREE/etc/profile" ]; then
            args=()
            [ -e "$TREE" ] && args=(--replace)
            "$repo/site-config/environments/build-debootstrap.sh" bookworm "$TREE" --variant minbase "${args[@]}"
        fi
    ) 9>"$(dirname "$TREE")/.$(basename "$TREE").fixture.lock"
fi

# ------------------------------------------------------------------ directories, user, images
mkdir -m 0755 "$DIR"
chown 0:0 "$DIR"
mkdir -m 0755 "$DIR/oci" "$DIR/scripts" "$DIR/work"
useradd --create-home --shell /bin/sh --user-group "$BUSER"
user_made=1
mkdir -m 0700 "$DIR/ch-mnt"                  # ch-run's SquashFS mount point (-m), the user's
chown "$BUSER:$BUSER" "$DIR/ch-mnt"
chmod 0666 /dev/fuse

t0=$(date +%s.%N)
(
    cd "$DIR/oci"
    umoci init --layout layout
    umoci new --image layout:bookworm
    umoci insert --image layout:bookworm "$TREE" /
    skopeo copy -q oci:layout:bookworm docker-archive:bookworm.docker.tar:envsched/bookworm:latest
    umoci unpack --image layout:bookworm bundle >/dev/null
    chmod 0755 bundle                        # umoci makes it 0700: ch-run and bwrap run as the user
)
chmod 0644 "$DIR/oci/bookworm.docker.tar"
oci_build_s=$(echo "$(date +%s.%N) - $t0" | bc)

cat > "$DIR/policy.toml" <<EOF
[site]
default = "local"
run_dir = "$RUN"
log_file = "$DIR/envsched.log"
image_dir = "$DIR/images"

[environments.tree]
path = "$TREE"
description = "Debian 12 bookworm (debootstrap minbase tree)"

[environments.img]
image = "bookworm"
description = "the same tree as an image (docker archive, envsched image import)"

[user_images]
enabled = true
EOF
chmod 0644 "$DIR/policy.toml"

# ------------------------------------------------------------------ cluster, plugin
"$cluster_scripts/install.sh" >/dev/null
make -s -C "$repo/plugins/slurm-spank"
install -m 0755 "$repo/plugins/slurm-spank/envsched_spank.so" "$DIR/envsched_spank.so"
started=1
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SLURM_BASE_PORT=19817 "$cluster_scripts/start.sh" "$DIR" 1
echo "required $DIR/envsched_spank.so policy=$DIR/policy.toml resolver=$resolver" \
     "run_dir=$RUN bind=$DIR/spool bind=$DIR/munge" > "$DIR/plugstack.line"
cp "$DIR/plugstack.line" "$DIR/plugstack.conf"
chmod 0644 "$DIR/plugstack.conf"
"$cluster_scripts/restart-slurmd.sh" "$DIR" >/dev/null      # job_prolog/epilog need it

{
    echo "# envsched image bench $stamp, $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo ?)" \
         "$(git -C "$repo" status --porcelain 2>/dev/null | grep -q . && echo '(dirty)')"
    echo "# plugin sha256 $(sha256sum "$DIR/envsched_spank.so" | cut -c1-16), uncommitted changes in" \
         "plugins/slurm-spank + src: $(git -C "$repo" status --porcelain -- plugins/slurm-spank src 2>/dev/null |
         grep -v '^??' | wc -l) files"
    echo "# $(uname -sr), $(nproc) CPUs, $(SLURM_CONF=$DIR/slurm.conf sinfo --version), ch-run $(USER=root ch-run -V 2>&1 | head -1), $(podman --version 2>/dev/null || echo 'no podman'), $(bwrap --version)," \
         "squashfuse $(dpkg-query -W -f '${Version}' squashfuse 2>/dev/null), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# OCI layout + docker archive + unpacked rootfs built from $TREE in ${oci_build_s}s"
} | tee "$result"
set +e
SLURM_CONF=$DIR/slurm.conf /usr/bin/python3 "$here/images_bench.py" all \
    --cluster "$DIR" --run-dir "$RUN" --plugstack-line-file "$DIR/plugstack.line" \
    --policy "$DIR/policy.toml" --resolver "$resolver" --chos "$chos" --user "$BUSER" \
    --tree "$TREE" --oci "$DIR/oci" --store "$DIR/images" --ch-mount "$DIR/ch-mnt" \
    --podman-dir "$( [ "$podman_ok" = 1 ] && echo "$DIR/podman")" \
    --rounds "$N" --launch-rounds "$LAUNCH_N" --import-rounds "$IMPORT_N" --warmup "$WARMUP" \
    --seed "$SEED" --sections "$SECTIONS" --json "$out/images-$stamp.json" 2>&1 | tee -a "$result"
status=${PIPESTATUS[0]}
set -e
{
    echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# pins under $RUN now: $(ls -A "$RUN" 2>/dev/null | grep -vx -e '.jobs' -e '.images' | wc -l)," \
         "job records: $(ls -A "$RUN/.jobs" 2>/dev/null | wc -l)"
    for f in "$DIR"/log/slurmctld.log "$DIR"/log/slurmd-*.log; do
        echo "# $(basename "$f"): $(grep -ci error "$f") lines with 'error', $(grep -c 'envsched:' "$f") with 'envsched:'"
        grep -iE 'error|envsched:' "$f" | sed -E 's/^\[[^]]*\] (\[[^]]*\] )?//' | sort | uniq -c | sort -rn |
            head -8 | sed 's/^/#   /'
    done
    echo "# envsched.log events: $(grep -o 'event=[a-z]*' "$DIR/envsched.log" 2>/dev/null | sort | uniq -c | tr '\n' ' ')"
} | tee -a "$result"
echo "bench: raw output in $result"
[ "$status" = 0 ] || exit 1
