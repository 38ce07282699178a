"""The envsched plugin on the virtual multi-node cluster (#15, fixture `vsite`, conftest.py): four Slurm
nodes, each slurmd in its own network, UTS, mount and PID namespace with its own hostname, address
and /run (tests/cluster/vnet/vnet.sh), so that each node has its own run_dir, as on real hardware.

  * `srun -N4` across the four nodes: every task on its own node (its own hostname), in the environment
    asked for; a batch job's steps on every node of its allocation too.
  * A job's pin and view exist on its node only: the other nodes' run_dirs and mount tables have
    nothing of it (read inside each node: /proc/INIT/root/run/..., /proc/INIT/mountinfo).
  * Node failure: one node's namespaces are killed under a running four-node job (the kernel kills
    slurmd, slurmstepd, the job's tasks and views there at once); slurmctld notices (SlurmdTimeout),
    the job ends NODE_FAIL, the surviving nodes' epilogs release their views and pins, `envsched gc`
    finds nothing more, and nothing is left on them; the failed node reboots (a fresh node of the
    same name and address, a new slurmd) and the next job runs on all four nodes again.

Run them alone:  ENVSCHED_TEST_USER_SUFFIX=t1 .venv/bin/python -m pytest tests/slurm/test_spank_multinode.py
"""
from __future__ import annotations

import time

import pytest

import installed
from testlib import mount_table, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("views_released")]

ROW = 'echo "ROW $SLURMD_NODENAME $(hostname) $SLURM_PROCID CHOS=$CHOS $(head -1 /etc/os-release)"'


def _rows(text):
    """'ROW node hostname procid CHOS=x PRETTY_NAME="..."' lines -> [(node, hostname, procid, chos, pretty)]."""
    out = []
    for line in text.splitlines():
        if line.startswith("ROW "):
            _, node, host, procid, chos, pretty = line.split(" ", 5)
            out.append((node, host, int(procid), chos.split("=", 1)[1], pretty))
    return out


def _wrong(rows, env, pretty):
    """Rows not in `env` (CHOS and /etc/os-release), or whose hostname is not their node's."""
    return [r for r in rows if r[3] != env or r[4] != f'PRETTY_NAME="{pretty}"' or r[0] != r[1]]


def _wait(what, cond, timeout=60.0, every=0.2):
    return wait_for(cond, lambda: f"timed out ({timeout}s) waiting for {what}", timeout, every)


def _gc(vsite, node):
    """`envsched gc` inside NODE (its own run_dir); its output."""
    r = vsite.vnet.run(node, [str(installed.envsched()), "--policy", str(vsite.policy), "gc"], timeout=60)
    assert r.returncode == 0, (node, r.stdout, r.stderr)
    return r.stdout


def test_the_nodes_are_four_hosts(vcluster):
    """Each node sees its own name, address and /run; the host's /run is not theirs."""
    net = vcluster.vnet
    for node in vcluster.nodes:
        r = net.run(node, ["sh", "-c", "hostname; ip -4 -o addr show eth0"])
        assert r.returncode == 0, r.stderr
        host, addr = r.stdout.splitlines()
        assert host == node and f" {net.address(node)}/24 " in addr, r.stdout
        assert "/run" in net.mounts(node)
    r = vcluster.run(["sinfo", "-h", "-N", "-p", "debug", "-o", "%N %t"])
    assert sorted(r.stdout.split("\n")[:-1]) == [f"{n} idle" for n in vcluster.nodes], r.stdout


def test_srun_N4_every_task_on_its_node_in_its_environment(vsite, slurm_user, home):
    r = vsite.cluster.srun("-N4", "-n4", "--chos=deb13", "sh", "-c", ROW, user=slurm_user.pw_name, timeout=90)
    assert r.returncode == 0, r.stderr
    rows = _rows(r.stdout)
    assert sorted(row[0] for row in rows) == vsite.cluster.nodes, r.stdout
    assert sorted(row[2] for row in rows) == [0, 1, 2, 3]
    assert not _wrong(rows, "deb13", "Debian 13 (mini)"), rows


def test_batch_job_on_four_nodes_each_node_its_own_view(vsite, slurm_user, home):
    """A -N4 batch job with the site default: the batch script and a step on all four nodes; each
    node prepared (and released) its own view: the admin log has one key per node."""
    c = vsite.cluster
    before = mount_table()
    job = c.sbatch(f"#!/bin/sh\n{ROW}\nsrun -N4 -n4 sh -c '{ROW}'\n", "-N4", "-o", f"{home}/out-%j.txt",
                   user=slurm_user.pw_name, cwd=str(home))
    state = c.wait(job, timeout=90)
    vsite.settle()
    out = vsite.output(job, home)
    assert state.state == "COMPLETED", out
    rows = _rows(out)
    assert len(rows) == 5 and {row[0] for row in rows} == set(c.nodes), out
    assert rows[0][0] == "vnode1" and rows[0][2] == 0                  # the batch script, on the first node
    assert not _wrong(rows, "deb12", "Debian 12 (mini)"), rows
    log = (c.dir / "envsched.log").read_text().splitlines()
    released = sorted(line.split("key=")[1].split()[0] for line in log
                      if "event=released" in line and f"key=slurm-{job}-" in line)
    assert released == [f"slurm-{job}-{i}" for i in range(4)], released
    for node in c.nodes:
        assert vsite.node_leftovers(node) == [], node
    assert mount_table() == before


def test_a_pin_is_on_its_node_only(vsite, slurm_user, home):
    c = vsite.cluster
    host_before = mount_table()
    job = c.sbatch("#!/bin/sh\nsleep 300\n", "-w", "vnode2", "--chos=deb13", "-o", f"{home}/out-%j.txt",
                   user=slurm_user.pw_name, cwd=str(home))
    try:
        _wait("the job's pin on vnode2", lambda: vsite.node_mounts("vnode2"))
        assert vsite.record_path(job, "vnode2").exists()
        pins = vsite.node_leftovers("vnode2", processes=False)
        assert [p for p in pins if p.startswith("run_dir:") and ".jobs/" not in p], pins
        for node in ("vnode1", "vnode3", "vnode4"):
            assert vsite.node_leftovers(node, processes=False) == [], node
            assert not vsite.record_path(job, node).exists()
            # seen from inside the node too (its own /run): no run_dir entry of the job
            r = vsite.vnet.run(node, ["sh", "-c", f"ls -A {vsite.run_dir} 2>/dev/null | grep -v '^[.]' || true"])
            assert r.stdout.strip() == "", (node, r.stdout)
        assert not vsite.run_dir.exists()                               # nor on the host
        assert mount_table() == host_before                             # its mounts are all inside vnode2
    finally:
        c.run(["scancel", job])
        c.wait(job, timeout=60)
    vsite.settle()
    for node in c.nodes:
        assert vsite.node_leftovers(node) == [], node


def test_node_failure_under_a_running_job(vsite, slurm_user, home, fault_report):
    c, net = vsite.cluster, vsite.vnet
    victim = "vnode3"
    host_before = mount_table()
    try:
        _node_failure(vsite, slurm_user, home, fault_report, victim, host_before)
    finally:
        if not net.alive(victim):                 # a failed case must not leave the cluster a node short
            c.reboot(victim)


def _node_failure(vsite, slurm_user, home, fault_report, victim, host_before):
    c, net = vsite.cluster, vsite.vnet
    with fault_report.case("node failure (a node's namespaces killed under a 4-node job)", "slurm") as row:
        script = f"#!/bin/sh\nsrun -N4 -n4 sh -c '{ROW}; exec sleep 300'\n"
        job = c.sbatch(script, "-N4", "--no-requeue", "--chos=deb13", "-o", f"{home}/out-%j.txt",
                       user=slurm_user.pw_name, cwd=str(home))
        row.jobs += 1
        # every task started in its view: four rows, and each node holds its pin and job record
        _wait("four tasks", lambda: len(_rows((home / f"out-{job}.txt").read_text()
                                             if (home / f"out-{job}.txt").exists() else "")) == 4, timeout=90)
        for node in c.nodes:
            _wait(f"the view pinned on {node}", lambda node=node: vsite.node_mounts(node))
        first = _rows(vsite.output(job, home))
        row.wrong_env += len(_wrong(first, "deb13", "Debian 13 (mini)"))

        t0 = time.monotonic()
        net.kill(victim)
        row.faults["node killed"] += 1
        assert not net.alive(victim)
        state = c.wait(job, timeout=120)
        noticed = time.monotonic() - t0
        assert state.state == "NODE_FAIL", state.fields
        print(f"node failure: job {job} ended {state.state} {noticed:.1f}s after {victim} was killed")

        # the survivors: their epilogs release the views and pins; gc finds nothing more to do
        survivors = [n for n in c.nodes if n != victim]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(vsite.node_leftovers(n) for n in survivors):
            time.sleep(0.2)
        for node in survivors:
            _gc(vsite, node)
        left = {n: vsite.node_leftovers(n) for n in survivors}
        row.leftovers = sum(len(v) for v in left.values()) + (mount_table() != host_before)
        sinfo = c.run(["sinfo", "-h", "-N", "-n", victim, "-o", "%t"]).stdout.split()
        assert sinfo and sinfo[0].startswith("down"), sinfo

        # the reboot: a fresh node (same name and address, empty /run), a new slurmd; the next jobs
        c.reboot(victim)
        assert net.alive(victim) and vsite.node_leftovers(victim) == []
        r = c.srun("-N4", "-n4", "--chos=deb12", "sh", "-c", ROW, user=slurm_user.pw_name, timeout=90)
        row.jobs += 1
        assert r.returncode == 0, r.stderr
        rows = _rows(r.stdout)
        row.wrong_env += len(_wrong(rows, "deb12", "Debian 12 (mini)"))
        r2 = c.srun("-w", victim, "--chos=deb13", "sh", "-c", ROW, user=slurm_user.pw_name)
        row.jobs += 1
        assert r2.returncode == 0, r2.stderr
        rows2 = _rows(r2.stdout)
        row.wrong_env += len(_wrong(rows2, "deb13", "Debian 13 (mini)"))
        vsite.settle()
        after = {n: vsite.node_leftovers(n) for n in c.nodes}
        row.leftovers += sum(len(v) for v in after.values())

        assert sorted(r[0] for r in first) == c.nodes and not _wrong(first, "deb13", "Debian 13 (mini)"), first
        assert left == {n: [] for n in survivors}, left
        assert sorted(r[0] for r in rows) == c.nodes and not _wrong(rows, "deb12", "Debian 12 (mini)"), rows
        assert [r[0] for r in rows2] == [victim] and not _wrong(rows2, "deb13", "Debian 13 (mini)"), rows2
        assert after == {n: [] for n in c.nodes}, after
        assert mount_table() == host_before
        assert row.wrong_env == 0 and row.leftovers == 0
