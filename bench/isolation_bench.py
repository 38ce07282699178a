"""Isolation namespaces (#12): what `namespaces = ["pid", "ipc", "uts"]` adds, against the same
environment without, interleaved (plain, isolated, plain, ...), medians with p10/p90.

Per job per node: a pin made and released as the shims do (PinStore.prepare: build the view,
pin it; with the namespaces also unshare ipc/uts, the PID namespace and its init with the job's
/proc, three more binds, the init out of the job's cgroups; release: kill the init and wait for it).
Per task (bench/isolation_task.c, C like the shims): joining the pin's namespaces in a fresh child
(the Slurm plugin's task_init_privileged; the starters' es_join_isolation), and the fork + exit +
wait of one more process, which the Grid Engine, Torque and OpenPBS starters add (the job is their
child in the PID namespace; on Slurm the tasks are slurmstepd's own children forked there, nothing
is added). A starter runs once per job (per batch job, per qrsh or PE task), so its cost counts
against the per-job budget. Root only.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from envsched.identity import UserInfo  # noqa: E402
from envsched.pin import PinStore  # noqa: E402
from envsched.plan import build_plan  # noqa: E402
from envsched.policy.load import parse_policy_text  # noqa: E402

N = int(os.environ.get("N", "40"))
ROUNDS = int(os.environ.get("ROUNDS", "400"))
ROOT = UserInfo(name="root", uid=0, gid=0, gids=(0,), groups=("root",), home="/root", shell="/bin/sh")
HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/isolation.sh: run as root")
    tree = sys.argv[1]
    top = tempfile.mkdtemp(prefix="envsched-bench-iso-", dir="/run")
    try:
        run_dir = os.path.join(top, "run")
        policy = parse_policy_text(f'[site]\nrun_dir = "{run_dir}"\n[environments.plain]\npath = "{tree}"\n'
                                   f'[environments.iso]\npath = "{tree}"\nnamespaces = ["pid", "ipc", "uts"]\n',
                                   "bench")
        plans = {name: build_plan(policy, name, policy.get(name), ROOT, "/") for name in ("plain", "iso")}
        store = PinStore(run_dir)
        prepare = {name: [] for name in plans}
        release = {name: [] for name in plans}
        for i in range(N):
            for name in (("plain", "iso") if i % 2 else ("iso", "plain")):
                t = time.perf_counter()
                store.prepare(f"bench-{name}", plans[name], ROOT, os.getpid())
                t1 = time.perf_counter()
                store.release(f"bench-{name}")
                prepare[name].append(t1 - t)
                release[name].append(time.perf_counter() - t1)
        task = _task(store, plans, top)
        print(f"isolation namespaces pid+ipc+uts vs none; N={N} jobs, {ROUNDS} tasks each; {os.uname().release}")
        for what, data in (("prepare", prepare), ("release", release)):
            for name in plans:
                print(f"  {what:8s} {name:5s} {_stats(data[name], 1e3, 'ms')}")
        job = sum(statistics.median(d["iso"]) - statistics.median(d["plain"]) for d in (prepare, release))
        print(f"  added per job per node (prepare + release): {job * 1e3:.2f} ms (target <= 2 ms): "
              f"{'ok' if job <= 2e-3 else 'MISSED'}")
        for what in ("slurm", "starter"):
            for name in plans:
                med, p10, p90 = task[name][what]
                print(f"  task {what:7s} {name:5s} median {med:6.1f} us (p10 {p10:.1f}, p90 {p90:.1f})")
        slurm = task["iso"]["slurm"][0] - task["plain"]["slurm"][0]
        starter = task["iso"]["starter"][0] - task["plain"]["starter"][0]
        fork = task["iso"]["fork"][0]
        print(f"  added per task, Slurm (ipc and uts through the inherited pidfd; no process added): {slurm:.1f} us "
              f"(target <= 20 us): {'ok' if slurm <= 20 else 'MISSED'}")
        print(f"  added per job, Grid Engine/Torque/OpenPBS starters (their task is the job: the join "
              f"{starter:.1f} us + one process forked, exited, waited {fork:.1f} us): {starter + fork:.1f} us")
    finally:
        for key in ("bench-plain", "bench-iso"):
            PinStore(os.path.join(top, "run")).release(key)
        shutil.rmtree(top, ignore_errors=True)


def _task(store: PinStore, plans, top: str):
    exe = os.path.join(top, "isolation_task")
    common = os.path.join(HERE, "..", "plugins", "common")
    subprocess.run(["cc", "-O2", "-D_GNU_SOURCE", "-I", common, "-o", exe, os.path.join(HERE, "isolation_task.c"),
                    os.path.join(common, "es_join.c")], check=True)
    out = {}
    for name in plans:
        store.prepare(f"bench-{name}", plans[name], ROOT, os.getpid())
    try:
        runs = {name: {"slurm": [], "starter": [], "fork": []} for name in plans}
        for i in range(4):                               # interleaved batches
            for name in (("plain", "iso") if i % 2 else ("iso", "plain")):
                r = subprocess.run([exe, store.path(f"bench-{name}"), str(ROUNDS // 4)], capture_output=True,
                                   text=True, check=True)
                for line in r.stdout.splitlines():
                    what, med, p10, p90 = line.split()
                    runs[name][what].append((float(med), float(p10), float(p90)))
        for name in plans:
            out[name] = {what: tuple(statistics.median(v[k] for v in vals) for k in range(3))
                         for what, vals in runs[name].items()}
    finally:
        for name in plans:
            store.release(f"bench-{name}")
    return out


def _stats(values, scale: float, unit: str) -> str:
    q = statistics.quantiles(values, n=10)
    return f"median {statistics.median(values) * scale:7.2f} {unit} (p10 {q[0] * scale:.2f}, p90 {q[-1] * scale:.2f})"


if __name__ == "__main__":
    main()
