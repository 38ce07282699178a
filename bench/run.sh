#!/bin/bash
# Launch benchmark: per-launch wall time of /bin/true started
#   bare (host /bin/true, and the test tree's busybox by its host path), chroot into the tree
#   (in-process and via chroot(8)), joining a pinned view (open+setns+chdir in the forked child;
#   and with the pin opened once before the fork), a full C enter per launch (new mount ns, tmpfs
#   root, 5 binds, pivot_root), bwrap with the same binds, python3 start-up, and envsched's own CLI
#   if ENVSCHED_EXEC is set.  All cases run interleaved, in a shuffled order each round.
#
#   bash bench/run.sh [-n N] [-w WARMUP]          (root; `make bench` calls this)
#
# Environment:
#   BENCH_N (500), BENCH_WARMUP (20)  recorded and warm-up rounds (every case once per round)
#   BENCH_SEED (1)                    seed of the per-round shuffle (0: fixed order)
#   ENVSCHED_BENCH_DIR                root-owned work dir, created and removed by this script
#                                     (default /run/envsched-bench; not under /tmp)
#   BENCH_TREE                        use this (root-owned) tree instead of a fresh mini one, e.g.
#                                     a debootstrap bookworm tree, whose /bin/true is the same
#                                     coreutils binary as the host's (like-with-like with bare-host)
#   ENVSCHED_EXEC                     command prefix for a full enter through envsched, split on
#                                     white space (no quoting), /bin/true is appended, e.g.
#                                     "/usr/bin/python3 -m envsched.cli.envsched --policy P exec
#                                      --user root --request deb12 --"
#                                     The tree built here is $ENVSCHED_BENCH_DIR/tree.
#                                     ENVSCHED_EXEC=auto: write a one-environment policy for that
#                                     tree ($ENVSCHED_BENCH_DIR/policy.toml, environment "deb12")
#                                     and use /usr/bin/python3 -m envsched.cli.envsched from this
#                                     checkout (PYTHONPATH=<repo>/src) with exec --user root.
#   BENCH_STRICT=1                    exit 2 if a target is missed (default: report only)
#   CC (cc)
#
# Exit: 0 ok, 1 error (including: host mount table not restored), 2 target missed (BENCH_STRICT).
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
N=${BENCH_N:-500}
WARMUP=${BENCH_WARMUP:-20}
SEED=${BENCH_SEED:-1}
bench_dir=${ENVSCHED_BENCH_DIR:-/run/envsched-bench}

while getopts "n:w:" opt; do
    case $opt in
    n) N=$OPTARG ;;
    w) WARMUP=$OPTARG ;;
    *) echo "usage: $0 [-n N] [-w WARMUP]" >&2; exit 64 ;;
    esac
done

die() { echo "bench: $*" >&2; exit 1; }

[[ $N =~ ^[0-9]+$ && $N -ge 1 ]] || die "N must be a positive integer (got '$N')"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer (got '$WARMUP')"
[[ $SEED =~ ^[0-9]+$ ]] || die "BENCH_SEED must be a non-negative integer (got '$SEED')"
[ "$(id -u)" = 0 ] || die "must run as root (mount namespaces, chroot, pinning)"
# The work dir holds the tree, the staging mount point and the pin: root's own, outside /tmp.
[[ $bench_dir =~ ^/[A-Za-z0-9._/-]+$ ]] || die "ENVSCHED_BENCH_DIR must be an absolute path of [A-Za-z0-9._/-]"
case $bench_dir/ in
/tmp/* | /var/tmp/* | /dev/shm/*) die "ENVSCHED_BENCH_DIR must not be under a world-writable directory" ;;
esac
parent=$(dirname "$bench_dir")
[ -d "$parent" ] || die "$parent does not exist"
read -r powner pmode < <(stat -L -c '%u %a' "$parent")
[ "$powner" = 0 ] && (( (8#$pmode & 8#022) == 0 )) ||
    die "$parent must be owned by root and not group/other-writable (is uid $powner mode $pmode)"
for tool in bwrap busybox; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install bubblewrap busybox-static)"
done
[ "$N" -ge 200 ] || echo "bench: note: N=$N < 200 launches per mode; the requirement asks for >= 200" >&2
# The pin must be made from the host (initial) mount namespace; see docs/performance.md.
self_ns=$(readlink /proc/self/ns/mnt)
[ "$self_ns" = "mnt:[4026531832]" ] ||
    echo "bench: warning: not in the initial mount namespace ($self_ns); pinning may fail with EINVAL" >&2

mounts_before=$(cat /proc/self/mountinfo)

# ------------------------------------------------------------------ build the benchmark binary
out=$repo/bench/out
mkdir -p "$out"
"${CC:-cc}" -O2 -Wall -Wextra -o "$out/launch_bench" "$here/launch_bench.c"
B=$out/launch_bench

# ------------------------------------------------------------------ work dir and cleanup
# mkdir fails if the directory exists: never reuse (or delete) something that is not ours.
mkdir -m 0755 "$bench_dir" 2>/dev/null ||
    die "$bench_dir exists: another run is in progress, or a crashed run left it (check
       grep ' $bench_dir' /proc/self/mountinfo; umount what is listed, then rm -rf $bench_dir)"
tree=${BENCH_TREE:-$bench_dir/tree}
stage=$bench_dir/stage
pindir=$bench_dir/pin
pin=$pindir/mnt
pindir_bound=0

# Mount points at or below a path, from the host mount table (field 5 = mount point).
mounts_under() { awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$(mounts_under "$pin")" ]; then
        "$B" release "$pin" >/dev/null || umount -l "$pin"
    fi
    if [ "$pindir_bound" = 1 ]; then
        umount -l "$pindir"
    fi
    local left
    left=$(mounts_under "$bench_dir")
    if [ -n "$left" ]; then
        echo "bench: FAIL: mounts left under $bench_dir, not removing it:" >&2
        echo "$left" >&2
        rc=1
    else
        rm -rf --one-file-system "$bench_dir"
    fi
    local mounts_after
    mounts_after=$(cat /proc/self/mountinfo)
    if [ "$mounts_after" != "$mounts_before" ]; then
        echo "bench: FAIL: the host mount table (/proc/self/mountinfo) differs from before the run:" >&2
        local changed
        changed=$(diff <(echo "$mounts_before") <(echo "$mounts_after"))
        echo "$changed" >&2
        if grep -q -- " $bench_dir[/ ]" <<<"$changed"; then
            echo "bench: lines above name $bench_dir: this run left the mount table changed" >&2
        else
            echo "bench: none of the lines above is under $bench_dir: another process probably" \
                "mounted or unmounted concurrently (rerun when the machine is quiet)" >&2
        fi
        rc=1
    else
        echo "host mount table unchanged ($(echo "$mounts_after" | wc -l) entries, identical to before)"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ the tree, the pin
if [ -z "${BENCH_TREE:-}" ]; then
    "$repo/tests/envs/build-mini-env.sh" "$tree" debian 12 "Debian 12 mini (bench)" >/dev/null
fi
mkdir -m 0700 "$stage" "$pindir"
# A namespace pin on a shared mount would propagate to peer namespaces (util-linux refuses it):
# give the pin its own private mount in that case (undone by cleanup).
if findmnt -n -o PROPAGATION -T "$pindir" | grep -q shared; then
    mount --bind "$pindir" "$pindir"
    pindir_bound=1
    mount --make-private "$pindir"
fi
touch "$pin"
"$B" prepare "$tree" "$stage" "$pin" >/dev/null

# ------------------------------------------------------------------ the cases
bwrap_args=(bwrap --ro-bind "$tree/usr" /usr --symlink usr/bin /bin --symlink usr/lib /lib
    --symlink usr/sbin /sbin --symlink usr/lib64 /lib64 --ro-bind "$tree/etc" /etc --bind /proc /proc --dev-bind /dev /dev
    --bind /tmp /tmp)
envsched_prefix=()
if [ "${ENVSCHED_EXEC:-}" = auto ]; then
    printf '[site]\ndefault = "deb12"\n\n[environments.deb12]\npath = "%s"\n' "$tree" >"$bench_dir/policy.toml"
    export PYTHONPATH=$repo/src${PYTHONPATH:+:$PYTHONPATH}
    envsched_prefix=(/usr/bin/python3 -m envsched.cli.envsched --policy "$bench_dir/policy.toml"
        exec --user root --request deb12 --)
elif [ -n "${ENVSCHED_EXEC:-}" ]; then
    read -r -a envsched_prefix <<<"$ENVSCHED_EXEC"
fi

# Check once that every way in lands where it should before timing anything.
probe=/etc/os-release
want=$(cat "$tree/usr/lib/os-release" 2>/dev/null || cat "$tree/etc/os-release")
check() { # LABEL EXPECTED CMD...
    local label=$1 expected=$2 got
    shift 2
    got=$("$@" 2>&1) || die "check $label failed (exit $?): ${got:-no output}"
    [ "$got" = "$expected" ] || die "check $label: expected '$expected', got '$got'"
}
check chroot "$want" "$B" -q -n 1 -w 0 chroot "$tree" /bin/cat $probe
check join "$want" "$B" -q -n 1 -w 0 join "$pin" /bin/cat $probe
check join-fd "$want" "$B" -q -n 1 -w 0 join-fd "$pin" /bin/cat $probe
check enter "$want" "$B" -q -n 1 -w 0 enter "$tree" "$stage" /bin/cat $probe
check bwrap "$want" "${bwrap_args[@]}" /bin/cat $probe
check bare-tree "" "$tree/usr/bin/true"
if [ ${#envsched_prefix[@]} -gt 0 ]; then
    check envsched "" "${envsched_prefix[@]}" /bin/true
    if [ "${ENVSCHED_EXEC:-}" = auto ]; then
        check envsched "$want" "${envsched_prefix[@]}" /bin/cat $probe
    fi
fi

# Two interleaved sets, each with both bare baselines: the light cases the targets are about,
# and the heavy ones (milliseconds each), whose exits measurably slow the launch that follows
# (+25% right after a python3 start-up, measured here), which would add noise to the ~10 us
# differences the join target is about.
core_cases=(
    bare-host=bare /bin/true
    :: bare-tree=bare "$tree/usr/bin/true" true
    :: chroot=chroot "$tree"
    :: join=join "$pin"
    :: join-fd=join-fd "$pin"
    :: enter=enter "$tree" "$stage"
)
heavy_cases=(
    bare-host=bare /bin/true
    :: bare-tree=bare "$tree/usr/bin/true" true
    :: "chroot(8)=cmd" /usr/sbin/chroot "$tree" /bin/true
    :: bwrap=cmd "${bwrap_args[@]}" /bin/true
    :: python3-I-S=cmd /usr/bin/python3 -I -S -c ""
)
if [ ${#envsched_prefix[@]} -gt 0 ]; then
    heavy_cases+=(:: envsched-cli=cmd "${envsched_prefix[@]}" /bin/true)
fi

# ------------------------------------------------------------------ run
result=$out/result-$(date +%Y%m%d-%H%M%S).txt
{
    echo "# envsched launch benchmark $(date -Is)"
    echo "# $(uname -srm), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')),"
    echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg); N=$N warm-up=$WARMUP seed=$SEED"
} | tee "$result"
for set in core heavy; do
    declare -n set_cases=${set}_cases
    echo -e "\nSECTION $set" | tee -a "$result"
    "$B" -n "$N" -w "$WARMUP" -s "$SEED" -b bare-host,bare-tree "${set_cases[@]}" | tee -a "$result"
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$result"

# ------------------------------------------------------------------ verdicts
echo
awk -v strict="${BENCH_STRICT:-0}" '
$1 == "SECTION" { sec = $2 }
$1 == "RESULT" { med[sec, $2] = $4 }
$1 == "PAIRED" { pd[sec, $2, $3] = $4 }
function verdict(ok) { return ok ? "MET" : "MISSED" }
END {
    bh = med["core", "bare-host"]; bt = med["core", "bare-tree"]; missed = 0
    printf "targets (medians of the core set; like-with-like baseline = bare exec of the tree busybox,\n"
    printf "bare-tree; paired = median over rounds of (case - baseline) in the same round):\n"
    # The issue defines the join target as a ratio of medians; the paired estimate
    # (bare-tree + paired difference) / bare-tree is the steadier one on a noisy machine.
    # Both are printed; BENCH_STRICT fails if either misses.
    j = med["core", "join"]; pj = pd["core", "join", "bare-tree"]
    r = j / bt; rp = (bt + pj) / bt
    ok = r <= 1.02; okp = rp <= 1.02; missed += !ok + !okp
    printf "  join <= 1.02x bare:          %-6s join %.1f us = %.3fx bare-tree (%.1f us)\n", verdict(ok), j, r, bt
    printf "                   paired:     %-6s bare-tree %+.1f us = %.3fx\n", verdict(okp), pj, rp
    printf "                   for reference: %.3fx bare-host (%.1f us, host /bin/true); pin opened before fork (join-fd): %.3fx, paired %+.1f us\n",
        j / bh, bh, med["core", "join-fd"] / bt, pd["core", "join-fd", "bare-tree"]
    e = med["core", "enter"]; d = e - bt; dp = pd["core", "enter", "bare-tree"]
    ok = d <= 1000; okp = dp <= 1000; missed += !ok + !okp
    printf "  full C enter within 1 ms:    %-6s enter %.1f us = bare-tree + %.1f us (%.3fx)\n", verdict(ok), e, d, e / bt
    printf "                   paired:     %-6s bare-tree %+.1f us; bare-host + %.1f us\n", verdict(okp), dp, e - bh
    hbt = med["heavy", "bare-tree"]; py = med["heavy", "python3-I-S"]
    if (("heavy", "envsched-cli") in med) {
        c = med["heavy", "envsched-cli"]; d = c - hbt
        printf "  envsched CLI (Python) enter: %-6s %.1f us = bare-tree + %.1f us, paired %+.1f (python3 -I -S alone: %.1f us)\n",
            verdict(d <= 1000), c, d, pd["heavy", "envsched-cli", "bare-tree"], py
    } else {
        printf "  envsched CLI (Python) enter: not measured (set ENVSCHED_EXEC); python3 -I -S alone: %.1f us\n", py
    }
    if (strict && missed) exit 2
}' "$result"
echo "raw output: $result"
