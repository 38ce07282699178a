"""A site.run_dir whose parents do not exist yet (issue #16, item 1: every job failed at start with
exit 70 "internal error: FileNotFoundError"): the job prolog and the resolver create the missing
directories root's, and the job runs in its environment. Below a directory others can write, every
job is refused with one line, the slurmd log says why, and nothing is created there."""
from __future__ import annotations

import shutil
import stat
import time
from pathlib import Path

import pytest

from spanksite import lines, run_batch

pytestmark = pytest.mark.slurm


def with_run_dir(site, run_dir: Path):
    """Point the policy and plugstack.conf at run_dir; returns a function that puts them back."""
    plugstack, policy = site.cluster.plugstack.read_text(), site.policy.read_text()
    site.cluster.write_plugstack(plugstack.replace(f"run_dir={site.run_dir} ", f"run_dir={run_dir} "))
    site.policy.write_text(policy.replace(f'run_dir = "{site.run_dir}"', f'run_dir = "{run_dir}"'))

    def restore():
        site.cluster.write_plugstack(plugstack)
        site.policy.write_text(policy)
    return restore


def wait_empty(run_dir: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # the decision cache's entries stay (no mounts); shared views are let go with their last job
        left = [p for p in run_dir.iterdir() if p.name not in (".jobs", ".views", ".decisions")] \
            if run_dir.exists() else []
        for below in (".jobs", ".views"):
            left += list((run_dir / below).iterdir()) if (run_dir / below).exists() else []
        if not left:
            return
        time.sleep(0.2)
    raise AssertionError(f"left in {run_dir}: {left}")


def test_run_dir_with_missing_parents_is_created(site, slurm_user, home):
    base = Path(f"{site.run_dir}-parents")
    run_dir = base / "var" / "lib" / "x" / "envsched"
    restore = with_run_dir(site, run_dir)
    try:
        job, state, out = run_batch(site, home, slurm_user.pw_name, "--chos=deb13")
        assert state.state == "COMPLETED", (state, out)
        assert lines(out)["PRETTY_NAME"] == "Debian 13 (mini)" and lines(out)["CHOS"] == "deb13", out
        for d in (base, base / "var", base / "var" / "lib", base / "var" / "lib" / "x"):
            st = d.lstat()
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755), d
        assert stat.S_IMODE(run_dir.lstat().st_mode) == 0o700
        wait_empty(run_dir)
    finally:
        restore()
        shutil.rmtree(base, ignore_errors=True)


def test_run_dir_below_a_directory_others_can_write_refuses(site, slurm_user, home):
    base = Path(f"{site.run_dir}-open")
    base.mkdir(mode=0o755)
    base.chmod(0o1777)
    run_dir = base / "envsched"
    restore = with_run_dir(site, run_dir)
    try:
        r = site.cluster.srun("--chos=deb13", "true", user=slurm_user.pw_name, cwd=str(home))
        assert r.returncode != 0 and r.stdout == "", r
        ours = [ln for ln in r.stderr.splitlines() if ln.startswith("envsched: ")]
        assert ours == ["envsched: this node has no record of the job's partition and account (the job prolog "
                        "wrote none: the node's slurmd log says why); the job does not run here"], r.stderr
        assert f"{base} must be a directory of root's, not writable by group or others" in site.cluster.logs(200)
        assert not run_dir.exists()
    finally:
        restore()
        shutil.rmtree(base, ignore_errors=True)
