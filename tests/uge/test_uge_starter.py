"""The set-user-ID starter (plugins/uge/starter) refuses everything but its one job: it must be
started by a root sge_shepherd, be installed set-user-ID root with a root-owned configuration,
and it joins only a pin recorded for its real uid."""
from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
from ugesite import envsched_cmd

pytestmark = pytest.mark.uge


def run_as(user, argv, cwd="/"):
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--",
                           *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "JOB_ID": "1", "SGE_TASK_ID": "undefined"})


def test_not_started_by_grid_engine(uge_site, uge_user):
    p = run_as(uge_user, [str(uge_site.libexec / "uge-starter"), "/bin/id"])
    assert p.returncode == 73, p
    assert p.stderr.startswith("envsched: not started by Grid Engine (parent "), p.stderr
    assert p.stdout == ""


@pytest.fixture
def copy_dir(uge_site):
    d = uge_site.cluster.dir / f"starter-{uuid.uuid4().hex[:6]}"
    d.mkdir(mode=0o755)
    yield d
    shutil.rmtree(d)


def test_configuration_must_be_roots(uge_site, uge_user, copy_dir):
    starter = copy_dir / "uge-starter"
    shutil.copy(uge_site.libexec / "uge-starter", starter)
    starter.chmod(0o4755)
    conf = copy_dir / "uge-starter.conf"
    conf.write_text((uge_site.libexec / "uge-starter.conf").read_text())
    conf.chmod(0o664)                                    # group-writable: untrusted
    p = run_as(uge_user, [str(starter), "/bin/id"])
    assert p.returncode == 78 and f"{conf}: must be owned by root and not writable by group or others" in p.stderr
    conf.chmod(0o644)
    conf.write_text(conf.read_text() + "shell=/bin/sh\n")
    p = run_as(uge_user, [str(starter), "/bin/id"])
    assert p.returncode == 78 and f"{conf}:" in p.stderr and "unknown key 'shell'" in p.stderr, p.stderr
    conf.unlink()
    p = run_as(uge_user, [str(starter), "/bin/id"])
    assert p.returncode == 78 and "No such file or directory" in p.stderr, p.stderr


def test_must_be_setuid_root(uge_site, uge_user, copy_dir):
    starter = copy_dir / "uge-starter"
    shutil.copy(uge_site.libexec / "uge-starter", starter)
    starter.chmod(0o755)
    p = run_as(uge_user, [str(starter), "/bin/id"])
    assert p.returncode == 73 and "is not installed set-user-ID root" in p.stderr, p.stderr


def test_pin_of_another_user_is_not_joined(uge_site, uge_user):
    """A pin under the job's key but recorded for root: the job fails closed, never runs."""
    c = uge_site.cluster
    job = c.qsub("#!/bin/sh\necho payload ran\n", "-h", "-l", "chos=deb13", user=uge_user.pw_name)
    key = f"uge-{job}.1"
    holder = subprocess.Popen(["sleep", "300"])
    try:
        subprocess.run([envsched_cmd(), "--policy", str(uge_site.policy), "prepare", "--key", key, "--user", "root",
                        "--request=deb13", "--owner-pid", str(holder.pid), "--inputs=x"], check=True,
                       stdout=subprocess.DEVNULL)
        c.run(["qrls", job])
        acct = c.wait(job)
        out = c.output(job)
        assert acct.exit_status == 73, (acct.fields, out)
        assert "payload ran" not in out
        assert f"envsched: the job's environment was prepared for uid 0, not for {uge_user.pw_uid}" in out, out
    finally:
        holder.kill()
        holder.wait()
        subprocess.run([envsched_cmd(), "--policy", str(uge_site.policy), "release", "--key", key, "--quiet"])
