"""The decision cache and shared views through the PAM module (#13), with a real sshd.

A login whose inputs (user, groups, CHOS, ~/.chos, the policy file, the tree's owners and modes,
the session's mount namespace) are those of an earlier login on the host, all unchanged, gets its
environment from the cache: no resolver at open (the admin log says `by=cache`), its view bound
from the host's shared one, and close_session releases the pin in C. Every input change is
honoured on the very next login."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pamlib import PAM_USER as TEST_USER, RESOLVER, module_args, pins, wait_no_pins
from testlib import mount_table

pytestmark = pytest.mark.pam

SHOW = 'head -1 /etc/os-release; echo "CHOS=$CHOS"'


def write_chos(home: Path, pw, name: str) -> None:
    (home / ".chos").write_text(name + "\n")
    os.chown(home / ".chos", pw.pw_uid, pw.pw_gid)


def log_lines(site_dir) -> list:
    log = site_dir.root / "envsched.log"
    return log.read_text().splitlines() if log.exists() else []


def decided_since(site_dir, mark: int) -> list:
    return [ln for ln in log_lines(site_dir)[mark:] if "event=decided job=pam/" in ln]


@pytest.fixture
def warm(site_dir):
    """A policy with shared views kept warm (view_hold = 600); afterwards the warm views let go
    (`envsched gc --idle-views`): the host mount table is checked after every test."""
    policy = site_dir.policy(site="view_hold = 600", body="""
[environments.sl5]
path = "/nonexistent-never-used"
allow_users = ["root"]
""")
    yield policy
    wait_no_pins(site_dir.run_dir)
    r = subprocess.run([RESOLVER, "--policy", str(policy), "gc", "--idle-views"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout
    views = site_dir.run_dir / ".views"
    assert not views.exists() or list(views.iterdir()) == []


def login(sshd, site_dir):
    mark = len(log_lines(site_dir))
    r = sshd.ssh(TEST_USER, SHOW)
    assert wait_no_pins(site_dir.run_dir) == []
    return r, decided_since(site_dir, mark)


def test_second_login_comes_from_the_cache(sshd, site_dir, warm, pam_user, pam_home):
    sshd.service.write(module_args(warm, site_dir.run_dir, f"log_file={site_dir.root}/envsched.log"))
    write_chos(pam_home, pam_user, "deb13")
    first, d1 = login(sshd, site_dir)
    second, d2 = login(sshd, site_dir)
    for r in (first, second):
        assert r.returncode == 0 and r.stdout.splitlines() == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13"], \
            (r.stdout, r.stderr, sshd.log()[-2000:])
    assert len(d1) == 1 and not d1[0].endswith("by=cache"), d1
    assert len(d2) == 1 and d2[0].endswith("by=cache") and f"user={TEST_USER} env=deb13 " in d2[0], d2
    # released in C at close_session: one line, and no resolver release
    assert any(re.search(rf"event=released key=pam-{pam_user.pw_uid}-\d+$", ln) for ln in log_lines(site_dir))


@pytest.mark.parametrize("change", ["user_file", "policy"])
def test_an_input_change_is_honoured_on_the_next_login(sshd, site_dir, warm, pam_user, pam_home, change):
    sshd.service.write(module_args(warm, site_dir.run_dir, f"log_file={site_dir.root}/envsched.log"))
    write_chos(pam_home, pam_user, "deb13")
    login(sshd, site_dir)
    r, d = login(sshd, site_dir)
    assert r.returncode == 0 and d[-1].endswith("by=cache"), (r.stdout, d)
    original = warm.read_text()
    if change == "user_file":
        write_chos(pam_home, pam_user, "sl5")                  # root's only: refused
        want = "envsched: environment 'sl5'"
    else:
        warm.write_text(original.replace("[environments.deb13]\n", "[environments.deb13]\nenabled = false\n"))
        want = "envsched: environment 'deb13'"
    try:
        r, d = login(sshd, site_dir)
    finally:
        warm.write_text(original)
    assert r.returncode != 0 and "CHOS=" not in r.stdout, (r.stdout, r.stderr)
    assert want in r.stdout + r.stderr, (r.stdout, r.stderr)      # sshd sends pam_error's line on stdout
    assert not any(ln.endswith("by=cache") for ln in d), d


def test_cache_off(sshd, site_dir, warm, pam_user, pam_home):
    """cache=0 (site.decision_cache = false): every login is the resolver's, no shared view."""
    sshd.service.write(module_args(warm, site_dir.run_dir, f"log_file={site_dir.root}/envsched.log cache=0"))
    write_chos(pam_home, pam_user, "deb13")
    for _ in range(2):
        r, d = login(sshd, site_dir)
        assert r.returncode == 0 and "CHOS=deb13" in r.stdout, (r.stdout, r.stderr)
        assert len(d) == 1 and not d[0].endswith("by=cache"), d
    views = site_dir.run_dir / ".views"
    assert not views.exists() or list(views.iterdir()) == []


@pytest.mark.parametrize("point", ["cache-bound", "cache-files"])
def test_cache_child_killed_half_way_the_login_still_works(sshd, site_dir, warm, pam_user, pam_home, point,
                                                           fault_report):
    with fault_report.case(f"PAM cache child kill -9 at {point}", "pam") as row:
        row.jobs += 3
        row.faults[f"kill -9 at {point}"] += 1
        _cache_child_killed(sshd, site_dir, warm, pam_user, pam_home, point)
        row.leftovers = len(_leftovers(site_dir, warm))


def _leftovers(site_dir, policy) -> list:
    """What `envsched gc` leaves of the logins: pins, and references to the warm shared views
    (the views themselves are kept warm on purpose: view_hold = 600, let go by the fixture)."""
    r = subprocess.run([RESOLVER, "--policy", str(policy), "gc"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    assert r.returncode == 0, r.stdout
    views = site_dir.run_dir / ".views"
    refs = [f"{v.name}/refs/{ref.name}" for v in views.iterdir() for ref in (v / "refs").iterdir()] \
        if views.exists() else []
    return pins(site_dir.run_dir) + refs


def _cache_child_killed(sshd, site_dir, warm, pam_user, pam_home, point):
    """kill -9 of the decision cache's child (plugins/common/es_cache.c) with the session's pin half
    made (the shared view bound onto it; its files written but not `shim`): the module takes the
    pin apart, the resolver decides, the login lands in the right environment, nothing is left,
    and the next login is the cache's again. The kill comes from a fault point, switched on by a
    root-only file (plugins/common/es_fault.c)."""
    sshd.service.write(module_args(warm, site_dir.run_dir, f"log_file={site_dir.root}/envsched.log"))
    write_chos(pam_home, pam_user, "deb13")
    login(sshd, site_dir)
    faults = site_dir.run_dir / ".faults"
    faults.write_text(point + "\n")
    faults.chmod(0o600)
    try:
        r, d = login(sshd, site_dir)
    finally:
        faults.unlink()
    assert r.returncode == 0 and r.stdout.splitlines() == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13"], \
        (r.stdout, r.stderr, sshd.log()[-2000:])
    assert len(d) == 1 and not d[0].endswith("by=cache"), d          # the resolver's, after the kill
    views = [p for p in (site_dir.run_dir / ".views").iterdir()]
    deadline = time.monotonic() + 10                 # close_session drops the reference after the pin
    while len(views) == 1 and list((views[0] / "refs").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(views) == 1 and list((views[0] / "refs").iterdir()) == [], views   # no reference left
    r, d = login(sshd, site_dir)
    assert r.returncode == 0 and len(d) == 1 and d[0].endswith("by=cache"), (r.stdout, d)


def test_session_process_killed(sshd, site_dir, warm, pam_user, pam_home, fault_report):
    """kill -9 of the login's session process (sshd's root monitor, which opened the session, owns
    the pin and would close it): close_session never runs; the pin and its reference to the shared
    view are released by `envsched gc` (the owner is gone), the next login works from the cache,
    nothing is left."""
    sshd.service.write(module_args(warm, site_dir.run_dir, f"log_file={site_dir.root}/envsched.log"))
    write_chos(pam_home, pam_user, "deb13")
    with fault_report.case("PAM session process kill -9", "pam") as row:
        before = mount_table()
        login(sshd, site_dir)                           # the cache entry and the warm view
        row.jobs += 1
        ssh = subprocess.Popen(["ssh", "-i", str(sshd.root / "client_key"), "-p", str(sshd.port), "-o", "BatchMode=yes",
                                "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={os.devnull}",
                                "-o", "LogLevel=ERROR", "-F", os.devnull, f"{TEST_USER}@127.0.0.1",
                                "echo in; exec sleep 60"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        row.jobs += 1
        session = []
        try:
            assert ssh.stdout.readline().strip() == "in"
            [pin] = pins(site_dir.run_dir)
            owner = json.loads((site_dir.run_dir / pin / "meta.json").read_text())["owner_pid"]
            assert "[priv]" in Path(f"/proc/{owner}/cmdline").read_bytes().decode()
            # the session's own processes (the user's sleep), to end them by pid afterwards
            session = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_session_sleep(int(p), pam_user.pw_uid)]
            os.kill(owner, signal.SIGKILL)
            row.faults["sshd session monitor kill -9"] += 1
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{owner}") and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            ssh.kill()
            ssh.wait()
            for pid in session:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        assert pins(site_dir.run_dir) == [pin]          # nobody closed the session
        mark = len(log_lines(site_dir))                 # the next login: the cache's, in deb13
        r = sshd.ssh(TEST_USER, SHOW)
        deadline = time.monotonic() + 10                # its own pin gone at its close
        while pins(site_dir.run_dir) != [pin] and time.monotonic() < deadline:
            time.sleep(0.05)
        d = decided_since(site_dir, mark)
        row.jobs += 1
        right = r.returncode == 0 and r.stdout.splitlines() == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13"]
        row.wrong_env += r.returncode == 0 and not right
        assert right and d and d[-1].endswith("by=cache"), (r.stdout, r.stderr, d)
        left = _leftovers(site_dir, warm)               # gc: the dead owner's pin and its reference
        row.leftovers = len(left)
        assert not left, left
        views = site_dir.run_dir / ".views"
        subprocess.run([RESOLVER, "--policy", str(warm), "gc", "--idle-views"], check=True, stdout=subprocess.DEVNULL)
        assert (not views.exists() or not list(views.iterdir())) and mount_table() == before, mount_table()


def _is_session_sleep(pid: int, uid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid == uid and Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0060\x00"
    except OSError:
        return False


@pytest.mark.parametrize("point", ["release-c-unmounted", "release-c-unref"])
def test_close_session_killed_half_way_through_the_release(sshd, site_dir, warm, pam_user, pam_home, point,
                                                           fault_report):
    """kill -9 of sshd's monitor in close_session, half way through the release in C
    (plugins/common/es_release.c: the pin's namespace detached; its shared view's reference
    dropped, the pin's files still there): the login's command had run in its environment, the
    next login works from the cache, gc takes the rest apart, nothing is left."""
    sshd.service.write(module_args(warm, site_dir.run_dir, f"log_file={site_dir.root}/envsched.log"))
    write_chos(pam_home, pam_user, "deb13")
    with fault_report.case(f"PAM close_session kill -9 at {point}", "pam") as row:
        before = mount_table()
        login(sshd, site_dir)
        row.jobs += 1
        faults = site_dir.run_dir / ".faults"
        faults.write_text(point + "\n")
        faults.chmod(0o600)
        try:
            r = sshd.ssh(TEST_USER, SHOW)
            row.jobs += 1
            row.faults[f"kill -9 at {point}"] += 1
            deadline = time.monotonic() + 10             # the monitor killed at its close
            while not [p for p in pins(site_dir.run_dir) if not _mounted(site_dir.run_dir / p / "mnt")] \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
        finally:
            faults.unlink()
        right = r.stdout.splitlines()[:2] == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13"]
        row.wrong_env += "PRETTY_NAME" in r.stdout and not right
        assert right, (r.returncode, r.stdout, r.stderr)
        [half] = pins(site_dir.run_dir)                  # the release never finished
        mark = len(log_lines(site_dir))
        r = sshd.ssh(TEST_USER, SHOW)                    # the next login: the cache's, in deb13
        row.jobs += 1
        deadline = time.monotonic() + 10
        while pins(site_dir.run_dir) != [half] and time.monotonic() < deadline:
            time.sleep(0.05)
        d = decided_since(site_dir, mark)
        right = r.returncode == 0 and r.stdout.splitlines() == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13"]
        row.wrong_env += r.returncode == 0 and not right
        assert right and d and d[-1].endswith("by=cache"), (r.stdout, r.stderr, d)
        left = _leftovers(site_dir, warm)
        row.leftovers = len(left)
        assert not left, left
        subprocess.run([RESOLVER, "--policy", str(warm), "gc", "--idle-views"], check=True, stdout=subprocess.DEVNULL)
        assert mount_table() == before


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)
