"""Node hooks through the real Slurm plugin (#12): once per job per node, before the first task
and after the last, whatever the number of tasks and steps; a failing prolog refuses the job in
one line. The hooks are recording scripts (McKernel cannot be installed here). The two-node case runs
on the virtual cluster (`vsite`, `vhooked`): each node runs its own hooks for its own view."""
from __future__ import annotations

import shutil
import time
from contextlib import contextmanager

import pytest

from spanksite import policy_text
from testlib import hook_environments, recording_hooks

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("views_released")]

@contextmanager
def _hooked(site):
    root = site.cluster.dir
    top = root / "hooks"
    records = recording_hooks(top, {"boot": 0, "shutdown": 0, "broken-boot": 7})
    original = site.policy.read_text()
    site.policy.write_text(policy_text(root, site.run_dir, site.trees, extra_environments=hook_environments(site.trees['deb12'], top)))
    try:
        yield records
    finally:
        site.policy.write_text(original)
        shutil.rmtree(top)


@pytest.fixture(scope="module")
def hooked(site):
    with _hooked(site) as records:
        yield records


@pytest.fixture(scope="module")
def vhooked(vsite):
    """The same on the virtual cluster."""
    with _hooked(vsite) as records:
        yield records


def _runs(records, job):
    """'HOOK KEY' of each run for the job's views (keys slurm-JOB-NODE)."""
    runs = [p.read_text().split() for p in records.iterdir()]
    return sorted(f"{r[0]} {r[1]}" for r in runs if r[1].startswith(f"slurm-{job}-"))


def test_once_per_job_per_node(vsite, slurm_user, home, vhooked):
    site, hooked = vsite, vhooked
    c = site.cluster
    script = "#!/bin/sh\nsrun -N2 -n4 true\nsrun -N2 -n2 true\n"
    job = c.sbatch(script, "-N2", "--chos=mck", "-o", f"{home}/out-%j.txt", user=slurm_user.pw_name,
                   cwd=str(home))
    state = c.wait(job, timeout=90)
    site.settle()
    assert state.state == "COMPLETED", site.output(job, home)
    deadline = time.monotonic() + 10
    while len(_runs(hooked, job)) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    # the batch node's view, and the other node's (made by the first step there), each once
    assert _runs(hooked, job) == [f"epilog slurm-{job}-0", f"epilog slurm-{job}-1",
                                  f"prolog slurm-{job}-0", f"prolog slurm-{job}-1"], \
        [p.read_text() for p in hooked.iterdir()]
    line = next(p.read_text() for p in hooked.iterdir() if p.name.startswith(f"prolog-slurm-{job}-0"))
    assert line.split()[2] == f"{job}.batch"                  # the step that pinned the batch node's view
    assert f" {slurm_user.pw_name} cpus=" in line and line.split("cpus=")[1].strip()


def test_a_failing_prolog_refuses_the_job_in_one_line(site, slurm_user, home, hooked):
    r = site.cluster.srun("--chos=mck-broken", "touch", str(home / "hooked-ran"), user=slurm_user.pw_name)
    assert r.returncode == 69, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if not line.startswith("srun: ")]
    assert lines == ["envsched: environment mck-broken: its node prolog failed on this node (exit 7; the admin "
                     "log has its output)"]
    assert not (home / "hooked-ran").exists()
