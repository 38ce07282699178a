"""Isolation namespaces through the real Slurm plugin (#12): with `namespaces = ["pid", "ipc",
"uts"]` every task of every step of a job on a node shares one PID namespace (the job's: slurmstepd
forks the tasks into it, plugins/slurm-spank/remote.c), its own /proc, IPC namespace and host name;
scancel leaves nothing of the job running, not even a process that left its parent.

The two-node case runs on the virtual cluster (`vsite`, `visolated`, #15): each node its own PID
namespace, run_dir and pins, so the second node's job init is found, and killed, inside that node."""
from __future__ import annotations

import os
import subprocess
import time
from contextlib import contextmanager

import pytest

from spanksite import policy_text
from testlib import namespace_inits

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("views_released")]

REPORT = ("echo task=$SLURM_PROCID pid=$$ pidns=$(readlink /proc/self/ns/pid) ipcns=$(readlink /proc/self/ns/ipc) "
          "host=$(hostname) procs=$(ls /proc | grep -c '^[0-9]')")


@contextmanager
def _isolating(site):
    original = site.policy.read_text()
    site.policy.write_text(policy_text(site.cluster.dir, site.run_dir, site.trees, extra_environments=f"""
[environments.iso]
path = "{site.trees['deb12']}"
namespaces = ["pid", "ipc", "uts"]
hostname = "isolated-job"
"""))
    try:
        yield
    finally:
        site.policy.write_text(original)


@pytest.fixture(scope="module")
def isolated(site):
    with _isolating(site):
        yield


@pytest.fixture(scope="module")
def visolated(vsite):
    """The same on the virtual cluster."""
    with _isolating(vsite):
        yield


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


# a task's node: SLURMD_NODENAME, its node id, the host name it sees (the job's own: isolated-job) and its
# network namespace (the node's: the environment isolates pid, ipc and uts only), its PID namespace
WHERE = ("echo where=$SLURMD_NODENAME nodeid=$SLURM_NODEID host=$(hostname) netns=$(readlink /proc/self/ns/net) "
         "pidns=$(readlink /proc/self/ns/pid)")


def _where(text):
    return [dict(field.split("=", 1) for field in line.split()) for line in text.splitlines()
            if line.startswith("where=")]


def _node_init(vsite, node, pin):
    """The job's init on NODE from the pin's init record ("PID START NAMES"): its PID in NODE's own PID
    namespace, checked there (the node's /proc, the same process start time) -> (PID, its pid namespace)."""
    pid, start, _names = (pin / "init").read_text().split()
    proc = vsite.vnet.root(node) / "proc" / pid                 # NODE's /proc (its own PID namespace)
    stat = (proc / "stat").read_text()
    assert stat.rsplit(") ", 1)[1].split()[19] == start, (node, pid, start, stat)
    status = (proc / "status").read_text()
    nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
    assert nspid == [pid, "1"], (node, pid, nspid)             # pid 1 of a namespace below NODE's
    return int(pid), os.readlink(proc / "ns" / "pid")


def _dead(proc):
    """The process at PROC (a /proc/PID) is gone, or a zombie not yet reaped."""
    try:
        return (proc / "stat").read_text().rsplit(") ", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_a_dead_init_refuses_the_next_step_in_one_line(vsite, slurm_user, home, visolated):
    """The init of the second node's namespace killed between two steps (the batch script on the
    first node lives on): the next step refuses there in one line, never runs outside it. On the
    virtual cluster: the second node's pin and init are in its own run_dir and PID namespace, and
    the init is killed inside that node."""
    c, net = vsite.cluster, vsite.vnet
    script = (f"#!/bin/sh\nsrun -N2 -n2 sh -c '{WHERE}'\n"
              f"while [ ! -e {home}/init-killed ]; do sleep 0.1; done\n"
              "srun -N2 -n2 sh -c 'echo second-step-ran-on-$SLURM_NODEID; " + WHERE + "'\necho rc=$?\n")
    job = c.sbatch(script, "-N2", "--chos=iso", "-o", f"{home}/out-%j.txt", user=slurm_user.pw_name, cwd=str(home))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and c.job(job).state == "PENDING":
            time.sleep(0.1)
        nodes = c.run(["scontrol", "show", "hostnames", c.job(job).node_list]).stdout.split()
        assert len(nodes) == 2 and set(nodes) <= set(c.nodes), nodes
        first, second = nodes                                   # node ids 0 and 1 (the batch script: 0)
        pins = {node: vsite.node_run_dir(node) / f"slurm-{job}-{i}" for i, node in enumerate(nodes)}
        while time.monotonic() < deadline and not all((pin / "init").exists() for pin in pins.values()):
            time.sleep(0.1)
        # each node's pin in its own run_dir only
        for node in c.nodes:
            for i in range(2):
                there = (vsite.node_run_dir(node) / f"slurm-{job}-{i}").exists()
                assert there == (node == nodes[i]), (node, i)
        inits = {node: _node_init(vsite, node, pin) for node, pin in pins.items()}
        # the first step's tasks: one per node, each in its node's network and its job's PID namespace
        out = vsite.output(job, home)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_where(out)) < 2:
            time.sleep(0.1)
            out = vsite.output(job, home)
        first_step = sorted(_where(out), key=lambda r: r["nodeid"])
        assert [(r["where"], r["nodeid"], r["host"]) for r in first_step] == \
            [(first, "0", "isolated-job"), (second, "1", "isolated-job")], out
        for r in first_step:
            node = r["where"]
            assert r["netns"] == os.readlink(f"/proc/{net.pid(node)}/ns/net"), (node, out)
            assert r["pidns"] == inits[node][1], (node, out)
        # the second node's init killed inside that node (its PID is that node's)
        init = inits[second][0]
        r = net.run(second, ["kill", "-9", str(init)])
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _dead(net.root(second) / "proc" / str(init)):
            time.sleep(0.05)
        assert _dead(net.root(second) / "proc" / str(init)), f"init {init} on {second} still running"
        (home / "init-killed").write_text("")
        state = c.wait(job, timeout=60)
        vsite.settle()
        out = vsite.output(job, home)
        assert "second-step-ran-on-1" not in out, out
        assert ("envsched: the job's process namespace on this node has ended (its init is gone); the job does "
                "not run here") in out, out
        # in one line, from the second node (its task 1 exits with the refusal's code)
        assert out.count("envsched: ") == 1, out
        assert f"srun: error: {second}: task 1: Exited with exit code " in out, out
        # whatever of the second step ran, ran on the first node in its job's namespaces
        second_step = _where(out)[2:]
        assert all((r["where"], r["nodeid"], r["host"], r["pidns"]) == (first, "0", "isolated-job", inits[first][1])
                   for r in second_step), out
        assert state.state in ("COMPLETED", "FAILED"), state.fields
        for node in c.nodes:
            assert vsite.node_leftovers(node) == [], node
    finally:
        (home / "init-killed").unlink(missing_ok=True)
