"""A submission's cost on Torque and OpenPBS (#13): envsched's submit-time check before and after
the submit-time cache, through the same pieces the contract tests install.

Torque: the submit filter as qsub runs it (as the submitting user, qsub's arguments, the job
script on stdin, its stdout read to the end), `-v CHOS=deb12`:
  cat            a filter that does nothing (`/bin/cat`): what any filter costs qsub
  python         the filter as rendered before #13's cache: `python3 -I envsched_torque.py
                 submit-filter` (the resolver in-process, every submission)
  c-warm         the filter as rendered now (`torque-pelog submit-filter`, C), its answer in
                 ~/.cache/envsched/submit: no Python
  c-miss         the same after a policy edit before every submission: C, then the Python filter
                 (which keeps the answer again): the first submission after a change
OpenPBS: the queuejob hook on the stand-in `pbs` module (tests/torque/pbs_standin), `-l chos=deb12`:
  per process    one pbs_python per hook run (the driver), as a hook process would: "accept" a hook
                 that only accepts, "before" the hook as it was before #13's cache (git show of
                 it), "warm" the hook now, its answer kept in root's run_dir/.submit
  in-process     the hook run again and again in one interpreter, as pbs_server runs queuejob hooks
                 (envsched's modules stay imported after the first run): "before" and "warm" likewise
Interleaved rounds (testlib.interleaved), medians [p10 p90] and ratios. Root.
  bench/submit.sh [TREE]        (N rounds, default 30)
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "src"))
from testlib import interleaved, real_user  # noqa: E402

N = int(os.environ.get("N", "30"))
ENVSCHED = os.path.join(REPO, ".venv", "bin", "envsched")
SRC = os.path.join(REPO, "src")
STANDIN = os.path.join(REPO, "tests", "torque", "pbs_standin")
USER = "envsched-bsubmit"
SCRIPT = b"#!/bin/sh\n#PBS -N bench\necho hello\n"
SETTLE = 0.15                   # policy/load.py: a policy changed this recently is read again once settled
BEFORE = "bcb8533~1"            # the commit before the submit-time cache of Torque and OpenPBS


def root_file(path: str, text: str, mode: int) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chown(path, 0, 0)
    os.chmod(path, mode)


def git_show(path: str) -> str:
    return subprocess.run(["git", "-C", REPO, "show", f"{BEFORE}:{path}"], check=True, stdout=subprocess.PIPE,
                          text=True).stdout


def as_user(pw, argv, stdin_path: str, env) -> float:
    """Wall seconds of argv as the user (groups, gid, uid), stdin from a file, stdout read to its end."""
    r, w = os.pipe()
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            fd = os.open(stdin_path, os.O_RDONLY)
            os.dup2(fd, 0)
            os.dup2(w, 1)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.initgroups(pw.pw_name, pw.pw_gid)
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            os.chdir(pw.pw_dir)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    os.close(w)
    with open(r, "rb") as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    wall = time.perf_counter() - t
    if status != 0 or b"echo hello" not in out:
        raise SystemExit(f"failed ({status}): {' '.join(argv)}")
    return wall


def row(name: str, times, base: float) -> str:
    ms = [t * 1000 for t in times]
    q = statistics.quantiles(ms, n=10)
    med = statistics.median(ms)
    return f"| {name} | {med:.2f} ms | {q[0]:.2f}-{q[-1]:.2f} | {med / base:.2f} |"


IN_PROCESS = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import pbs
spec = json.load(sys.stdin)
hooks = {k: compile(open(p).read(), p, "exec") for k, p in spec["hooks"].items()}
times = {k: [] for k in hooks}
order = [k for _ in range(spec["rounds"] + 1) for k in sorted(hooks)]
for i, k in enumerate(order):
    pbs._set_event(pbs.QUEUEJOB, spec["requestor"], pbs.job(**spec["job"]), config=spec["config"][k])
    t = time.perf_counter()
    try:
        exec(hooks[k], {"__name__": "__main__"})
    except SystemExit:
        pass
    dt = time.perf_counter() - t
    assert not pbs._result()["rejected"], pbs._result()
    if i >= len(hooks):
        times[k].append(dt)
json.dump(times, sys.stdout)
"""


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/submit.sh: run as root")
    tree = sys.argv[1]
    top = tempfile.mkdtemp(prefix="envsched-bench-submit-", dir="/run")
    os.chmod(top, 0o755)
    try:
        with real_user(USER) as pw:
            run(top, tree, pw)
            shutil.rmtree(os.path.join(pw.pw_dir, ".cache"), ignore_errors=True)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run(top: str, tree: str, pw) -> None:
    policy = os.path.join(top, "policy.toml")
    cold = os.path.join(top, "policy-cold.toml")
    body = f'[site]\nrun_dir = "{top}/run"\n[environments.deb12]\npath = "{tree}"\n'
    root_file(policy, body, 0o644)
    root_file(cold, body, 0o644)
    libexec = os.path.join(top, "libexec")
    os.mkdir(libexec, 0o755)
    subprocess.run(["make", "-s", "-C", os.path.join(REPO, "plugins/torque/torque")], check=True)
    subprocess.run(["make", "-s", "-C", os.path.join(REPO, "plugins/torque/openpbs/joiner")], check=True)
    for name in ("torque-pelog", "envsched_torque.py"):
        shutil.copy(os.path.join(REPO, "plugins/torque/torque", name), os.path.join(libexec, name))
        os.chmod(os.path.join(libexec, name), 0o755)
    root_file(os.path.join(libexec, "envsched_torque_before.py"), git_show("plugins/torque/torque/envsched_torque.py"),
              0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name}
    script = os.path.join(top, "job.sh")
    root_file(script, SCRIPT.decode(), 0o644)
    filt = [os.path.join(libexec, "torque-pelog"), "submit-filter", "/usr/bin/python3", "-I",
            os.path.join(libexec, "envsched_torque.py"), "submit-filter", "--policy", policy, "--src", SRC, "--",
            "-v", "CHOS=deb12"]
    filt_cold = [cold if a == policy else a for a in filt]
    before = ["/usr/bin/python3", "-I", os.path.join(libexec, "envsched_torque_before.py"), "submit-filter",
              "--policy", policy, "--src", SRC, "--", "-v", "CHOS=deb12"]

    def miss() -> float:
        with open(cold, "a") as f:
            f.write("#\n")
        time.sleep(SETTLE)
        return as_user(pw, filt_cold, script, env)

    as_user(pw, filt, script, env)                          # the answer kept
    torque = interleaved({"cat": lambda: as_user(pw, ["/bin/cat"], script, env),
                          "python": lambda: as_user(pw, before, script, env),
                          "c-warm": lambda: as_user(pw, filt, script, env),
                          "c-miss": miss}, N)
    base = statistics.median(torque["python"]) * 1000
    print(f"Torque submit filter, `-v CHOS=deb12`, {N} rounds (as the user; × the Python filter)\n")
    print("| filter | median | p10-p90 | × python |\n| --- | --- | --- | --- |")
    for k, name in (("cat", "/bin/cat (any filter)"), ("python", "Python filter (before)"),
                    ("c-warm", "C filter, warm (no Python)"), ("c-miss", "C filter, miss (then Python)")):
        print(row(name, torque[k], base))

    # ------------------------------------------------------------------ OpenPBS
    pbs_dir = os.path.join(top, "openpbs")
    os.mkdir(pbs_dir, 0o755)
    joiner_dir = os.path.join(REPO, "plugins/torque/openpbs/joiner")
    shutil.copy(os.path.join(joiner_dir, "envsched-pbs-prepare"), os.path.join(pbs_dir, "pbs-prepare"))
    os.chmod(os.path.join(pbs_dir, "pbs-prepare"), 0o755)
    root_file(os.path.join(pbs_dir, "pbs-prepare.conf"), f"policy={policy}\nresolver={ENVSCHED}\nrun_dir={top}/run\n",
              0o644)
    hooks = {"accept": os.path.join(pbs_dir, "queuejob_accept.py"),
             "before": os.path.join(pbs_dir, "queuejob_before.py"),
             "warm": os.path.join(REPO, "plugins/torque/openpbs/envsched_queuejob.py")}
    root_file(hooks["accept"], "import pbs\npbs.event().accept()\n", 0o644)
    root_file(hooks["before"], git_show("plugins/torque/openpbs/envsched_queuejob.py"), 0o644)
    conf = os.path.join(pbs_dir, "envsched.json")
    root_file(conf, json.dumps({"policy": policy, "src": SRC, "joiner": os.path.join(pbs_dir, "pbs-join")}), 0o644)
    job = {"id": "", "euser": pw.pw_name, "Job_Owner": f"{pw.pw_name}@login", "queue": "workq",
           "Resource_List": {"chos": "deb12"}, "Variable_List": {}}
    driver = os.path.join(STANDIN, "driver.py")

    def hook(which: str) -> float:
        spec = {"hook": hooks[which], "type": "queuejob", "config": conf, "job": job, "requestor": pw.pw_name}
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/python3", "-I", driver], input=json.dumps(spec), stdout=subprocess.PIPE,
                           text=True, cwd="/", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
        wall = time.perf_counter() - t
        if p.returncode != 0 or json.loads(p.stdout)["rejected"]:
            raise SystemExit(f"hook {which}: {p.stdout}")
        return wall

    hook("warm")                                            # the answer kept in run_dir/.submit
    per_process = interleaved({k: (lambda k=k: hook(k)) for k in hooks}, N)
    spec = {"hooks": hooks, "config": {k: conf for k in hooks}, "job": job, "requestor": pw.pw_name,
            "rounds": N}
    p = subprocess.run(["/usr/bin/python3", "-I", "-c", IN_PROCESS, STANDIN], input=json.dumps(spec),
                       stdout=subprocess.PIPE, text=True, check=True, cwd="/",
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    in_process = json.loads(p.stdout)
    print(f"\nOpenPBS queuejob hook, `-l chos=deb12`, {N} rounds (root; × before)\n")
    print("| hook | median | p10-p90 | × before |\n| --- | --- | --- | --- |")
    for label, times in (("one process per run", per_process), ("in one interpreter (pbs_server)", in_process)):
        base = statistics.median(times["before"]) * 1000
        print(row(f"{label}: a hook that only accepts", times["accept"], base))
        print(row(f"{label}: before", times["before"], base))
        print(row(f"{label}: warm (pbs-prepare)", times["warm"], base))


if __name__ == "__main__":
    main()
