#!/usr/bin/python3
"""Driver for bench/images.sh (issue #11): image import, per-job cost of images on a throwaway Slurm
cluster, and launch cost against ch-run, podman and bwrap. Not a test: it prints medians, p10/p90,
ratios and paired differences, in the style of bench/slurm_bench.py (whose helpers it uses):
every section runs its cases interleaved, one launch of every case per round in a shuffled order
each round (fixed seed), after warm-up rounds that are not recorded.

Sections:

  import   `envsched image import` (root) of the docker archive, the OCI layout and the directory
           (the bookworm tree), and `chos image import` of the docker archive as the ordinary
           user (rootless umoci); the store sizes against the tree, the archive and the layout
  jobs     `srun [-n 8 -O] [--chos=E] true` outside an allocation (each srun its own job), all as
           the ordinary user: bare (plugstack empty), tree, img (the store image of the same
           tree), user:bookworm (the user's own import of it, squashfuse as the user)
  launch   no scheduler, one launch of /bin/true: envsched exec (root; tree, and the image: loop
           mount), chos run (user; the image and user:bookworm: squashfuse), ch-run (user; the
           squashfs blob through its SquashFUSE, and the unpacked directory), bwrap (user; the
           view's binds on the unpacked directory), podman run --rootfs (root, runc), bare, and
           python3 -I -S for scale

bench/images.sh sets everything up and calls this with `all`; see that script for the layout.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import slurm_bench as sb  # noqa: E402  (stats, interleave, table, check_ok, Ctx)

CLEAN_PATH = sb.CLEAN_PATH
PROBE = 'stat -f -c %T /usr/bin/true; head -1 /etc/os-release; echo "CHOS=$CHOS uid=$(id -u)"'
TARGET_MS = 5.0            # the target for image - tree per job per node


# ------------------------------------------------------------------ plumbing
class Ctx(sb.Ctx):
    """slurm_bench's context; clients run as `as_user` (setpriv, the user's HOME, cwd = home) when
    that is set, as root from /tmp otherwise."""

    def __init__(self, a: argparse.Namespace):
        super().__init__(a)
        self.pw = pwd.getpwnam(a.user)
        self.as_user = False
        self.fuse_fixed = 0

    def user_env(self) -> Dict[str, str]:
        return {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": self.pw.pw_dir, "USER": self.pw.pw_name,
                "LOGNAME": self.pw.pw_name}

    def cmd(self, argv: Sequence[str], extra_env: Optional[Dict[str, str]] = None):
        if not self.as_user:
            return super().cmd(argv, extra_env)
        env = dict(self.env)
        env.update(self.user_env())
        env.update(extra_env or {})
        pre = ["setpriv", f"--reuid={self.pw.pw_uid}", f"--regid={self.pw.pw_gid}", "--init-groups", "--"]
        return pre + list(argv), env, self.pw.pw_dir

    def fuse_open(self) -> None:
        """/dev/fuse must stay 0666 for the user's squashfuse; another session's tests may put
        their saved mode back meanwhile (images.sh restores the one it found at the end)."""
        if os.stat("/dev/fuse").st_mode & 0o777 != 0o666:
            os.chmod("/dev/fuse", 0o666)
            self.fuse_fixed += 1
            print("# note: /dev/fuse had lost mode 0666 (another session?); set again", flush=True)


def user_procs(ctx: Ctx, podman_dir: str) -> List[str]:
    """Processes that outlive a launch: the user's (squashfuse), podman's cleanup and conmon."""
    out = []
    me = str(os.getpid())
    for d in os.listdir("/proc"):
        if not d.isdigit() or d == me:
            continue
        try:
            st = os.stat(f"/proc/{d}")
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            exe = os.path.basename(os.readlink(f"/proc/{d}/exe")) if podman_dir else ""
        except OSError:
            continue
        ours = exe in ("podman", "conmon", "runc") and podman_dir in cmd
        if st.st_uid == ctx.pw.pw_uid or ours:
            out.append(f"{d} {cmd.strip()[:120]}")
    return out


def quiet(ctx: Ctx, podman_dir: str, timeout: float = 5.0) -> float:
    """Wait until nothing of the last launch runs any more; return how long that took."""
    t0 = time.perf_counter()
    while user_procs(ctx, podman_dir):
        if time.perf_counter() - t0 > timeout:
            ctx.failures.append(f"still running {timeout:.0f}s after a launch: {user_procs(ctx, podman_dir)[:3]}")
            break
        time.sleep(0.01)
    return time.perf_counter() - t0


def boot_ci(xs: List[float], seed: int = 1, n: int = 2000) -> Tuple[float, float]:
    """90 % bootstrap interval of the median of xs."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(n))
    return meds[int(0.05 * n)], meds[int(0.95 * n) - 1]


def paired_table(title: str, times: Dict[str, List[float]], pairs: Sequence[Tuple[str, str]]) -> str:
    rows = [f"**{title}**", "", "| difference | median ms | p10 | p90 | 90 % CI of the median (bootstrap) |",
            "|---|---:|---:|---:|---|"]
    for a, b in pairs:
        d = [x - y for x, y in zip(times[a], times[b])]
        s = sb.stats(d)
        lo, hi = boot_ci(d) if len(d) >= 3 else (s["median"], s["median"])
        rows.append(f"| {a} − {b} | {s['median'] * 1e3:+.1f} | {s['p10'] * 1e3:+.1f} | {s['p90'] * 1e3:+.1f} | "
                    f"[{lo * 1e3:+.1f}, {hi * 1e3:+.1f}] |")
    return "\n".join(rows) + "\n"


def sub(res: dict, names: Sequence[str]) -> dict:
    return {"times": {n: res["times"][n] for n in names}, "extra": {n: res["extra"].get(n, []) for n in names}}


def du(path: str, apparent: bool) -> int:
    argv = ["du", "-s", "-x", "--block-size=1"] + (["--apparent-size"] if apparent else []) + [path]
    return int(subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True).stdout.split()[0])


# ------------------------------------------------------------------ import
def section_import(ctx: Ctx, a) -> dict:
    oci = Path(a.oci)
    docker = str(oci / "bookworm.docker.tar")
    cases = {
        "envsched image import docker-archive": {"argv": [a.resolver, "--policy", a.policy, "image", "import",
                                                          docker, "bookworm"], "user": False},
        "envsched image import oci-layout": {"argv": [a.resolver, "--policy", a.policy, "image", "import",
                                                      str(oci / "layout"), "bookworm-oci"], "user": False},
        "envsched image import directory": {"argv": [a.resolver, "--policy", a.policy, "image", "import",
                                                     "--format", "directory", a.tree, "bookworm-dir"], "user": False},
        "chos image import docker-archive (user)": {"argv": [a.chos, "--policy", a.policy, "image", "import",
                                                             docker, "bookworm"], "user": True},
    }
    seen: Dict[str, List[Tuple[str, int]]] = {n: [] for n in cases}

    def launch(name, c):
        ctx.as_user = c["user"]
        dt, p = ctx.timed(c["argv"], timeout=600)
        ctx.as_user = False
        sb.check_ok(ctx, name, p)
        if p.returncode == 0:
            f = p.stdout.split()
            seen[name].append((f[1], int(f[2])))
        return dt, None

    res = sb.interleave(ctx, "import", cases, a.import_rounds, 0, a.seed, launch, lambda: None)
    res["seen"] = seen
    sizes = {"tree (du, disk use)": du(a.tree, False), "tree (du --apparent-size)": du(a.tree, True),
             "docker archive": os.path.getsize(docker), "OCI layout (du)": du(str(oci / "layout"), False),
             "unpacked OCI rootfs (du)": du(str(oci / "bundle" / "rootfs"), False)}
    for name, v in seen.items():
        if v:
            sizes[f"blob: {name.split(' import ')[1]}" + (" (user store)" if "user" in name else "")] = v[-1][1]
    res["sizes"] = sizes
    return res


def import_report(res: dict, a) -> str:
    out = [sb.table(f"import of the bookworm image ({a.import_rounds} rounds, no warm-up; seconds)", res,
                    "envsched image import docker-archive", unit=1, unit_name="s")]
    out.append("**sizes**\n\n| what | bytes | MiB | × blob (docker-archive) |\n|---|---:|---:|---:|")
    ref = res["sizes"].get("blob: docker-archive")
    for k, v in res["sizes"].items():
        out.append(f"| {k} | {v} | {v / 2 ** 20:.1f} | {v / ref:.2f} |" if ref else f"| {k} | {v} | {v / 2 ** 20:.1f} | - |")
    out.append("")
    for name, v in res["seen"].items():
        digests = sorted({d for d, _ in v})
        out.append(f"- {name}: {len(v)} imports, {len(digests)} distinct digest(s): "
                   + ", ".join(d[:19] for d in digests))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ jobs
def section_jobs(ctx: Ctx, a) -> dict:
    cases = {}
    for n in (1, 8):
        opt = [] if n == 1 else ["-n", str(n), "-O"]
        sfx = "" if n == 1 else f" -n{n}"
        cases[f"bare{sfx}"] = {"plugin": False, "argv": ["srun", *opt, "true"]}
        cases[f"tree{sfx}"] = {"plugin": True, "argv": ["srun", *opt, "--chos=tree", "true"]}
        cases[f"image{sfx}"] = {"plugin": True, "argv": ["srun", *opt, "--chos=img", "true"]}
        cases[f"user{sfx}"] = {"plugin": True, "argv": ["srun", *opt, "--chos=user:bookworm", "true"]}
    ctx.as_user = True
    ctx.fuse_open()
    for name, c in cases.items():
        if "-n" in name:
            continue
        ctx.plugstack(c["plugin"])
        p = ctx.run([*c["argv"][:-1], "sh", "-c", PROBE])
        print(f"#   check {name:6s} -> {' | '.join(p.stdout.split(chr(10))).strip(' |')}"
              + ("" if p.returncode == 0 else f" (exit {p.returncode}: {p.stderr.strip()[:200]})"), flush=True)
        if p.returncode != 0:
            ctx.failures.append(f"check {name}: exit {p.returncode}")
        ctx.settle()

    def launch(name, c):
        if name.startswith("user"):
            ctx.fuse_open()
        ctx.plugstack(c["plugin"])
        dt, p = ctx.timed(c["argv"])
        sb.check_ok(ctx, name, p)
        return dt, ctx.settle()

    res = sb.interleave(ctx, "jobs: each srun its own job (as the user)", cases, a.rounds, a.warmup, a.seed,
                        launch, lambda: time.sleep(ctx.pause))
    ctx.plugstack(True)
    ctx.as_user = False
    return res


def jobs_report(res: dict, a) -> str:
    t = res["times"]
    one = ["bare", "tree", "image", "user"]
    eight = [f"{n} -n8" for n in one]
    out = [sb.table(f"each srun its own job, 1 task: `srun [--chos=E] true` as the user ({a.rounds} rounds)",
                    sub(res, one), "bare", ref2="tree", extra_name="settle ms"),
           sb.table(f"each srun its own job, 8 tasks: `srun -n 8 -O [--chos=E] true` ({a.rounds} rounds)",
                    sub(res, eight), "bare -n8", ref2="tree -n8", extra_name="settle ms"),
           paired_table("paired differences per job (same round)", t,
                        [("image", "tree"), ("user", "tree"), ("tree", "bare"), ("image", "bare"),
                         ("user", "bare"), ("image -n8", "tree -n8"), ("user -n8", "tree -n8"),
                         ("tree -n8", "bare -n8")])]
    rows = ["**per task: what each of the 7 extra tasks adds (`-n 8` against 1 task)**", "",
            "| case | 1 task median ms | 8 tasks median ms | per extra task ms | − bare, per extra task ms (paired) |",
            "|---|---:|---:|---:|---:|"]
    for n in one:
        m1, m8 = statistics.median(t[n]), statistics.median(t[f"{n} -n8"])
        if n == "bare":
            extra = "0"
        else:
            d = [((x8 - b8) - (x1 - b1)) / 7 for x1, x8, b1, b8 in
                 zip(t[n], t[f"{n} -n8"], t["bare"], t["bare -n8"])]
            extra = f"{statistics.median(d) * 1e3:+.2f}"
        rows.append(f"| {n} | {m1 * 1e3:.1f} | {m8 * 1e3:.1f} | {(m8 - m1) / 7 * 1e3:.2f} | {extra} |")
    for x in ("image", "user"):
        d = [((i8 - t8) - (i1 - t1)) / 7 for i1, i8, t1, t8 in zip(t[x], t[f"{x} -n8"], t["tree"], t["tree -n8"])]
        lo, hi = boot_ci(d) if len(d) >= 3 else (d[0], d[0])
        rows.append(f"\n{x} − tree per extra task (paired): median {statistics.median(d) * 1e3:+.2f} ms, "
                    f"90 % CI [{lo * 1e3:+.2f}, {hi * 1e3:+.2f}]")
    out.append("\n".join(rows) + "\n")
    d = [x - y for x, y in zip(t["image"], t["tree"])]
    med = statistics.median(d) * 1e3
    lo, hi = (x * 1e3 for x in (boot_ci(d) if len(d) >= 3 else (d[0], d[0])))
    verdict = ("MET" if hi <= TARGET_MS else "met by the median, but not resolved (CI above the target)"
               if med <= TARGET_MS else "NOT MET")
    out.append(f"**target image − tree ≤ {TARGET_MS:.0f} ms per job per node: {verdict}** "
               f"(paired median {med:+.1f} ms, 90 % CI [{lo:+.1f}, {hi:+.1f}], {len(d)} rounds, 1 node)\n")
    return "\n".join(out)


# ------------------------------------------------------------------ launch
def section_launch(ctx: Ctx, a) -> dict:
    rootfs = str(Path(a.oci) / "bundle" / "rootfs")
    blob = json.loads(subprocess.run([a.resolver, "--policy", a.policy, "image", "list", "--json", "bookworm"],
                                     stdout=subprocess.PIPE, text=True, check=True).stdout)[0]
    blob_path = os.path.join(a.store, "blobs", "sha256", blob["digest"].split(":")[1] + ".sqfs")
    es = [a.resolver, "--policy", a.policy, "exec", "--user", "root", "--no-user-file"]
    bw = ["bwrap", "--ro-bind", f"{rootfs}/usr", "/usr", "--ro-bind", f"{rootfs}/etc", "/etc",
          "--ro-bind", f"{rootfs}/opt", "/opt"]
    for d in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(os.path.join(rootfs, d)):
            bw += ["--symlink", os.readlink(os.path.join(rootfs, d)), f"/{d}"]
    bw += ["--bind", "/proc", "/proc", "--dev-bind", "/dev", "/dev", "--ro-bind", "/sys", "/sys",
           "--bind", "/tmp", "/tmp", "--bind", "/var/tmp", "/var/tmp", "--bind", "/home", "/home"]
    for f in ("passwd", "group", "hosts", "resolv.conf", "nsswitch.conf"):
        bw += ["--ro-bind", f"/etc/{f}", f"/etc/{f}"]
    bw += ["--bind", "/", "/local"]
    cases = {
        "envsched exec img (root, loop)": {"argv": [*es, "--request", "img", "--", "/bin/true"], "user": False},
        "envsched exec tree (root)": {"argv": [*es, "--request", "tree", "--", "/bin/true"], "user": False},
        "chos run img (user, squashfuse)": {"argv": [a.chos, "--policy", a.policy, "run", "img", "--", "/bin/true"],
                                            "user": True},
        "chos run user:bookworm (user)": {"argv": [a.chos, "--policy", a.policy, "run", "user:bookworm", "--",
                                                   "/bin/true"], "user": True},
        "ch-run squashfs (user, SquashFUSE)": {"argv": ["ch-run", "-m", a.ch_mount, blob_path, "--", "/bin/true"],
                                               "user": True},
        "ch-run directory (user)": {"argv": ["ch-run", rootfs, "--", "/bin/true"], "user": True},
        "bwrap, the view's binds (user)": {"argv": [*bw, "/bin/true"], "user": True},
    }
    if a.podman_dir:
        pd = a.podman_dir
        # root: rootless podman needs newuidmap (uidmap), absent here. runc: Debian's crun refuses
        # this host's hybrid cgroup v1/v2 layout. --ulimit: root here lacks CAP_SYS_RESOURCE, and
        # podman's default rlimits for root are above this host's hard limits (setrlimit EPERM)
        pm = ["podman", "--root", f"{pd}/root", "--runroot", f"{pd}/run", "--tmpdir", f"{pd}/tmp",
              "--runtime", "runc", "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
        cases["podman run --rootfs (root, runc)"] = {"argv": [*pm, "--rootfs", rootfs, "/bin/true"], "user": False}
        cases["podman run --network=host --rootfs (root)"] = {
            "argv": [*pm, "--network=host", "--rootfs", rootfs, "/bin/true"], "user": False}
    cases["bare /bin/true (root)"] = {"argv": ["/bin/true"], "user": False}
    cases["setpriv /bin/true (user)"] = {"argv": ["/bin/true"], "user": True}
    cases["python3 -I -S -c ''"] = {"argv": ["/usr/bin/python3", "-I", "-S", "-c", ""], "user": False}
    ctx.fuse_open()
    for name, c in cases.items():
        if c["argv"][-1] != "/bin/true":
            continue
        ctx.as_user = c["user"]
        p = ctx.run([*c["argv"][:-1], "/bin/sh", "-c", PROBE])
        ctx.as_user = False
        print(f"#   check {name:42s} -> {' | '.join(p.stdout.strip().splitlines())}"
              + ("" if p.returncode == 0 else f" (exit {p.returncode}: {p.stderr.strip()[-300:]})"), flush=True)
        if p.returncode != 0:
            ctx.failures.append(f"check {name}: exit {p.returncode}: {p.stderr.strip()[-300:]}")
            c["broken"] = True
        quiet(ctx, a.podman_dir)
    cases = {k: v for k, v in cases.items() if not v.get("broken")}

    def launch(name, c):
        if "fuse" in name.lower() or "user:" in name:
            ctx.fuse_open()
        ctx.as_user = c["user"]
        dt, p = ctx.timed(c["argv"])
        ctx.as_user = False
        sb.check_ok(ctx, name, p)
        return dt, quiet(ctx, a.podman_dir)

    res = sb.interleave(ctx, "launch of /bin/true, no scheduler", cases, a.launch_rounds, a.warmup, a.seed,
                        launch, lambda: None)
    res["blob"] = blob_path
    return res


def launch_report(res: dict, a) -> str:
    base = "envsched exec img (root, loop)"
    return sb.table(f"one launch of /bin/true, no scheduler ({a.launch_rounds} rounds; ratios to envsched with "
                    "the image; user cases include setpriv)", res, base, ref2="bare /bin/true (root)",
                    extra_name="quiet ms (until squashfuse / podman cleanup had exited)")


# ------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["all"])
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--plugstack-line-file", required=True)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--resolver", required=True)
    ap.add_argument("--chos", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--tree", required=True)
    ap.add_argument("--oci", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--ch-mount", required=True)
    ap.add_argument("--podman-dir", default="")
    ap.add_argument("--env-name", default="img")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--launch-rounds", type=int, default=100)
    ap.add_argument("--import-rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--poll", type=float, default=0.05)
    ap.add_argument("--pause", type=float, default=0.2)
    ap.add_argument("--sections", default="import,jobs,launch")
    ap.add_argument("--json", help="write raw results here")
    a = ap.parse_args()
    ctx = Ctx(a)
    secs = a.sections.split(",")
    out: Dict[str, dict] = {}
    print(f"# run_dir {a.run_dir}; user {a.user}; tree {a.tree}; seed {a.seed}", flush=True)
    if "import" in secs:
        out["import"] = section_import(ctx, a)
    else:                                   # the later sections need the images, untimed
        for argv, user in (([a.resolver, "--policy", a.policy, "image", "import",
                             f"{a.oci}/bookworm.docker.tar", "bookworm"], False),
                           ([a.chos, "--policy", a.policy, "image", "import", f"{a.oci}/bookworm.docker.tar",
                             "bookworm"], True)):
            ctx.as_user = user
            sb.check_ok(ctx, " ".join(argv[3:5]), ctx.run(argv, timeout=600))
            ctx.as_user = False
    if "jobs" in secs:
        out["jobs"] = section_jobs(ctx, a)
    if "launch" in secs:
        out["launch"] = section_launch(ctx, a)

    print()
    if "import" in out:
        print(import_report(out["import"], a))
    if "jobs" in out:
        print(jobs_report(out["jobs"], a))
    if "launch" in out:
        print(launch_report(out["launch"], a))
    for k, v in out.items():
        if isinstance(v, dict) and "decided" in v:
            print(f"resolver decisions (event=decided in envsched.log) during {k}: {v['decided']}")
    if ctx.fuse_fixed:
        print(f"/dev/fuse lost mode 0666 {ctx.fuse_fixed} time(s) during the run and was set again")
    print("failures:", len(ctx.failures))
    for f in ctx.failures[:20]:
        print("  ", f)
    if a.json:
        Path(a.json).write_text(json.dumps(out))
    return 1 if ctx.failures else 0


if __name__ == "__main__":
    sys.exit(main())
