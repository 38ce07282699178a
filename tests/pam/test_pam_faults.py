"""Faults (#15) through the PAM module with a real sshd: a hung home file system.

The test user's home is a FUSE mount (squashfuse of a squashfs holding their ~/.chos, the
kernel's entry and attribute caches off) whose daemon is then SIGSTOPped: every lookup below it
waits for an answer that never comes. A login that would read ~/.chos is denied with one line
within a bounded time (the decision cache's reader in C gives up after 2 s, the resolver after
site.user_file_timeout), never a session that hangs; once the home answers again the next login
works. sshd's own files (host keys, authorized keys) are outside the home (conftest.py). The
Slurm side: tests/slurm/test_spank_faults.py::test_a_hung_home_file_system."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from pamlib import PAM_USER as TEST_USER, RESOLVER, module_args, pins, wait_no_pins
from testlib import hung_home, mount_table

pytestmark = pytest.mark.pam

SHOW = 'head -1 /etc/os-release; echo "CHOS=$CHOS"'
USER_FILE_TIMEOUT = 2


def test_a_hung_home_file_system(sshd, site_dir, pam_user, pam_home, fault_report):
    policy = site_dir.policy(site=f"view_hold = 600\nuser_file_timeout = {USER_FILE_TIMEOUT}")
    sshd.service.write(module_args(policy, site_dir.run_dir, f"log_file={site_dir.root}/envsched.log failure=closed"))
    before = mount_table()
    with fault_report.case("hung home file system (~/.chos never answers)", "pam") as row:
        try:
            def let_go():
                wait_no_pins(site_dir.run_dir)
                subprocess.run([RESOLVER, "--policy", str(policy), "gc", "--idle-views"], stdout=subprocess.DEVNULL)

            with hung_home(pam_user, site_dir.root / "hung-home", "deb13", let_go) as stop:
                for _ in range(2):                       # the resolver's, then the decision cache's
                    r = sshd.ssh(TEST_USER, SHOW)
                    row.jobs += 1
                    assert r.returncode == 0 and r.stdout.splitlines() == [
                        'PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13"], (r.stdout, r.stderr)
                    assert wait_no_pins(site_dir.run_dir) == []
                stop()
                row.faults["home FUSE daemon SIGSTOPped"] += 1
                t0 = time.monotonic()
                r = sshd.ssh(TEST_USER, SHOW, timeout=60)
                took = time.monotonic() - t0
                row.jobs += 1
                row.wrong_env += "PRETTY_NAME" in r.stdout
                said = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("envsched: ")]
                assert r.returncode != 0 and "PRETTY_NAME" not in r.stdout, (r.stdout, r.stderr)
                assert len(said) == 1 and f"could not be read within {USER_FILE_TIMEOUT} s" in said[0], \
                    (r.stdout, r.stderr)
                assert took < 2 + USER_FILE_TIMEOUT + 10, took
                assert wait_no_pins(site_dir.run_dir) == []
            # the home answers again (the mount gone: the real home, ~/.chos deb12)
            (pam_home / ".chos").write_text("deb12\n")
            os.chown(pam_home / ".chos", pam_user.pw_uid, pam_user.pw_gid)
            r = sshd.ssh(TEST_USER, SHOW)
            row.jobs += 1
            right = r.returncode == 0 and r.stdout.splitlines() == ['PRETTY_NAME="debian 12 (mini)"', "CHOS=deb12"]
            row.wrong_env += r.returncode == 0 and not right
            assert right, (r.stdout, r.stderr)
        finally:
            (pam_home / ".chos").unlink(missing_ok=True)
        wait_no_pins(site_dir.run_dir)
        subprocess.run([RESOLVER, "--policy", str(policy), "gc", "--idle-views"], check=True, stdout=subprocess.DEVNULL)
        views = site_dir.run_dir / ".views"
        left = pins(site_dir.run_dir) + ([v.name for v in views.iterdir()] if views.exists() else [])
        left += [f"mount {m}" for m in sorted(set(mount_table()) - set(before))]
        row.leftovers = len(left)
        assert not left, left
