"""The decision cache and shared views through the real Grid Engine integration (#13).

The root prolog is C (plugins/uge/starter/prolog.c): it identifies the job as the starter does,
reads the request from execd's `environment`, and prepares the job's pin from the node's decision
cache when an earlier job's inputs (owner, groups, request, ~/.chos, queue, the policy file, the
tree's owners and modes) all still hold: no Python (the admin log says `by=cache`). Otherwise the
resolver decides. The set-user-ID starter does the same for jobs that ran no prolog (qrsh).
Every input change is honoured on the very next job: the cache never widens what the policy allows.
Jobs whose input changes are submitted held and released after the change, so the JSV's check at
submission (which would refuse first) does not hide the node's."""
from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager

import subprocess

import pytest
from test_uge_chos import PROBE, seen
from ugesite import INTERACTIVE_QUEUE, envsched_cmd

pytestmark = pytest.mark.uge


@pytest.fixture(autouse=True)
def warm_views(uge_site):
    """Shared views kept warm between jobs (view_hold = 600; the other tests' policy lets each go
    with its last job, which makes every next job a miss); afterwards the warm views let go
    (`envsched gc --idle-views`) and the policy as it was."""
    original = uge_site.policy.read_text()
    uge_site.policy.write_text(original.replace("view_hold = 0\n", "view_hold = 600\n", 1))
    yield
    deadline = time.monotonic() + 20
    while [p for p in uge_site.pins() if not p.startswith(".views/")] and time.monotonic() < deadline:
        time.sleep(0.1)
    r = subprocess.run([envsched_cmd(), "--policy", str(uge_site.policy), "gc", "--idle-views"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout
    uge_site.policy.write_text(original)
    assert uge_site.pins() == []


def decided(site, job: str) -> list:
    """The admin log's decision lines for the job (its first task)."""
    return [ln for ln in site.admin_log.read_text().splitlines() if f"event=decided job={job}.1 " in ln]


def by_cache(site, job: str) -> bool:
    lines = decided(site, job)
    assert lines, f"no decision logged for job {job}"
    return lines[-1].endswith("by=cache")


def run(site, user, *args, script=PROBE, cwd=None):
    c = site.cluster
    job = c.qsub(script, *args, user=user.pw_name, cwd=cwd)
    acct = c.wait(job)
    return job, acct, c.output(job)


def warm_up(site, user, *args, cwd=None) -> None:
    """Two jobs with the same inputs: the second comes from the cache."""
    for _ in range(2):
        job, acct, out = run(site, user, *args, cwd=cwd)
        assert acct.exit_status == 0 and seen(out)["os"] in ("12", "13"), (acct.fields, out)
    assert by_cache(site, job), decided(site, job)


def held_then_released(site, user, change, *args):
    """Submit held, apply `change` (a context manager), release, wait: (job, acct, output)."""
    c = site.cluster
    job = c.qsub(PROBE, "-h", *args, user=user.pw_name)
    with change():
        c.run(["qrls", job])
        acct = c.wait(job)
    return job, acct, c.output(job)


@contextmanager
def policy_edit(site, old: str, new: str):
    original = site.policy.read_text()
    assert old in original
    site.policy.write_text(original.replace(old, new, 1))
    try:
        yield
    finally:
        site.policy.write_text(original)


@contextmanager
def user_file(user, text):
    path = os.path.join(user.pw_dir, ".chos")
    with open(path, "w") as f:
        f.write(text)
    os.chown(path, user.pw_uid, user.pw_gid)
    try:
        yield
    finally:
        os.unlink(path)


def test_warm_job_comes_from_the_cache(uge_site, uge_user):
    """The second job with the same inputs: no resolver, the same environment, one shared view."""
    job1, acct, out = run(uge_site, uge_user, "-l", "chos=deb13", cwd=uge_user.pw_dir)
    job2, acct2, out2 = run(uge_site, uge_user, "-l", "chos=deb13", cwd=uge_user.pw_dir)
    assert (acct2.exit_status, seen(out2)) == (0, seen(out)) and seen(out2)["os"] == "13", (acct2.fields, out2)
    assert by_cache(uge_site, job2), decided(uge_site, job2)
    line = decided(uge_site, job2)[-1]
    assert f"user={uge_user.pw_name} env=deb13 " in line and "scheduler=uge" in line, line


def test_policy_edit_is_honoured_on_the_next_job(uge_site, uge_user):
    warm_up(uge_site, uge_user, "-l", "chos=deb13")
    job, acct, out = held_then_released(
        uge_site, uge_user,
        lambda: policy_edit(uge_site, "[environments.deb13]\n", "[environments.deb13]\nenabled = false\n"),
        "-l", "chos=deb13")
    assert acct.exit_status == 77 and "os=" not in out, (acct.fields, out)
    assert re.search(r"^envsched: environment 'deb13' \(option\) refused: ", out, re.M), out


def test_user_file_change_is_honoured_on_the_next_job(uge_site, uge_user):
    """~/.chos says deb13 (cached), then sl5 (root's only): the next job is refused, not run in deb13."""
    with user_file(uge_user, "deb13\n"):
        warm_up(uge_site, uge_user)
        job, acct, out = held_then_released(uge_site, uge_user, lambda: user_file_swap(uge_user, "sl5\n"))
    assert acct.exit_status == 77 and "os=" not in out, (acct.fields, out)
    assert "envsched: environment 'sl5'" in out, out


@contextmanager
def user_file_swap(user, text):
    path = os.path.join(user.pw_dir, ".chos")
    old = open(path).read()
    with open(path, "w") as f:
        f.write(text)
    try:
        yield
    finally:
        with open(path, "w") as f:
            f.write(old)


def test_tree_made_writable_is_honoured_on_the_next_job(uge_site, uge_user):
    warm_up(uge_site, uge_user, "-l", "chos=deb13")
    tree = re.search(r'\[environments\.deb13\]\npath = "([^"]+)"', uge_site.policy.read_text()).group(1)
    mode = os.stat(tree).st_mode & 0o7777

    @contextmanager
    def writable():
        os.chmod(tree, mode | 0o002)
        try:
            yield
        finally:
            os.chmod(tree, mode)

    job, acct, out = held_then_released(uge_site, uge_user, writable, "-l", "chos=deb13")
    assert acct.exit_status != 0 and "os=" not in out, (acct.fields, out)
    assert "envsched:" in out and "writable" in out, out
    assert not by_cache(uge_site, job) if decided(uge_site, job) else True


def test_qrsh_starter_uses_the_cache(uge_site, uge_user):
    """qrsh runs no prolog: the set-user-ID starter tries the cache before the resolver."""
    c = uge_site.cluster
    for _ in range(2):
        p = c.qrsh("-q", INTERACTIVE_QUEUE, "-l", "chos=deb13", ". /etc/os-release; echo os=$VERSION_ID job=$JOB_ID",
                   user=uge_user.pw_name)
        assert p.returncode == 0 and "os=13" in p.stdout, (p.stdout, p.stderr)
    job = re.search(r"job=(\d+)", p.stdout).group(1)
    assert by_cache(uge_site, job), decided(uge_site, job)
    # no epilog in that queue: `envsched gc` collects the pins (the warm view stays, for the fixture)
    deadline = time.monotonic() + 15
    while [p for p in uge_site.pins() if not p.startswith(".views/")] and time.monotonic() < deadline:
        subprocess.run([envsched_cmd(), "--policy", str(uge_site.policy), "gc"], stdout=subprocess.DEVNULL)
        time.sleep(0.1)


def test_cache_off_in_the_configuration(uge_site, uge_user):
    """cache=0 in uge-starter.conf (site.decision_cache = false): every job is the resolver's."""
    conf = uge_site.libexec / "uge-starter.conf"
    original = conf.read_text()
    conf.write_text(original + "cache=0\n")
    try:
        for _ in range(2):
            job, acct, out = run(uge_site, uge_user, "-l", "chos=deb13")
            assert acct.exit_status == 0 and seen(out)["os"] == "13", (acct.fields, out)
            assert not by_cache(uge_site, job), decided(uge_site, job)
    finally:
        conf.write_text(original)
    deadline = time.monotonic() + 10
    while f"uge-{job}.1" in uge_site.pins() and time.monotonic() < deadline:
        time.sleep(0.05)
