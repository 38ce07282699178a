"""Jobs in their environment, end to end on a real Grid Engine: `qsub -l chos=NAME`, `#$ -l chos=`,
the CHOS variable, ~/.chos, the site default; script and binary jobs, qrsh, array and parallel
jobs; what the payload saw (os-release, CHOS, uid, cwd, TMPDIR); refusals at start; exit codes;
qdel; no pin left afterwards. The cluster is configured from `envsched site-config render`."""
from __future__ import annotations

import re
import subprocess
import time

import pytest
from conftest import envsched_cmd

pytestmark = pytest.mark.uge

# what the payload saw, one line
PROBE = ('#!/bin/sh\n. /etc/os-release; echo "os=$VERSION_ID chos=$CHOS uid=$(id -u) cwd=$(pwd) '
         'tmp=${TMPDIR:+set}"\n')


def seen(text: str) -> dict:
    line = [ln for ln in text.splitlines() if ln.startswith("os=")]
    assert line, text
    return dict(kv.split("=", 1) for kv in line[-1].split())


def test_option_runs_in_requested_tree(uge_site, uge_user):
    c = uge_site.cluster
    job = c.qsub(PROBE, "-l", "chos=deb13", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, c.output(job))
    got = seen(c.output(job))
    assert got == {"os": "13", "chos": "deb13", "uid": str(uge_user.pw_uid), "cwd": uge_user.pw_dir,  # noqa
                   "tmp": "set"}, (got, uge_site.admin_log.read_text(), uge_site.log.read_text()[-3000:])


def test_default_environment(uge_site, uge_user):
    c = uge_site.cluster
    job = c.qsub(PROBE, user=uge_user.pw_name)
    c.wait(job)
    assert seen(c.output(job))["os"] == "12"
    assert seen(c.output(job))["chos"] == "deb12"


def test_embedded_directive(uge_site, uge_user):
    c = uge_site.cluster
    job = c.qsub(PROBE.replace("\n", "\n#$ -l chos=deb13\n", 1), user=uge_user.pw_name)
    c.wait(job)
    assert seen(c.output(job))["os"] == "13"


def test_binary_job_keeps_shell_semantics(uge_site, uge_user):
    c = uge_site.cluster
    job = c.qsub(None, "-b", "y", "-N", "bin", "-l", "chos=deb13", "/bin/sh", "-c",
                 "'. /etc/os-release; echo os=$VERSION_ID job=$JOB_ID'", user=uge_user.pw_name)
    c.wait(job)
    assert c.output(job).strip().endswith(f"os=13 job={job}"), c.output(job)


def test_exit_status_reaches_accounting(uge_site, uge_user):
    c = uge_site.cluster
    job = c.qsub("#!/bin/sh\nexit 7\n", "-l", "chos=deb13", user=uge_user.pw_name)
    assert c.wait(job).exit_status == 7


def gc_until_released(site, timeout: float = 15) -> None:
    """Pins without an epilog (qrsh) go with `envsched gc` once their shepherd has exited."""
    deadline = time.monotonic() + timeout
    while site.pins() and time.monotonic() < deadline:
        subprocess.run([envsched_cmd(), "--policy", str(site.policy), "gc"], stdout=subprocess.DEVNULL)
        time.sleep(0.1)
    assert site.pins() == []


def test_no_pin_left(uge_site, uge_user):
    c = uge_site.cluster
    job = c.qsub(PROBE, "-l", "chos=deb13", user=uge_user.pw_name)
    c.wait(job)
    assert uge_site.pins() == []          # the epilog released it before the job left qstat


def test_qrsh_command(uge_site, uge_user):
    c = uge_site.cluster
    p = c.qrsh("-l", "chos=deb13", ". /etc/os-release; echo os=$VERSION_ID chos=$CHOS; exit 3",
               user=uge_user.pw_name)
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert "os=13 chos=deb13" in p.stdout, (p.stdout, p.stderr)
    assert re.search(r"^os=", p.stdout, re.M)
    gc_until_released(uge_site)
