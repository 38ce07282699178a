"""Jobs in their environment, end to end on a real Grid Engine: `qsub -l chos=NAME`, `#$ -l chos=`,
the CHOS variable, ~/.chos, the site default; script and binary jobs, qrsh, array and parallel
jobs; what the payload saw (os-release, CHOS, uid, cwd, TMPDIR); refusals at start; exit codes;
qdel; no pin left afterwards. The cluster is configured from `envsched site-config render`."""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from ugesite import envsched_cmd

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
    deadline = time.monotonic() + 10      # the epilog releases it, no gc (which would hide a miss)
    while uge_site.pins() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uge_site.pins() == []
    assert f"event=released key=uge-{job}.1\n" in uge_site.admin_log.read_text()


def test_qrsh_command(uge_site, uge_user):
    c = uge_site.cluster
    p = c.qrsh("-l", "chos=deb13", ". /etc/os-release; echo os=$VERSION_ID chos=$CHOS; exit 3",
               user=uge_user.pw_name)
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert "os=13 chos=deb13" in p.stdout, (p.stdout, p.stderr)
    assert re.search(r"^os=", p.stdout, re.M)
    gc_until_released(uge_site)


def test_chos_variable(uge_site, uge_user):
    c = uge_site.cluster
    job = c.qsub(PROBE, "-v", "CHOS=deb13", user=uge_user.pw_name)
    c.wait(job)
    assert seen(c.output(job))["os"] == "13"


def test_user_file(uge_site, uge_user):
    c = uge_site.cluster
    dot = Path(uge_user.pw_dir) / ".chos"
    dot.write_text("deb13\n")
    os.chown(dot, uge_user.pw_uid, uge_user.pw_gid)
    try:
        job = c.qsub(PROBE, user=uge_user.pw_name)
        c.wait(job)
        assert seen(c.output(job))["chos"] == "deb13"
        job = c.qsub(PROBE, "-l", "chos=deb12", user=uge_user.pw_name)    # the option beats ~/.chos
        c.wait(job)
        assert seen(c.output(job))["chos"] == "deb12"
    finally:
        dot.unlink()


def test_root_job(uge_site):
    c = uge_site.cluster
    job = c.qsub(PROBE, "-l", "chos=sl5")            # sl5 is root's alone (the deb12 tree)
    c.wait(job)
    got = seen(c.output(job))
    assert (got["os"], got["chos"], got["uid"]) == ("12", "sl5", "0"), got


def test_array_job(uge_site, uge_user):
    c = uge_site.cluster
    job = c.qsub(PROBE.replace('tmp=', 'task=$SGE_TASK_ID tmp='), "-t", "1-3", "-l", "chos=deb13",
                 user=uge_user.pw_name)
    c.wait(job)
    out = "".join(p.read_text() for p in sorted((c.dir / "out").glob(f"*.o{job}.*")))
    tasks = sorted(dict(kv.split("=", 1) for kv in ln.split())["task"] for ln in out.splitlines()
                   if ln.startswith("os=13 chos=deb13"))
    assert tasks == ["1", "2", "3"], out


def test_qdel_running_job(uge_site, uge_user):
    c = uge_site.cluster
    job = c.qsub("#!/bin/sh\necho started\nsleep 300\n", "-l", "chos=deb13", user=uge_user.pw_name)
    deadline = time.monotonic() + 30
    out = c.dir / "out"
    while not any("started" in p.read_text() for p in out.glob(f"*.o{job}")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"uge-{job}.1" in uge_site.pins()
    assert c.run(["qdel", job]).returncode == 0
    c.wait(job)
    deadline = time.monotonic() + 10
    while f"uge-{job}.1" in uge_site.pins() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"event=released key=uge-{job}.1\n" in uge_site.admin_log.read_text()   # by the epilog


def test_refused_at_start_when_policy_changed(uge_site, uge_user):
    """Accepted at submit, the policy then disables deb13: the job fails closed with one line."""
    c = uge_site.cluster
    job = c.qsub(PROBE, "-h", "-l", "chos=deb13", user=uge_user.pw_name)
    original = uge_site.policy.read_text()
    uge_site.policy.write_text(original.replace('[environments.deb13]\n',
                                                '[environments.deb13]\nenabled = false\n'))
    try:
        c.run(["qrls", job])
        acct = c.wait(job)
    finally:
        uge_site.policy.write_text(original)
    out = c.output(job)
    assert acct.exit_status == 77, (acct.fields, out)          # ExitCode.REFUSED
    assert "os=" not in out                                    # the payload never ran
    assert re.search(r"^envsched: environment 'deb13' \(option\) refused: .*allowed for you: ", out, re.M), out
    refused = [ln for ln in uge_site.admin_log.read_text().splitlines()
               if f"event=refused job={job}.1 user={uge_user.pw_name} " in ln]
    assert refused and "deb13" in refused[0] and "disabled by the site" in refused[0], refused


def test_unprivileged_mode(uge_site, uge_user):
    """user.q runs the user-namespace starter: same environment, no pin, no set-user-ID program."""
    from ugesite import UNPRIVILEGED_QUEUE
    c = uge_site.cluster
    job = c.qsub(PROBE, "-q", UNPRIVILEGED_QUEUE, "-l", "chos=deb13", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    assert acct["qname"] == UNPRIVILEGED_QUEUE
    got = seen(c.output(job))
    assert got == {"os": "13", "chos": "deb13", "uid": str(uge_user.pw_uid), "cwd": uge_user.pw_dir,
                   "tmp": "set"}, (got, c.output(job))
    log = uge_site.admin_log.read_text() if uge_site.admin_log.exists() else ""
    assert f"key=uge-{job}." not in log and uge_site.pins() == []      # nothing was pinned
    job = c.qsub("#!/bin/sh\nexit 9\n", "-q", UNPRIVILEGED_QUEUE, user=uge_user.pw_name)
    assert c.wait(job).exit_status == 9
