"""An environment's launcher (#12): every payload of `chos run`, `envsched exec` and `envsched join`
runs as launcher + payload inside the view (the launcher's program is the view's); a launcher the
view lacks refuses in one line, exit 69, before anything runs. The launcher is a recording script
(McKernel's mcexec cannot run here): testlib.launcher_tree."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from testlib import TEST_USER, cleared, launch_records, launcher_environments, launcher_tree

pytestmark = pytest.mark.ns

PAYLOAD = 'echo "PID=$$"; for a in "$@"; do echo "ARG=$a"; done; head -1 /etc/os-release'
ARGS = ["/bin/sh", "-c", PAYLOAD, "sh", "a b", "", "--x=1"]


@pytest.fixture(scope="module")
def launch(site_dir):
    records = Path(f"/tmp/envsched-launch-{uuid.uuid4().hex[:8]}")
    tree = launcher_tree(site_dir.root / "os" / "launch-mini", records)
    policy = site_dir.policy(launcher_environments(tree, '"/opt/launch/broken", "-x"'), name="policy-launcher.toml")
    yield policy, records
    shutil.rmtree(records)
    shutil.rmtree(tree)


@pytest.fixture
def records(launch):
    return cleared(launch[1])


def _ran_through(out, records, uid, program="/bin/sh", args=ARGS[1:]):
    """The payload ran once, through the launcher, in the view, with its argv intact."""
    lines = out.splitlines()
    recs = launch_records(records)
    assert len(recs) == 1, recs
    rec = recs[0]
    assert rec["tag"] == "mck one" and rec["view"] == "launch 12" and rec["uid"] == str(uid)
    assert rec["args"] == [program] + list(args)
    assert lines[0] == f"PID={rec['pid']}"                 # the launcher exec'd the payload
    assert lines[1:-1] == ["ARG=a b", "ARG=", "ARG=--x=1"]
    assert lines[-1] == 'PRETTY_NAME="launch 12 (mini)"'


def test_chos_run_as_the_user(chos_cmd, launch, records, test_user, home):
    r = chos_cmd("--policy", str(launch[0]), "run", "mck", "--", *ARGS, user=TEST_USER, cwd=str(home))
    assert r.returncode == 0, r.stderr
    _ran_through(r.stdout, records, test_user.pw_uid)


def test_envsched_exec_finds_a_bare_name_in_the_view(envsched_cmd, launch, records, test_user):
    """`sh` is found in the job's PATH inside the view (the tree's /usr/bin/sh: the host has none
    there), and the launcher gets its path, as McKernel's mcexec expects."""
    r = envsched_cmd("--policy", str(launch[0]), "exec", "--user", TEST_USER, "--no-user-file", "--request", "mck",
                     "--", "sh", *ARGS[1:])
    assert r.returncode == 0, r.stderr
    _ran_through(r.stdout, records, test_user.pw_uid, program="/usr/bin/sh")


def test_every_join_runs_through_the_launcher(envsched_cmd, launch, records, test_user, home):
    policy = launch[0]
    r = envsched_cmd("--policy", str(policy), "prepare", "--user", TEST_USER, "--no-user-file", "--request", "mck",
                     "--key", "slurm-9100-0", "--owner-pid", str(os.getpid()), "--format", "shim")
    assert r.returncode == 0, r.stderr
    assert [line for line in r.stdout.splitlines() if line.startswith("launcher ")] == [
        "launcher /opt/launch/rec", "launcher --rec-tag=mck one"]
    try:
        pids = []
        for _ in range(2):
            j = envsched_cmd("--policy", str(policy), "join", "--key", "slurm-9100-0", "--cwd", str(home), "--", *ARGS)
            assert j.returncode == 0, j.stderr
            _ran_through(j.stdout, records, test_user.pw_uid)
            pids.append(launch_records(records)[0]["pid"])
            for p in records.iterdir():
                p.unlink()
        assert pids[0] != pids[1]
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", "slurm-9100-0")


def test_a_launcher_missing_from_the_view_refuses_in_one_line(chos_cmd, envsched_cmd, launch, records, home):
    policy = launch[0]
    ran = home / "launcher-payload-ran"
    line = ("envsched: the launcher /opt/launch/missing of environment missing is not in it "
            "(No such file or directory)")
    for r in (chos_cmd("--policy", str(policy), "run", "missing", "--", "touch", str(ran), user=TEST_USER,
                       cwd=str(home)),
              envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--no-user-file", "--request",
                           "missing", "--", "touch", str(ran)),
              envsched_cmd("--policy", str(policy), "prepare", "--user", TEST_USER, "--no-user-file", "--request",
                           "missing", "--key", "slurm-9101-0", "--owner-pid", str(os.getpid()))):
        assert r.returncode == 69, r.stderr
        assert r.stderr.splitlines() == [line]
    assert not ran.exists() and not launch_records(records)
    assert not (launch[0].parent / "run" / "slurm-9101-0").exists()


def test_a_launcher_that_cannot_be_executed_refuses_in_one_line(chos_cmd, envsched_cmd, launch, records, home):
    """The view has the file but exec fails (its interpreter is missing): the line names the
    launcher, not the payload."""
    policy = launch[0]
    ran = home / "launcher-payload-ran"
    line = "envsched: cannot execute the launcher /opt/launch/broken: No such file or directory"
    r = chos_cmd("--policy", str(policy), "run", "broken", "--", "touch", str(ran), user=TEST_USER, cwd=str(home))
    assert (r.returncode, r.stderr.splitlines()) == (69, [line])
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--no-user-file", "--request", "broken",
                     "--", "touch", str(ran))
    assert (r.returncode, r.stderr.splitlines()) == (69, [line])
    r = envsched_cmd("--policy", str(policy), "prepare", "--user", TEST_USER, "--no-user-file", "--request", "broken",
                     "--key", "slurm-9102-0", "--owner-pid", str(os.getpid()))
    assert r.returncode == 0, r.stderr
    try:
        r = envsched_cmd("--policy", str(policy), "join", "--key", "slurm-9102-0", "--", "touch", str(ran))
        assert (r.returncode, r.stderr.splitlines()) == (69, [line])
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", "slurm-9102-0")
    assert not ran.exists() and not launch_records(records)
