"""The resolver's cold path (#13): what one `envsched` run costs a job, against a bare interpreter.

Every job without a cached decision runs the resolver three times (`validate` at submit, `prepare`
in slurmstepd or the prolog, `release` in the epilog). Measured here as the shims run it (the
`envsched` entry point, as installed in the venv: its interpreter without -I -S, in the shims'
clean environment, plugins/common/es_run.c) and as it would run with `python3 -I -S`, interleaved
rounds, medians [p10 p90], and the peak RSS of the child (wait4's ru_maxrss). Targets (#13):
≤ 15 ms over a bare interpreter start, peak RSS ≤ 30 MB. Root (prepare pins a view).

The rows "policy changed" run against a second policy file whose text is changed before each of
their runs (a comment): the first run after a policy change, which parses the policy (the others
find it parsed already, policy/load.py's POLICY_CACHE, which is root's). "as the user": `validate`
as the shims run it at submission, as the submitting user (nobody here): it parses every time.
"as es_prepare.c" and "as the epilog": the options the C shims give (plugins/common/es_prepare.c,
plugins/slurm-spank/epilog.c): --gc, a shared view (built by the first round, joined by the
others), the decision cache written; the epilog's release --with-steps.
  bench/cold.sh [TREE]
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src")
VENV = os.path.join(HERE, "..", ".venv", "bin")
N = int(os.environ.get("N", "20"))
# policy/load.py reads a policy changed less than SETTLE_NS ago again once it has settled: the
# "policy changed" rows change it this long before the run (what the cold path costs, not the wait)
SETTLE = 0.15
NOBODY = 65534                  # the submitting user: the shims' submit-time validate runs as the user
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}    # es_run.c's clean_env


def run(argv, uid=None):
    """(wall seconds, peak RSS in KiB) of one run (as `uid` if given); it must succeed."""
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        try:
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            os.execve(argv[0], argv, CLEAN_ENV)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(argv)}")
    return wall, usage.ru_maxrss


def cleanup(top: str) -> None:
    """Detach every mount below `top` (the pins' and the shared view's namespace binds: run_dir is
    no mount point of its own, so `umount -R` of it detaches nothing), then remove it."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    for point in sorted((p for p in points if p.startswith(top + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)
    shutil.rmtree(top, ignore_errors=True)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/cold.sh: run as root")
    tree = sys.argv[1]
    top = tempfile.mkdtemp(prefix="envsched-bench-cold-", dir="/run")
    os.chmod(top, 0o755)
    policy = os.path.join(top, "policy.toml")
    text = f'[site]\nrun_dir = "{top}/run"\n[environments.deb12]\npath = "{tree}"\n'
    with open(policy, "w") as f:
        f.write(text)
    os.chmod(policy, 0o644)
    changed = os.path.join(top, "changed.toml")
    changes = iter(range(1 << 30))

    def change() -> None:
        """changed.toml, its text new (a comment): the next run parses it"""
        with open(changed, "w") as f:
            f.write(f"{text}# change {next(changes)}\n")
        os.chmod(changed, 0o644)
    entry = [os.path.join(VENV, "envsched")]
    isolated = ["/usr/bin/python3", "-I", "-S", "-c",
                f"import sys; sys.path.insert(0, {SRC!r}); from envsched.cli.envsched import main; sys.exit(main())"]
    job = ["--user", "nobody", "--no-user-file", "--request", "deb12"]
    cases = {
        "bare python3 -I -S": lambda i: ["/usr/bin/python3", "-I", "-S", "-c", "pass"],
        "validate (entry point)": lambda i: entry + ["--policy", policy, "validate", *job],
        "prepare (entry point)": lambda i: entry + ["--policy", policy, "prepare", *job, "--key", f"c{i}",
                                                    "--owner-pid", str(os.getpid()), "--format", "shim"],
        "release (entry point)": lambda i: entry + ["--policy", policy, "release", "--key", f"c{i}"],
        "validate (-I -S)": lambda i: isolated + ["--policy", policy, "validate", *job],
        "prepare (-I -S)": lambda i: isolated + ["--policy", policy, "prepare", *job, "--key", f"i{i}",
                                                 "--owner-pid", str(os.getpid()), "--format", "shim"],
        "release (-I -S)": lambda i: isolated + ["--policy", policy, "release", "--key", f"i{i}"],
        "prepare (-I -S, as es_prepare.c)": lambda i: isolated + [
            "--policy", policy, "prepare", "--format", "shim", "--reuse", "--record-local", "--gc", "--key",
            f"slurm-{i}", "--user", "65534", "--job", str(i), "--owner-pid", str(os.getpid()), "--shared-view",
            "--decision-cache", "--no-user-file", "--chos-var=", f"--inputs=u65534 r=deb12 {i}", "--request=deb12"],
        "release (-I -S, as the epilog)": lambda i: isolated + ["--policy", policy, "release", "--key", f"slurm-{i}",
                                                                "--with-steps", "--quiet"],
        "validate (-I -S, as the user)": lambda i: isolated + ["--policy", policy, "validate", *job],
        "validate (-I -S, policy changed)": lambda i: isolated + ["--policy", changed, "validate", *job],
        "prepare (-I -S, policy changed)": lambda i: isolated + ["--policy", changed, "prepare", *job, "--key",
                                                                 f"x{i}", "--owner-pid", str(os.getpid()),
                                                                 "--format", "shim"],
        "release (-I -S, policy changed)": lambda i: isolated + ["--policy", changed, "release", "--key", f"x{i}"],
    }
    times = {name: [] for name in cases}
    rss = {name: [] for name in cases}
    try:
        for i in range(N):
            for name, argv in cases.items():          # prepare before its release, every round
                if "policy changed" in name:
                    change()
                    time.sleep(SETTLE)                # a run right after an edit waits for it to settle
                wall, peak = run(argv(i), NOBODY if "as the user" in name else None)
                times[name].append(wall)
                rss[name].append(peak)
    finally:
        cleanup(top)
    bare = statistics.median(times["bare python3 -I -S"])
    print(f"the resolver's cold path, {N} interleaved rounds, {os.uname().release}")
    for name in cases:
        q = statistics.quantiles(times[name], n=10)
        med = statistics.median(times[name])
        over = "" if name.startswith("bare") else f"  over bare {(med - bare) * 1e3:6.1f} ms " \
            f"({'ok' if med - bare <= 0.015 else 'target 15 ms MISSED'})"
        print(f"  {name:33s} {med * 1e3:6.1f} ms [{q[0] * 1e3:.1f} {q[-1] * 1e3:.1f}]  peak RSS "
              f"{max(rss[name]) / 1024:5.1f} MB{over}")


if __name__ == "__main__":
    main()
