"""An environment's launcher through the real Slurm plugin (#12): every task of a step and the batch
script run as launcher + their own argv, inside the view, with their argv intact. Slurm 22.05 has no
spank_prepend_task_argv: the plugin's static stub (plugins/slurm-spank/launch_stub.c, bound into the
views) does it. The launcher is a recording script (testlib.launcher_tree). The two-node cases run on
the virtual cluster (`vsite`, `vlaunching`): each node its own hostname, run_dir and view."""
from __future__ import annotations

import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from spanksite import policy_text
from testlib import cleared, launch_records, launcher_environments, launcher_tree

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("views_released")]

PAYLOAD = 'echo "PID=$$ VAR=${ENVSCHED_LAUNCH-unset}"; for a in "$@"; do echo "ARG=$a"; done; head -1 /etc/os-release'


@contextmanager
def _launching(site):
    root = site.cluster.dir
    records = Path(f"/tmp/envsched-launch-{uuid.uuid4().hex[:8]}")
    tree = launcher_tree(root / "os" / "launch", records)
    original = site.policy.read_text()
    site.policy.write_text(policy_text(root, site.run_dir, site.trees, extra_environments=launcher_environments(tree)))
    try:
        yield tree, records
    finally:
        site.policy.write_text(original)
        shutil.rmtree(records)
        shutil.rmtree(tree)


@pytest.fixture(scope="module")
def launching(site):
    with _launching(site) as v:
        yield v


@pytest.fixture(scope="module")
def vlaunching(vsite):
    """The same on the virtual cluster."""
    with _launching(vsite) as v:
        yield v


@pytest.fixture
def records(launching):
    return cleared(launching[1])


@pytest.fixture
def vrecords(vlaunching):
    return cleared(vlaunching[1])


def _tasks(stdout):
    """srun -l output: {task: [its lines]}."""
    out = {}
    for line in stdout.splitlines():
        task, _, text = line.partition(": ")
        out.setdefault(int(task), []).append(text)
    return out


def test_every_task_runs_through_the_launcher_in_the_view(vsite, slurm_user, home, vlaunching, vrecords):
    launching, records = vlaunching, vrecords
    r = vsite.cluster.srun("-N2", "-n4", "-l", "--chos=mck", "/bin/sh", "-c",
                           'echo "NODE=$SLURMD_NODENAME $(hostname)"; ' + PAYLOAD, "sh", "a b", "", "--x=1",
                           user=slurm_user.pw_name, cwd=str(home))
    assert r.returncode == 0, (r.stdout, r.stderr)
    recs = {rec["pid"]: rec for rec in launch_records(records)}
    tasks = _tasks(r.stdout)
    assert sorted(tasks) == [0, 1, 2, 3] and len(recs) == 4, (r.stdout, recs)
    where = [lines[0].split() for lines in tasks.values()]                 # "NODE=name hostname"
    assert len({node for node, _ in where}) == 2, r.stdout                  # two nodes, each its own host
    assert all(node == f"NODE={host}" and host in vsite.cluster.nodes for node, host in where), r.stdout
    for lines in tasks.values():
        lines = lines[1:]
        pid, var = lines[0].split()
        rec = recs[pid.split("=")[1]]                         # the launcher exec'd this very task
        assert var == "VAR=unset"                             # the stub's variable is gone
        assert rec["tag"] == "mck one" and rec["view"] == "launch 12" and rec["uid"] == str(slurm_user.pw_uid)
        assert rec["args"] == ["/bin/sh", "-c", 'echo "NODE=$SLURMD_NODENAME $(hostname)"; ' + PAYLOAD, "sh", "a b",
                               "", "--x=1"]
        assert lines[1:] == ["ARG=a b", "ARG=", "ARG=--x=1", 'PRETTY_NAME="launch 12 (mini)"']
    assert not (launching[0] / ".envsched").exists()          # the stub is bound into the view, not the tree


def test_a_bare_name_reaches_the_launcher_as_the_views_path(site, slurm_user, home, launching, records):
    """srun sends `sh` as typed; slurmstepd would find it in the job's PATH in the view, so does the stub."""
    r = site.cluster.srun("-n1", "--chos=mck", "sh", "-c", "echo PID=$$", user=slurm_user.pw_name, cwd=str(home))
    assert r.returncode == 0, r.stderr
    (rec,) = launch_records(records)
    assert rec["args"] == ["/usr/bin/sh", "-c", "echo PID=$$"] and r.stdout.strip() == f"PID={rec['pid']}"


def test_the_batch_script_runs_through_the_launcher(site, slurm_user, home, launching, records):
    c = site.cluster
    job = c.sbatch(f"#!/bin/sh\n{PAYLOAD}\n", "--chos=mck", "-o", f"{home}/out-%j.txt", user=slurm_user.pw_name,
                   cwd=str(home))
    state = c.wait(job, timeout=60)
    site.settle()
    out = site.output(job, home)
    assert state.state == "COMPLETED", out
    (rec,) = launch_records(records)
    assert rec["view"] == "launch 12" and len(rec["args"]) == 1 and rec["args"][0].endswith("/slurm_script")
    assert out.splitlines() == [f"PID={rec['pid']} VAR=unset", 'PRETTY_NAME="launch 12 (mini)"']


def test_a_missing_launcher_fails_the_job_in_one_line(vsite, slurm_user, home, vlaunching, vrecords):
    site, records = vsite, vrecords
    ran = home / "launcher-payload-ran"
    r = site.cluster.srun("-N2", "-n4", "--chos=missing", "touch", str(ran), user=slurm_user.pw_name, cwd=str(home))
    assert r.returncode == 69, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if not line.startswith("srun: ")]
    line = ("envsched: the launcher /opt/launch/missing of environment missing is not in it "
            "(No such file or directory)")
    assert lines == [line] * 2                                # once per node (each node's view refuses)
    c = site.cluster
    job = c.sbatch(f"#!/bin/sh\ntouch {ran}\n", "--chos=missing", "-o", f"{home}/out-%j.txt",
                   user=slurm_user.pw_name, cwd=str(home))
    state = c.wait(job, timeout=60)
    site.settle()
    assert (state.state, state.exit_code) == ("FAILED", (69, 0)), state.fields
    assert site.output(job, home).splitlines() == [line]      # the batch job's output: that line alone
    assert not ran.exists() and not launch_records(records)


def test_a_launcher_that_cannot_be_executed_fails_the_tasks_in_one_line(site, slurm_user, home, launching, records):
    """The view has it, exec fails (its interpreter is missing): the stub's line, once per node."""
    ran = home / "launcher-payload-ran"
    r = site.cluster.srun("-N1", "-n4", "-O", "--chos=broken", "touch", str(ran), user=slurm_user.pw_name, cwd=str(home))
    assert r.returncode == 69, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if not line.startswith("srun: ")]
    assert lines == ["envsched: cannot execute the launcher /opt/launch/broken: No such file or directory"]
    assert not ran.exists()


def test_multi_prog_is_refused_unless_its_lines_run_the_launcher(site, slurm_user, home, launching, records):
    """Slurm before 23.11: each task's argv is its line of the file (slurmstepd's copy), out of the
    plugin's reach: never run without the launcher; a file that names it in every line runs."""
    conf = home / "multi.conf"
    conf.write_text("0 /bin/echo first\n1-2 /bin/echo rest %t\n")
    conf.chmod(0o644)
    r = site.cluster.srun("-N1", "-n3", "-O", "-l", "--chos=mck", "--multi-prog", str(conf), user=slurm_user.pw_name,
                          cwd=str(home))
    assert r.returncode == 77, (r.stdout, r.stderr)
    assert not r.stdout.strip()
    assert [line for line in r.stderr.splitlines() if not line.startswith("srun: ")] == [
        "0: envsched: srun --multi-prog: on this Slurm (before 23.11) the environment's launcher cannot be put in "
        "front of the file's programs: name it in every line (RANKS /opt/launch/rec PROGRAM ...)"]
    assert not launch_records(records)
    conf.write_text("0 /opt/launch/rec /bin/echo first\n1-2 /opt/launch/rec /bin/echo rest %t\n")
    r = site.cluster.srun("-N1", "-n3", "-O", "-l", "--chos=mck", "--multi-prog", str(conf), user=slurm_user.pw_name,
                          cwd=str(home))
    conf.unlink()
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert sorted(r.stdout.splitlines()) == ["0: first", "1: rest 1", "2: rest 2"]
    assert len(launch_records(records)) == 3
