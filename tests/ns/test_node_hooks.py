"""Node hooks (#12): an environment's node_prolog and node_epilog run as root once per view
pinned (a job on a node), with what the scheduler and the kernel say of the job; a failing or
hanging prolog refuses the job in one line and leaves nothing; their output goes to the admin
log. The hooks here are recording scripts (McKernel cannot be installed here)."""
from __future__ import annotations

import os
import shutil

import pytest

from testlib import TEST_USER

pytestmark = pytest.mark.ns

RECORD = """#!/bin/sh
# a stand-in for McKernel's boot/shutdown: what it was given, one file per run
out={dir}/$ENVSCHED_HOOK-$$
{{ echo "args=$*"; env | grep '^ENVSCHED_' | sort; echo "uid=$(id -u)"; }} > "$out"
echo "{kind} says hello"
exit {code}
"""


@pytest.fixture
def hooks(site_dir):
    top = site_dir.root / "hooks"
    records = top / "records"
    top.mkdir(mode=0o755)
    records.mkdir(mode=0o755)

    def script(name, kind, code=0, sleep=0):
        path = top / name
        text = RECORD.format(dir=records, kind=kind, code=code)
        if sleep:
            text = text.replace("exit ", f"sleep {sleep}\nexit ", 1)
        path.write_text(text)
        path.chmod(0o755)
        return path

    yield top, records, script
    shutil.rmtree(top)


def _policy(site_dir, prolog, epilog, timeout=300):
    return site_dir.policy(f"""
[environments.mck]
path = "{site_dir.envs['deb12']}"
node_prolog = ["{prolog}", "--cpus-from-env"]
node_epilog = ["{epilog}"]
""", site=f"node_hook_timeout = {timeout}", name="policy-hooks.toml")


def _records(records):
    out = {}
    for p in sorted(records.iterdir()):
        out.setdefault(p.name.split("-")[0], []).append(dict(line.split("=", 1) for line in p.read_text().splitlines()))
    return out


def _prepare(envsched_cmd, policy, key):
    return envsched_cmd("--policy", str(policy), "prepare", "--user", TEST_USER, "--no-user-file", "--request",
                        "mck", "--key", key, "--job", "4711", "--owner-pid", str(os.getpid()), "--format", "shim")


def test_prolog_once_per_pin_epilog_at_release(envsched_cmd, site_dir, hooks, test_user):
    top, records, script = hooks
    policy = _policy(site_dir, script("boot", "prolog"), script("shutdown", "epilog"))
    r = _prepare(envsched_cmd, policy, "slurm-4711-0")
    try:
        assert r.returncode == 0, r.stderr
        for _ in range(2):                     # tasks join; no hook runs for them
            j = envsched_cmd("--policy", str(policy), "join", "--key", "slurm-4711-0", "--", "/bin/true")
            assert j.returncode == 0, j.stderr
        again = envsched_cmd("--policy", str(policy), "prepare", "--user", TEST_USER, "--no-user-file",
                             "--request", "mck", "--key", "slurm-4711-0", "--reuse", "--owner-pid",
                             str(os.getpid()), "--format", "shim")
        assert again.returncode == 0 and "reused 1" in again.stdout
        seen = _records(records)
        assert list(seen) == ["prolog"] and len(seen["prolog"]) == 1
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", "slurm-4711-0")
    seen = _records(records)
    assert len(seen["prolog"]) == 1 and len(seen["epilog"]) == 1
    pro, epi = seen["prolog"][0], seen["epilog"][0]
    assert pro["args"] == "--cpus-from-env" and pro["uid"] == "0"
    assert pro["ENVSCHED_JOB"] == "4711" and pro["ENVSCHED_SCHEDULER"] == "slurm"
    assert pro["ENVSCHED_USER"] == TEST_USER and pro["ENVSCHED_UID"] == str(test_user.pw_uid)
    assert pro["ENVSCHED_ENVIRONMENT"] == "mck" and pro["ENVSCHED_KEY"] == "slurm-4711-0"
    assert pro["ENVSCHED_CPUS"] == open(f"/proc/{os.getpid()}/status").read().split("Cpus_allowed_list:")[1].split()[0]
    assert "ENVSCHED_MEMORY" in pro
    assert {k: v for k, v in epi.items() if k not in ("ENVSCHED_HOOK", "args")} == \
        {k: v for k, v in pro.items() if k not in ("ENVSCHED_HOOK", "args")}
    assert epi["ENVSCHED_HOOK"] == "epilog"
    log = (site_dir.root / "envsched.log").read_text()
    assert "event=node_hook hook=prolog key=slurm-4711-0 job=4711" in log and 'output="prolog says hello' in log
    assert "event=node_hook hook=epilog key=slurm-4711-0" in log


@pytest.mark.parametrize("how", ["fails", "hangs", "untrusted"])
def test_a_prolog_that_fails_refuses_the_job_and_leaves_nothing(envsched_cmd, site_dir, hooks, how):
    top, records, script = hooks
    if how == "fails":
        prolog = script("boot", "prolog", code=3)
    elif how == "hangs":
        prolog = script("boot", "prolog", sleep=30)
    else:
        prolog = script("boot", "prolog")
        prolog.chmod(0o777)                       # writable by others: never run as root
    policy = _policy(site_dir, prolog, script("shutdown", "epilog"), timeout=2)
    r = _prepare(envsched_cmd, policy, "slurm-4712-0")
    assert r.returncode == 69, r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("envsched: environment mck: its node prolog failed on this node (")
    assert not (site_dir.run_dir / "slurm-4712-0").exists()
    assert "epilog" not in _records(records)       # nothing was set up, nothing to undo
    if how == "untrusted":
        assert _records(records) == {}
