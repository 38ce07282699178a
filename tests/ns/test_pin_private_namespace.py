"""Pinning from a mount namespace other than the host's (sshd or su in a private namespace, a
container): the kernel binds a namespace file only onto a namespace it judges newer than the
caller's, by namespace id, and ids do not follow creation order across CPUs. Before pin.py
took that into account, about half of these prepares failed with EINVAL (issue #16, item 8)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from testlib import mount_table

pytestmark = pytest.mark.ns
ROUNDS = 300


def test_prepares_from_a_private_mount_namespace_all_pin(site_dir, test_user):
    policy = site_dir.policy(name="pin-private-ns.toml")
    before = mount_table()
    program = textwrap.dedent(f"""
        import os, sys
        from envsched import linux
        from envsched.identity import lookup_user
        from envsched.pin import PinStore
        from envsched.policy import load_policy
        from envsched.service import JobContext, plan_for_job
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {{cpus[int(sys.argv[1]) % len(cpus)]}})
        linux.unshare(linux.CLONE_NEWNS)                         # as `unshare -m` does, on that CPU
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        policy = load_policy({str(policy)!r})
        user = lookup_user({test_user.pw_name!r})
        _, plan = plan_for_job(policy, JobContext(user=user, option="deb13"))
        store, failed = PinStore(policy.site.run_dir), []
        for i in range({ROUNDS} // 2):
            key = f"private-ns-{{i}}"
            os.sched_setaffinity(0, {{cpus[i % len(cpus)]}})    # views made on every CPU in turn
            try:
                store.prepare(key, plan, user, os.getpid())
            except Exception as e:                               # noqa: BLE001 - counted
                failed.append(str(e))
            finally:
                store.release(key)
        print(len(failed), failed[:3])
    """)
    for cpu in (0, 1):                      # our namespace made on one CPU, then on another
        r = subprocess.run([sys.executable, "-c", program, str(cpu)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("0 "), r.stdout               # every one of the prepares pinned
    assert mount_table() == before
    assert not [k for k in os.listdir(site_dir.run_dir) if k.startswith("private-ns-")]
