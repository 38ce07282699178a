"""Pinned at submit (site.pin_at_submit) on a real Grid Engine: the JSV makes a job that named its
environment (-l chos=NAME, or -v CHOS=NAME) carry NAME@sha256:<digest current at submit>, so a job held
with `qsub -h` and released with `qrls` after the admin stamped a new version still runs the old one.

Two versions of one tree side by side (`pinned`, this module's own environment in the site's policy):
os-pin/v1 stamped as version v1, then the policy's path switched to os-pin/v2 and that stamped as v2.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ugesite import envsched_cmd

pytestmark = pytest.mark.uge

ENV = "pinned"
PROBE = ('#!/bin/sh\necho "mark=$(cat /etc/envsched-pin-mark) chos=$CHOS digest=$CHOS_DIGEST '
         'req=${ENVSCHED_REQUEST:-none}"\n')
UNKNOWN = "sha256:" + "0123456789abcdef" * 4
BUILD = Path(__file__).resolve().parents[1] / "envs" / "build-mini-env.sh"


def seen(text: str) -> dict:
    line = [ln for ln in text.splitlines() if ln.startswith("mark=")]
    assert line, text
    return dict(kv.split("=", 1) for kv in line[-1].split())


class Versions:
    def __init__(self, site, base: str, trees):
        self.site, self.base, self.trees = site, base, trees
        self.digest = {}
        self.pin_at_submit = True

    def switch(self, label: str) -> str:
        text = self.base + f'\n[environments.{ENV}]\npath = "{self.trees[label]}"\n'
        if not self.pin_at_submit:
            text = text.replace("\n[site]\n", "\n[site]\npin_at_submit = false\n", 1)
        self.site.policy.write_text(text)
        p = subprocess.run([envsched_cmd(), "--policy", str(self.site.policy), "env", "stamp", ENV,
                            "--version", label], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.returncode == 0, p.stderr
        self.digest[label] = p.stdout.split()[1]
        return self.digest[label]


@pytest.fixture(scope="module")
def pin_trees(uge_site):
    d = uge_site.cluster.dir / "os-pin"
    d.mkdir(mode=0o755, exist_ok=True)
    out = {}
    for label in ("v1", "v2"):
        out[label] = d / label
        if not out[label].exists():
            subprocess.run([str(BUILD), str(out[label]), "debian", "12", f"Pin {label}"], check=True,
                           stdout=subprocess.DEVNULL)
            (out[label] / "etc" / "envsched-pin-mark").write_text(label + "\n")
    return out


@pytest.fixture
def versions(uge_site, pin_trees):
    base = uge_site.policy.read_text()
    v = Versions(uge_site, base, pin_trees)
    v.switch("v1")
    try:
        yield v
    finally:
        uge_site.policy.write_text(base)


def _held_then_released(site, versions, user, *args, env=None):
    c = site.cluster
    job = c.qsub(PROBE, "-h", *args, user=user.pw_name, cwd=user.pw_dir, env=env)
    versions.switch("v2")
    assert c.run(["qrls", job]).returncode == 0
    acct = c.wait(job)
    return job, acct, c.output(job)


def test_held_job_runs_the_version_it_was_submitted_against(uge_site, versions, uge_user):
    d1 = versions.digest["v1"]
    job, acct, out = _held_then_released(uge_site, versions, uge_user, "-l", f"chos={ENV}")
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, out)
    got = seen(out)
    assert (got["mark"], got["digest"], got["chos"]) == ("v1", d1, ENV), (out, uge_site.admin_log.read_text()[-2000:])
    # a job submitted after the switch: the new version
    c = uge_site.cluster
    job2 = c.qsub(PROBE, "-l", f"chos={ENV}", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    c.wait(job2)
    assert seen(c.output(job2))["mark"] == "v2"
    assert seen(c.output(job2))["digest"] == versions.digest["v2"]


def test_held_job_by_chos_variable_is_pinned_too(uge_site, versions, uge_user):
    d1 = versions.digest["v1"]
    job, acct, out = _held_then_released(uge_site, versions, uge_user, "-v", f"CHOS={ENV}")
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, out)
    got = seen(out)
    assert (got["mark"], got["digest"]) == ("v1", d1), out


def test_pin_at_submit_off(uge_site, versions, uge_user):
    versions.pin_at_submit = False
    versions.switch("v1")
    job, acct, out = _held_then_released(uge_site, versions, uge_user, "-l", f"chos={ENV}")
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, out)
    got = seen(out)
    assert (got["mark"], got["digest"]) == ("v2", versions.digest["v2"]), out


def test_explicit_version_and_unknown_version(uge_site, versions, uge_user):
    c = uge_site.cluster
    d1 = versions.digest["v1"]
    versions.switch("v2")
    job = c.qsub(PROBE, "-l", f"chos={ENV}@v1", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, c.output(job))
    assert (seen(c.output(job))["mark"], seen(c.output(job))["digest"]) == ("v1", d1)
    job = c.qsub(PROBE, "-l", f"chos={ENV}@{UNKNOWN}", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    assert acct.exit_status == 69, (acct.fields, out)
    assert "mark=" not in out
    assert len(out.splitlines()) == 1 and out.startswith("envsched: "), out
