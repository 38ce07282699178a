"""`chos run NAME -- true` against ch-run and bwrap on the same tree (#13). Not a test: it prints
medians, p10/p90 and ratios of interleaved rounds (every case once per round, shuffled each round).

Cases, each started by this process (fork, as the user: groups, gid, uid dropped in the child,
then exec; no setpriv in between), on one tree:
  bare /bin/true          the host's, as the user: what a fork and an exec cost here
  chos run (C, warm)      the C front (plugins/chos) from the user's run cache: no Python
  chos run (Python)       the front with ENVSCHED_NO_RUN_CACHE=1: the Python command decides and
                          builds the view (what every `chos run` cost before)
  ch-run                  charliecloud's ch-run on the tree (its own user namespace and binds)
  bwrap (the view's binds) bubblewrap with the binds envsched's view has (tree dirs read-only,
                          /proc /dev /sys /tmp /var/tmp /home, identity files, / at /local)
and as root:
  envsched exec (C, warm) the C front of `envsched` (plugins/chos) from root's run cache:
                          envsched exec --user USER --request deb12 -- /bin/true
  envsched exec (Python)  the same with ENVSCHED_NO_RUN_CACHE=1
  bwrap (root)            the same bwrap command as root

  bench/chos_run.sh [TREE]      (root; `make bench-chos`; N rounds from BENCH_N, default 40)
"""
from __future__ import annotations

import os
import pwd
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
from testlib import interleaved, real_user  # noqa: E402

N = int(os.environ.get("BENCH_N", "40"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "5"))
USER = "envsched-bench-run"
FRONT = os.path.join(REPO, "plugins", "chos", "chos")
ENVSCHED_FRONT = os.path.join(REPO, "plugins", "chos", "envsched")
VENV_PY = os.path.join(REPO, ".venv", "bin", "python")


def launcher(argv, env, pw=None):
    """A case: one fork+exec of argv (as pw when given), its wall time; it must succeed."""
    def once() -> float:
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            try:
                fd = os.open(os.devnull, os.O_WRONLY)
                os.dup2(fd, 1)
                if pw is not None:
                    os.setgroups(os.getgrouplist(pw.pw_name, pw.pw_gid))
                    os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
                    os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
                    os.chdir(pw.pw_dir)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        _, status = os.waitpid(pid, 0)
        wall = time.perf_counter() - t
        if status != 0:
            raise SystemExit(f"failed ({status:#x}): {' '.join(argv)}")
        return wall
    return once


def bwrap_argv(tree: str):
    argv = ["/usr/bin/bwrap"]
    for d in ("bin", "etc", "lib", "lib32", "lib64", "libx32", "opt", "sbin", "usr"):
        path = os.path.join(tree, d)
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), f"/{d}"]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, f"/{d}"]
    argv += ["--bind", "/proc", "/proc", "--dev-bind", "/dev", "/dev", "--bind", "/sys", "/sys", "--bind", "/tmp",
             "/tmp", "--bind", "/var/tmp", "/var/tmp", "--bind", "/home", "/home"]
    for f in ("passwd", "group", "hosts", "resolv.conf", "nsswitch.conf"):
        if os.path.exists(f"/etc/{f}"):
            argv += ["--ro-bind", f"/etc/{f}", f"/etc/{f}"]
    return argv + ["--ro-bind", "/", "/local", "/bin/true"]


def row(name: str, times, base: float) -> str:
    ms = sorted(t * 1000 for t in times)
    med = statistics.median(ms)
    p10, p90 = ms[len(ms) // 10], ms[(len(ms) * 9) // 10]
    return f"| {name} | {med:.2f} | {p10:.2f} | {p90:.2f} | {med / base:.2f} |"


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/chos_run.sh: run as root")
    tree, top = sys.argv[1], sys.argv[2]
    policy = os.path.join(top, "policy.toml")
    with open(policy, "w") as f:
        f.write(f'[site]\nrun_dir = "{top}/run"\n[environments.deb12]\npath = "{tree}"\n')
    os.chmod(policy, 0o644)
    with real_user(USER) as pw:
        env = {"PATH": "/usr/bin:/bin", "HOME": pw.pw_dir, "USER": USER, "LOGNAME": USER, "LANG": "C.UTF-8",
               "ENVSCHED_CHOS_PYTHON": VENV_PY}
        chos = [FRONT, "--policy", policy, "run", "deb12", "--", "/bin/true"]
        launcher(chos, env, pw)()                                  # Python decides once: the entry
        cache = os.path.join(pw.pw_dir, ".cache", "envsched", "run")
        if not os.listdir(cache):
            sys.exit("no run cache entry was written")
        root_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "ENVSCHED_CHOS_PYTHON": VENV_PY}
        exec_argv = [ENVSCHED_FRONT, "--policy", policy, "exec", "--user", USER, "--request", "deb12", "--",
                     "/bin/true"]
        launcher(exec_argv, root_env)()                            # Python decides once: root's entry
        cases = {
            "bare /bin/true (user)": launcher(["/bin/true"], env, pw),
            "chos run (C, warm; user)": launcher(chos, env, pw),
            "chos run (Python; user)": launcher(chos, dict(env, ENVSCHED_NO_RUN_CACHE="1"), pw),
            "ch-run (user)": launcher(["/usr/bin/ch-run", tree, "--", "/bin/true"], env, pw),
            "bwrap, the view's binds (user)": launcher(bwrap_argv(tree), env, pw),
            "envsched exec (C, warm; root)": launcher(exec_argv, root_env),
            "envsched exec (Python; root)": launcher(exec_argv, dict(root_env, ENVSCHED_NO_RUN_CACHE="1")),
            "bwrap, the view's binds (root)": launcher(bwrap_argv(tree), root_env),
        }
        times = interleaved(cases, N, WARMUP)
    base = statistics.median(times["ch-run (user)"]) * 1000
    print(f"chos run against ch-run and bwrap, one tree ({tree}), {N} interleaved rounds after {WARMUP}, "
          f"{os.cpu_count()} CPUs, {os.uname().release}")
    print()
    print("| case | median ms | p10 | p90 | × ch-run |")
    print("|---|---:|---:|---:|---:|")
    for name in cases:
        print(row(name, times[name], base))
    warm = statistics.median(times["chos run (C, warm; user)"]) * 1000
    root = statistics.median(times["envsched exec (C, warm; root)"]) * 1000
    bwrap = statistics.median(times["bwrap, the view's binds (root)"]) * 1000
    print()
    print(f"target (#13): chos run (C, warm) no slower than ch-run: {warm:.2f} ms against {base:.2f} ms: "
          f"{'met' if warm <= base else 'missed'}")
    print(f"target (#13): envsched exec (C, warm, root) no slower than bwrap: {root:.2f} ms against {bwrap:.2f} ms: "
          f"{'met' if root <= bwrap else 'missed'}")


if __name__ == "__main__":
    main()
