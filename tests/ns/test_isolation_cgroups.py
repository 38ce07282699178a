"""The init of a job's PID namespace leaves the job's cgroups (isolation.leave_job_cgroups): a
scheduler that kills a step's cgroup (Slurm's proctrack/cgroup, at the end of every step) must not
take the namespace of the job's later steps with it. Real cgroup v1 hierarchies of this node."""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from envsched import isolation

pytestmark = pytest.mark.ns

HIERARCHIES = ("freezer", "pids", "cpu")


def test_a_process_in_a_jobs_cgroups_moves_to_those_of_pid_1():
    made = []
    for name in HIERARCHIES:
        top = f"/sys/fs/cgroup/{name}"
        if not os.path.isdir(top):
            pytest.fail(f"{top}: this node's cgroup v1 hierarchy is missing")
        path = os.path.join(top, f"envsched-test-{uuid.uuid4().hex[:8]}", "step_0")
        os.makedirs(path)
        made.append(path)
    p = subprocess.Popen(["sleep", "60"])
    try:
        for path in made:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(p.pid))
        with open(f"/proc/{p.pid}/cgroup") as f:
            assert any("envsched-test-" in line for line in f)
        isolation.leave_job_cgroups(p.pid)
        with open(f"/proc/{p.pid}/cgroup") as f, open("/proc/1/cgroup") as g:
            assert f.read() == g.read()
    finally:
        p.kill()
        p.wait()
        for path in made:
            os.rmdir(path)
            os.rmdir(os.path.dirname(path))
