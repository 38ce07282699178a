"""Isolation namespaces through the real Slurm plugin (#12): with `namespaces = ["pid", "ipc",
"uts"]` every task of every step of a job on a node shares one PID namespace (the job's: slurmstepd
forks the tasks into it, plugins/slurm-spank/remote.c), its own /proc, IPC namespace and host name;
scancel leaves nothing of the job running, not even a process that left its parent."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from spanksite import policy_text
from testlib import namespace_inits

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("views_released")]

REPORT = ("echo task=$SLURM_PROCID pid=$$ pidns=$(readlink /proc/self/ns/pid) ipcns=$(readlink /proc/self/ns/ipc) "
          "host=$(hostname) procs=$(ls /proc | grep -c '^[0-9]')")


@pytest.fixture(scope="module")
def isolated(site):
    original = site.policy.read_text()
    site.policy.write_text(policy_text(site.cluster.dir, site.run_dir, site.trees, extra_environments=f"""
[environments.iso]
path = "{site.trees['deb12']}"
namespaces = ["pid", "ipc", "uts"]
hostname = "isolated-job"
"""))
    yield
    site.policy.write_text(original)


def _reports(text):
    out = []
    for line in text.splitlines():
        if line.startswith("task="):
            out.append(dict(field.split("=", 1) for field in line.split()))
    return out


def test_every_task_of_every_step_shares_the_jobs_namespaces(site, slurm_user, home, isolated):
    c = site.cluster
    script = f"#!/bin/sh\n{REPORT}\nsrun -N1 -n4 -O sh -c '{REPORT}'\nsrun -N1 -n2 sh -c '{REPORT}'\n"
    job = c.sbatch(script, "-N1", "-n2", "--chos=iso", "-o", f"{home}/out-%j.txt", user=slurm_user.pw_name,
                   cwd=str(home))
    state = c.wait(job, timeout=90)
    site.settle()
    out = site.output(job, home)
    assert state.state == "COMPLETED", out
    seen = _reports(out)
    assert len(seen) == 7, out                                 # the batch script, 4 + 2 tasks
    host_pidns, host_ipcns = os.readlink("/proc/self/ns/pid"), os.readlink("/proc/self/ns/ipc")
    assert {r["pidns"] for r in seen} == {seen[0]["pidns"]} and seen[0]["pidns"] != host_pidns, out
    assert {r["ipcns"] for r in seen} == {seen[0]["ipcns"]} and seen[0]["ipcns"] != host_ipcns, out
    assert {r["host"] for r in seen} == {"isolated-job"}, out
    # the job's own /proc: its init, the batch shell, srun and the step's tasks; not the node's
    assert all(int(r["procs"]) < 40 for r in seen), out
    assert all(int(r["pid"]) < 1000 for r in seen), out


def test_scancel_leaves_nothing_running(site, slurm_user, home, isolated):
    c = site.cluster
    marker = f"sleep {700 + os.getpid() % 1000}.{os.getpid() % 97}"
    # a daemon that leaves the job's process tree (setsid, its parent exits) and the job itself
    script = f"#!/bin/sh\nsrun -n1 sh -c 'setsid {marker} </dev/null >/dev/null 2>&1 &'\necho started\nsleep 600\n"
    job = c.sbatch(script, "-N1", "--chos=iso", "-o", f"{home}/out-%j.txt", user=slurm_user.pw_name, cwd=str(home))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and subprocess.run(["pgrep", "-f", marker],
                                                             stdout=subprocess.DEVNULL).returncode != 0:
            time.sleep(0.1)
        assert subprocess.run(["pgrep", "-f", marker], stdout=subprocess.DEVNULL).returncode == 0, \
            f"the job's daemon never started: {c.job(job).state}"
        assert len(namespace_inits(str(c.dir))) == 1          # the job's init, while the job runs
        assert c.run(["scancel", job]).returncode == 0
        c.wait(job, timeout=60)
        site.settle()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and subprocess.run(["pgrep", "-f", marker],
                                                             stdout=subprocess.DEVNULL).returncode == 0:
            time.sleep(0.1)
        left = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout
        assert not left, f"left running after scancel: {left}"
    finally:
        subprocess.run(["pkill", "-f", marker])               # only this test's unique command line


def test_a_dead_init_refuses_the_next_step_in_one_line(site, slurm_user, home, isolated):
    """The init of the second node's namespace killed between two steps (the batch script on the
    first node lives on): the next step refuses there in one line, never runs outside it."""
    c = site.cluster
    script = ("#!/bin/sh\nsrun -N2 -n2 true\n"
              f"while [ ! -e {home}/init-killed ]; do sleep 0.1; done\n"
              "srun -N2 -n2 sh -c 'echo second-step-ran-on-$SLURM_NODEID'\necho rc=$?\n")
    job = c.sbatch(script, "-N2", "--chos=iso", "-o", f"{home}/out-%j.txt", user=slurm_user.pw_name, cwd=str(home))
    try:
        deadline = time.monotonic() + 60
        pin = site.run_dir / f"slurm-{job}-1"
        while time.monotonic() < deadline and not (pin / "init").exists():
            time.sleep(0.1)
        init = int((pin / "init").read_text().split()[0])
        os.kill(init, 9)
        (home / "init-killed").write_text("")
        c.wait(job, timeout=60)
        out = site.output(job, home)
        assert "second-step-ran-on-1" not in out, out
        assert ("envsched: the job's process namespace on this node has ended (its init is gone); the job does "
                "not run here") in out, out
    finally:
        (home / "init-killed").unlink(missing_ok=True)
