"""An environment's launcher through the real Grid Engine integration (#12): the set-user-ID starter
runs a script job's shell and a binary job's program as launcher + argv, inside the view; a launcher
the view lacks refuses the job in one line (exit 69), one that cannot be executed too. The launcher
is a recording script (testlib.launcher_tree)."""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from testlib import cleared, launch_records, launcher_environments, launcher_tree

pytestmark = pytest.mark.uge

PAYLOAD = 'echo "PID=$$"; for a in "$@"; do echo "ARG=$a"; done; head -1 /etc/os-release'


@pytest.fixture(scope="module")
def launching(uge_site):
    root = uge_site.cluster.dir
    records = Path(f"/tmp/envsched-launch-{uuid.uuid4().hex[:8]}")
    tree = launcher_tree(root / "os" / "launch", records)
    original = uge_site.policy.read_text()
    uge_site.policy.write_text(original + launcher_environments(tree))
    try:
        yield tree, records
    finally:
        uge_site.policy.write_text(original)
        shutil.rmtree(records)
        shutil.rmtree(tree)


@pytest.fixture
def records(launching):
    return cleared(launching[1])


def test_a_script_job_runs_its_shell_through_the_launcher(uge_site, uge_user, records):
    c = uge_site.cluster
    job = c.qsub(f"#!/bin/sh\n{PAYLOAD}\n", "-l", "chos=mck", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, out)
    (rec,) = launch_records(records)
    assert rec["tag"] == "mck one" and rec["view"] == "launch 12" and rec["uid"] == str(uge_user.pw_uid)
    shell, script = rec["args"]
    assert shell.startswith("/") and shell.endswith("sh") and f"/job_scripts/{job}" in script, rec
    assert out.splitlines() == [f"PID={rec['pid']}", 'PRETTY_NAME="launch 12 (mini)"']


def test_a_binary_job_without_shell_keeps_its_argv(uge_site, uge_user, records):
    """qsub -b y -shell no: the program as given, found in the job's PATH in the view (the launcher
    gets a path: the tree's sh), its arguments one by one."""
    c = uge_site.cluster
    job = c.qsub(None, "-l", "chos=mck", "-b", "y", "-shell", "no", "-N", "launched", "sh", "-c", PAYLOAD, "sh",
                 "a b", "--x=1", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, out)
    (rec,) = launch_records(records)
    assert rec["args"][0] in ("/bin/sh", "/usr/bin/sh"), rec
    assert rec["args"][1:] == ["-c", PAYLOAD, "sh", "a b", "--x=1"], rec
    assert out.splitlines() == [f"PID={rec['pid']}", "ARG=a b", "ARG=--x=1", 'PRETTY_NAME="launch 12 (mini)"']


@pytest.mark.parametrize("env,line", [
    ("missing", "envsched: the launcher /opt/launch/missing of environment missing is not in it "
                "(No such file or directory)"),
    ("broken", "envsched: cannot execute the launcher /opt/launch/broken: No such file or directory"),
])
def test_a_launcher_that_cannot_run_refuses_the_job_in_one_line(uge_site, uge_user, records, env, line):
    c = uge_site.cluster
    marker = Path(uge_user.pw_dir) / "launcher-payload-ran"
    marker.unlink(missing_ok=True)
    job = c.qsub(f"#!/bin/sh\ntouch {marker}\n", "-l", f"chos={env}", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    assert acct.exit_status == 69, (acct.fields, out)
    assert out.splitlines() == [line]
    assert not marker.exists() and not launch_records(records)
