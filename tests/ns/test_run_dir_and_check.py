"""site.run_dir whose parents are missing or untrusted, and `envsched check` on what a valid policy
means (issue #16, items 1 and 2): never exit 70 for a configuration problem."""
from __future__ import annotations

import os
import shutil
import stat

import pytest

pytestmark = pytest.mark.ns


def test_missing_run_dir_parents_are_created_roots(site_dir, envsched_cmd, test_user):
    base = site_dir.root / "rd-missing"
    run_dir = base / "var" / "lib" / "x" / "envsched"
    policy = site_dir.policy(name="rd-missing.toml", site=f'run_dir = "{run_dir}"').read_text()
    policy = policy.replace(f'run_dir = "{site_dir.run_dir}"\n', "", 1)
    path = site_dir.root / "rd-missing.toml"
    path.write_text(policy)
    try:
        assert envsched_cmd("--policy", str(path), "check").returncode == 0
        r = envsched_cmd("--policy", str(path), "prepare", "--key", "rd-1", "--user", test_user.pw_name,
                         "--owner-pid", str(os.getpid()))
        assert r.returncode == 0, r.stderr
        for d in (base, base / "var", base / "var" / "lib", base / "var" / "lib" / "x"):
            st = d.lstat()
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755), d
        assert stat.S_IMODE(run_dir.lstat().st_mode) == 0o700
    finally:
        envsched_cmd("--policy", str(path), "release", "--key", "rd-1")
        shutil.rmtree(base)


def test_run_dir_below_a_directory_others_can_write(site_dir, envsched_cmd, test_user):
    base = site_dir.root / "rd-open"
    base.mkdir(mode=0o755)
    base.chmod(0o1777)
    run_dir = base / "envsched"
    policy = site_dir.policy(name="rd-open.toml").read_text().replace(
        f'run_dir = "{site_dir.run_dir}"', f'run_dir = "{run_dir}"')
    path = site_dir.root / "rd-open.toml"
    path.write_text(policy)
    try:
        c = envsched_cmd("--policy", str(path), "check")
        assert c.returncode == 1 and c.stdout.splitlines() == [
            f"{path}: site.run_dir: {run_dir}: {base} must be a directory of root's, not writable by group or others"]
        r = envsched_cmd("--policy", str(path), "prepare", "--key", "rd-2", "--user", test_user.pw_name,
                         "--owner-pid", str(os.getpid()))
        assert (r.returncode, r.stdout) == (78, ""), r
        assert r.stderr.splitlines() == [f"envsched: site.run_dir {run_dir}: {base} must be a directory of root's, "
                                         "not writable by group or others"]
        assert not run_dir.exists()
    finally:
        shutil.rmtree(base)


def test_check_names_defaults_that_refuse_their_jobs(site_dir, envsched_cmd):
    path = site_dir.policy(name="check-meaning.toml", body="""
[defaults.partitions]
gpu = "deb13"
""")
    text = path.read_text().replace('description = "Debian 12 (mini)"', 'description = "Debian 12 (mini)"\nenabled = false')
    text = text.replace('description = "Debian 13 (mini)"', 'description = "Debian 13 (mini)"\nallow_partitions = ["cpu"]')
    path.write_text(text)
    c = envsched_cmd("--policy", str(path), "check")
    assert c.returncode == 1, c
    assert c.stdout.splitlines() == [
        f"{path}: site.default: environment deb12 is disabled (enabled = false): every job that names nothing is "
        "refused",
        f"{path}: defaults.partitions.gpu: environment deb13 is not allowed in partition gpu (allow_partitions)"]
