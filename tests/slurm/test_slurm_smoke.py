"""The throwaway Slurm cluster runs real jobs (no SPANK plugin loaded): batch jobs as root and as an
ordinary user, multi-node steps, exit code propagation, partitions."""
from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPORT = """#!/bin/sh
{{
  echo "user=$(id -un)"
  echo "pwd=$(pwd)"
  echo "job=$SLURM_JOB_ID"
  echo "node=$SLURMD_NODENAME"
  echo "partition=$SLURM_JOB_PARTITION"
}} > {out}
"""


def read_report(path: Path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_cluster_is_up(slurm_cluster):
    p = slurm_cluster.run(["sinfo", "-h", "-N", "-o", "%N %P %t"])
    assert p.returncode == 0, p.stderr
    rows = {tuple(line.split()) for line in p.stdout.splitlines()}
    assert rows == {("node1", "debug*", "idle"), ("node2", "debug*", "idle"), ("node2", "legacy", "idle")}
    assert slurm_cluster.plugstack.read_text() == ""
    st = os.stat(slurm_cluster.dir)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o755)
    assert not str(slurm_cluster.dir).startswith("/tmp")


def test_batch_job_as_root(slurm_cluster):
    out = slurm_cluster.dir / "work" / "root-report.txt"
    job_id = slurm_cluster.sbatch(REPORT.format(out=out), "-o", "/dev/null")
    job = slurm_cluster.wait(job_id, timeout=60)
    assert (job.state, job.exit_code) == ("COMPLETED", (0, 0)), job.fields
    assert job["Partition"] == "debug"
    r = read_report(out)
    assert r["user"] == "root"
    assert r["pwd"] == str(slurm_cluster.dir / "work")
    assert r["job"] == job_id
    assert r["node"] in slurm_cluster.nodes
    assert r["partition"] == "debug"


def test_batch_job_as_user(slurm_cluster, slurm_user: pwd.struct_passwd):
    home = Path(slurm_user.pw_dir)
    out = home / "report.txt"
    out.unlink(missing_ok=True)
    job_id = slurm_cluster.sbatch(REPORT.format(out=out) + "echo to-stdout\n", "-o", "slurm-%j.out",
                                  user=slurm_user.pw_name)
    job = slurm_cluster.wait(job_id, timeout=60)
    assert (job.state, job.exit_code) == ("COMPLETED", (0, 0)), job.fields
    assert job["UserId"].startswith(f"{slurm_user.pw_name}(")
    r = read_report(out)
    assert r["user"] == slurm_user.pw_name
    assert r["pwd"] == slurm_user.pw_dir
    assert r["job"] == job_id
    assert os.stat(out).st_uid == slurm_user.pw_uid
    stdout = home / f"slurm-{job_id}.out"
    assert stdout.read_text() == "to-stdout\n"
    assert os.stat(stdout).st_uid == slurm_user.pw_uid
    out.unlink()
    stdout.unlink()


def test_srun_multi_node_step(slurm_cluster):
    p = slurm_cluster.srun("-N2", "-n4", "sh", "-c", 'echo "$SLURMD_NODENAME $SLURM_PROCID"', timeout=60)
    assert p.returncode == 0, p.stderr
    rows = sorted(tuple(line.split()) for line in p.stdout.splitlines())
    assert {node for node, _ in rows} == {"node1", "node2"}
    assert sorted(rank for _, rank in rows) == ["0", "1", "2", "3"]


def test_srun_as_user(slurm_cluster, slurm_user: pwd.struct_passwd):
    p = slurm_cluster.srun("-N2", "sh", "-c", 'echo "$(id -un) $(pwd) $SLURMD_NODENAME"',
                           user=slurm_user.pw_name)
    assert p.returncode == 0, p.stderr
    lines = sorted(p.stdout.splitlines())
    assert lines == [f"{slurm_user.pw_name} {slurm_user.pw_dir} node1",
                     f"{slurm_user.pw_name} {slurm_user.pw_dir} node2"]


def test_srun_exit_code(slurm_cluster):
    p = slurm_cluster.srun("sh", "-c", "exit 3")
    assert p.returncode == 3, p.stderr


def test_batch_exit_code(slurm_cluster):
    job_id = slurm_cluster.sbatch("#!/bin/sh\nexit 3\n", "-o", "/dev/null")
    job = slurm_cluster.wait(job_id, timeout=60)
    assert job.state == "FAILED"
    assert job["ExitCode"] == "3:0"
    assert job.exit_code == (3, 0)


def test_legacy_partition_runs_on_legacy_node(slurm_cluster):
    out = slurm_cluster.dir / "work" / "legacy-report.txt"
    job_id = slurm_cluster.sbatch(REPORT.format(out=out), "-p", "legacy", "-o", "/dev/null")
    job = slurm_cluster.wait(job_id, timeout=60)
    assert job.state == "COMPLETED", job.fields
    assert job["Partition"] == "legacy"
    assert job.node_list == slurm_cluster.legacy_node
    r = read_report(out)
    assert (r["node"], r["partition"]) == (slurm_cluster.legacy_node, "legacy")
    p = slurm_cluster.srun("-p", "legacy", "sh", "-c", "echo $SLURMD_NODENAME")
    assert (p.returncode, p.stdout) == (0, f"{slurm_cluster.legacy_node}\n"), p.stderr


def test_plugstack_rewrite_and_slurmd_restart(slurm_cluster):
    """The helpers the plugin tests rely on: an atomic plugstack rewrite and a slurmd restart keep the
    cluster working (no plugin is loaded: comments only)."""
    slurm_cluster.write_plugstack("# no plugin\n", restart_slurmd=True)
    assert slurm_cluster.plugstack.read_text() == "# no plugin\n"
    assert oct(slurm_cluster.plugstack.stat().st_mode & 0o777) == "0o644"
    p = slurm_cluster.srun("-N2", "sh", "-c", "echo $SLURMD_NODENAME")
    assert (p.returncode, sorted(p.stdout.split())) == (0, slurm_cluster.nodes), p.stderr
    slurm_cluster.write_plugstack("")
