"""Isolation namespaces through the real Grid Engine integration (#12): the root prolog pins the
job's PID, IPC and UTS namespaces with its view, the set-user-ID starter starts the job in them
(plugins/common/es_join.c: the job is the starter's child in the PID namespace, the starter
forwards signals and exits as the job did), qdel leaves nothing running, and the C epilog hands
the pin to `envsched release`, which kills the namespace's init."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

pytestmark = pytest.mark.uge


@pytest.fixture(scope="module")
def isolated(uge_site):
    original = uge_site.policy.read_text()
    tree = next(iter(uge_site.trees.values()))
    uge_site.policy.write_text(original + f"""
[environments.iso]
path = "{tree}"
namespaces = ["pid", "ipc", "uts"]
hostname = "isolated-job"
""")
    try:
        yield
    finally:
        uge_site.policy.write_text(original)


def _running(marker):
    return subprocess.run(["pgrep", "-f", marker], stdout=subprocess.DEVNULL).returncode == 0


def test_the_job_sees_its_own_processes_ipc_and_host_name(uge_site, uge_user, isolated):
    c = uge_site.cluster
    job = c.qsub("#!/bin/sh\necho pid=$$ pidns=$(readlink /proc/self/ns/pid) ipcns=$(readlink /proc/self/ns/ipc) "
                 "host=$(hostname) procs=$(ls /proc | grep -c '^[0-9]')\nexit 3\n", "-l", "chos=iso",
                 user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    seen = dict(field.split("=", 1) for field in out.split() if "=" in field)
    assert acct.exit_status == 3, (acct.fields, out)          # the job's own status, through the starter
    assert seen["pidns"] != os.readlink("/proc/self/ns/pid") and seen["ipcns"] != os.readlink("/proc/self/ns/ipc")
    assert seen["host"] == "isolated-job", out
    assert int(seen["pid"]) < 100 and int(seen["procs"]) < 20, out


def test_qdel_leaves_nothing_running(uge_site, uge_user, isolated):
    c = uge_site.cluster
    marker = f"sleep {800 + os.getpid() % 1000}.{os.getpid() % 89}"
    job = c.qsub(f"#!/bin/sh\nsetsid {marker} </dev/null >/dev/null 2>&1 &\nsleep 600\n", "-l", "chos=iso",
                 user=uge_user.pw_name, cwd=uge_user.pw_dir)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _running(marker):
            time.sleep(0.1)
        assert _running(marker), "the job's daemon never started"
        assert c.run(["qdel", job]).returncode == 0
        c.wait(job)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _running(marker):
            time.sleep(0.1)
        left = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout
        assert not left, f"left running after qdel: {left}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(uge_site.run_dir.glob(f"uge-{job}*")):
            time.sleep(0.1)
        assert not any(uge_site.run_dir.glob(f"uge-{job}*")), "the pin was not released"
    finally:
        subprocess.run(["pkill", "-f", marker])               # only this test's unique command line
