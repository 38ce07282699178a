"""Pinned at submit (site.pin_at_submit) for Torque and OpenPBS, through their contract harnesses: the
Torque submit filter stamps `#ENVSCHED pin=NAME@sha256:...` into the script and the prologue prepares
that version; the OpenPBS queuejob hook rewrites the job's request (Resource_List["chos"], or the CHOS
in Variable_List) to the pinned value and the launch hook prepares that version. Each job is submitted
while version v1 is current and started after the admin stamped v2: it runs v1.

Two versions of one tree side by side (`pinned`, this module's own environment): os-pin/v1 stamped as
version v1, then the policy's path switched to os-pin/v2 and that stamped as v2.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import installed  # noqa: E402
from test_openpbs import DRIVER, HOOKS, config, end, job, launch, pbs_site, start  # noqa: E402,F401
from test_torque_mom import mom, torque  # noqa: E402,F401  (the Torque harness fixtures)

pytestmark = [pytest.mark.torque, pytest.mark.ns]

ENV = "pinned"
BUILD = Path(__file__).resolve().parents[1] / "envs" / "build-mini-env.sh"
SHOW = 'echo "mark=$(cat /etc/envsched-pin-mark) chos=$CHOS digest=$CHOS_DIGEST"'


class Versions:
    """Switch `pinned` in `policy` between the two trees, stamping each switch."""

    def __init__(self, policy: Path, trees):
        self.policy, self.base, self.trees = policy, policy.read_text(), trees
        self.digest = {}
        self.pin_at_submit = True

    def switch(self, label: str) -> str:
        text = self.base + f'\n[environments.{ENV}]\npath = "{self.trees[label]}"\n'
        if not self.pin_at_submit:
            text = text.replace("\n[site]\n", "\n[site]\npin_at_submit = false\n", 1)
        self.policy.write_text(text)
        p = subprocess.run([installed.envsched(), "--policy", str(self.policy), "env", "stamp", ENV, "--version",
                            label], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.returncode == 0, p.stderr
        self.digest[label] = p.stdout.split()[1]
        return self.digest[label]

    def restore(self) -> None:
        self.policy.write_text(self.base)


@pytest.fixture(scope="module")
def pin_trees(site_dir):
    d = site_dir.root / "os-pin"
    d.mkdir(mode=0o755, exist_ok=True)
    out = {}
    for label in ("v1", "v2"):
        out[label] = d / label
        if not out[label].exists():
            subprocess.run([str(BUILD), str(out[label]), "debian", "12", f"Pin {label}"], check=True,
                           stdout=subprocess.DEVNULL)
            (out[label] / "etc" / "envsched-pin-mark").write_text(label + "\n")
    return out


def seen(text: str) -> dict:
    line = [ln for ln in text.splitlines() if ln.startswith("mark=")]
    assert line, text
    return dict(kv.split("=", 1) for kv in line[-1].split())


# ------------------------------------------------------------------------------ Torque
@pytest.mark.parametrize("pin_at_submit", [True, False])
def test_torque_filter_carries_the_pin(torque, mom, test_user, pin_trees, pin_at_submit):
    v = Versions(torque[1], pin_trees)
    v.pin_at_submit = pin_at_submit
    try:
        d1 = v.switch("v1")
        job = mom.qsub(test_user, "#!/bin/sh\n" + SHOW + "\n", ["-v", f"CHOS={ENV}"])
        pins = [ln for ln in job.script.splitlines() if ln.startswith("#ENVSCHED pin=")]
        assert pins == ([f"#ENVSCHED pin={ENV}@{d1}"] if pin_at_submit else []), job.script
        d2 = v.switch("v2")
        r = mom.run(job)
        assert (r.state, r.exit_status) == ("completed", 0), r
        got = seen(r.stdout)
        assert (got["mark"], got["digest"], got["chos"]) == (("v1", d1, ENV) if pin_at_submit else ("v2", d2, ENV)), r
    finally:
        v.restore()


def test_torque_user_stamp_of_another_name_is_not_taken(torque, mom, test_user, pin_trees):
    """A pin stamp the user wrote for another environment (no filter ran) is ignored: the prologue
    takes a pin only as the job's own request plus a version."""
    v = Versions(torque[1], pin_trees)
    try:
        d1 = v.switch("v1")
        filt, mom.submit_filter = mom.submit_filter, None
        try:
            job = mom.qsub(test_user, f"#!/bin/sh\n#ENVSCHED chos={ENV}\n#ENVSCHED pin=deb13@{d1}\n{SHOW}\n",
                           ["-v", f"CHOS={ENV}"])
        finally:
            mom.submit_filter = filt
        d2 = v.switch("v2")
        r = mom.run(job)
        assert (r.state, r.exit_status) == ("completed", 0), r
        assert (seen(r.stdout)["mark"], seen(r.stdout)["digest"]) == ("v2", d2), r
    finally:
        v.restore()


# ------------------------------------------------------------------------------ OpenPBS
QUEUEJOB_DRIVER = r"""
import json, os, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import pbs
spec = json.load(sys.stdin)
pbs._set_event(pbs.QUEUEJOB, spec["requestor"], pbs.job(**spec["job"]), config=spec["config"])
code = compile(open(spec["hook"]).read(), spec["hook"], "exec")
try:
    exec(code, {"__name__": "__main__"})
except SystemExit:
    pass
j = pbs.event().job
out = pbs._result()
out["job"] = {"Resource_List": dict(j.Resource_List), "Variable_List": dict(j.Variable_List)}
json.dump(out, sys.stdout)
"""


def queuejob(conf: Path, j: dict) -> dict:
    """The queuejob hook on the stand-in `pbs` module; the result and the job's request afterwards."""
    spec = {"hook": str(HOOKS / "envsched_queuejob.py"), "config": str(conf), "job": j,
            "requestor": j["euser"]}
    p = subprocess.run([installed.hook_python(), "-I", "-c", QUEUEJOB_DRIVER, str(DRIVER)], input=json.dumps(spec),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120, cwd="/",
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("how", ["resource", "variable"])
def test_openpbs_queuejob_carries_the_pin(site_dir, pbs_site, test_user, home, pin_trees, how):
    policy = site_dir.policy(name="pin-openpbs.toml")
    v = Versions(policy, pin_trees)
    conf = config(pbs_site, policy)
    j = job("77.srv", chos=ENV if how == "resource" else None,
            variables={"CHOS": ENV} if how == "variable" else None)
    try:
        d1 = v.switch("v1")
        q = queuejob(conf, j)
        assert not q["rejected"], q
        if how == "resource":
            assert q["job"]["Resource_List"] == {"chos": f"{ENV}@{d1}"}, q
        else:
            assert q["job"]["Variable_List"] == {"CHOS": f"{ENV}@{d1}"}, q
        j.update(q["job"])                          # the job as queued
        v.switch("v2")
        r = start(conf, home, j, j["Variable_List"], command=["/bin/sh", "-c", SHOW])
        assert not r["rejected"], r
        p = launch(r, home)
        assert p.returncode == 0, p.stderr
        got = seen(p.stdout)
        assert (got["mark"], got["digest"], got["chos"]) == ("v1", d1, ENV), p.stdout
    finally:
        end(conf, j)
        v.restore()


def test_openpbs_queuejob_without_pinning(site_dir, pbs_site, test_user, home, pin_trees):
    policy = site_dir.policy(name="pin-openpbs.toml")
    v = Versions(policy, pin_trees)
    v.pin_at_submit = False
    conf = config(pbs_site, policy)
    try:
        v.switch("v1")
        q = queuejob(conf, job("78.srv", chos=ENV))
        assert not q["rejected"], q
        assert q["job"]["Resource_List"] == {"chos": ENV}, q
    finally:
        v.restore()
