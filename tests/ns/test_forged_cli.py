"""Forged inputs of the resolver's commands as root (`envsched prepare | join | release | gc | exec`),
the way the shims run them, and the same commands started by an unprivileged user: what each reads,
where it may come from, and that nothing else is believed (see tests/ns/test_hostile.py for ~/.chos,
requests and policy files).

  --user, --request/--chos-var, --partition/--account, --job, --key, --owner-pid, --bind, --inputs,
  --policy: argv, from the shim (root), built from the kernel's uid and the scheduler's values;
  ENVSCHED_POLICY, HOME, USER, LOGNAME, CHOS: the environment, never an identity or a path as root;
  ~/.chos: read as the user, from the passwd entry's home; the user's groups: NSS.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from testlib import TEST_USER, mount_table

pytestmark = pytest.mark.ns

MARK = "PAYLOAD-STARTED"


def _refused(r, code, *needles):
    assert MARK not in r.stdout
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("envsched: ")
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _entries(path: Path) -> list:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


@pytest.fixture(autouse=True)
def no_forged_pin_stays(site_dir, envsched_cmd):
    """Should a refusal here regress into a prepared pin, it is released before the host mount
    guard (tests/conftest.py) looks: the test fails on its own assertions, nothing leaks."""
    yield
    for key in _entries(site_dir.run_dir):
        if key.startswith("forged"):
            envsched_cmd("--policy", str(site_dir.policy(name="cleanup.toml")), "release", "--key", key, "--quiet")


@pytest.fixture
def scratch(site_dir):
    """A root-owned 0755 directory in the session's site directory (a trusted chain), removed after."""
    d = site_dir.root / f"forged-{uuid.uuid4().hex[:8]}"
    d.mkdir(mode=0o755)
    yield d
    subprocess.run(["umount", "-R", "-l", str(d)], stderr=subprocess.DEVNULL)
    shutil.rmtree(d, ignore_errors=True)


def _user_dir(parent: Path, pw, name: str = "mine", mode: int = 0o755) -> Path:
    d = parent / name
    d.mkdir(mode=mode)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


# --- an unprivileged caller cannot make root do anything ---------------------------------------
@pytest.mark.parametrize("args", [
    ("prepare", "--key", "forged-1", "--user", TEST_USER, "--request", "deb13"),
    ("prepare", "--key", "forged-2", "--user", "root", "--request", "deb13", "--owner-pid", "1"),
    ("prepare", "--key", "forged-3", "--user", TEST_USER, "--bind", "/etc"),
    ("prepare", "--key", "forged-4", "--user", TEST_USER, "--request", "local", "--record-local"),
    ("join", "--key", "forged-1", "--user", "root", "--", "sh", "-c", f"echo {MARK}"),
    ("release", "--key", "forged-1"),
    ("release", "--key", "forged", "--with-steps"),
    ("gc",),
    ("pins",),
    ("exec", "--user", "root", "--", "sh", "-c", f"echo {MARK}"),
])
def test_forged_root_commands_as_an_unprivileged_user(site_dir, envsched_cmd, home, args):
    """The user runs the resolver themselves (it is not set-user-ID: it runs as them): every command
    that acts as root refuses first, before reading the policy, and nothing appears under run_dir."""
    policy = site_dir.policy()
    before = _entries(site_dir.run_dir)
    r = envsched_cmd("--policy", str(policy), *args, user=TEST_USER)
    line = _refused(r, 73, "needs root")
    assert line.startswith(f"envsched: envsched {args[0]} needs root") or "--bind needs root" in line
    assert _entries(site_dir.run_dir) == before


def test_forged_root_pins_survive_an_unprivileged_release_and_gc(site_dir, envsched_cmd, home):
    """A pin root made is not released by the user's `release` or `gc` (they are refused); the user
    cannot reach it by joining either."""
    policy = site_dir.policy()
    owner = subprocess.Popen(["sleep", "600"])
    try:
        r = envsched_cmd("--policy", str(policy), "prepare", "--key", "forged-keep", "--user", TEST_USER,
                         "--request", "deb13", "--owner-pid", str(owner.pid))
        assert r.returncode == 0, r.stderr
        owner.kill()
        owner.wait()                                     # stale now: only root's gc may take it
        for args in (("release", "--key", "forged-keep"), ("gc",),
                     ("join", "--key", "forged-keep", "--", "sh", "-c", f"echo {MARK}")):
            _refused(envsched_cmd("--policy", str(policy), *args, user=TEST_USER), 73, "needs root")
            assert (site_dir.run_dir / "forged-keep" / "mnt").exists()
    finally:
        owner.kill()
        envsched_cmd("--policy", str(policy), "release", "--key", "forged-keep")
    assert not (site_dir.run_dir / "forged-keep").exists()


# --- the environment is not believed as root -------------------------------------------------
def test_forged_envsched_policy_is_ignored_as_root(site_dir, envsched_cmd, home, test_user, scratch):
    """ENVSCHED_POLICY names a permissive policy the user wrote: root never reads it (no --policy:
    the default path, /etc/envsched/policy.toml), while the user's own unprivileged run honours it."""
    mine = _user_dir(scratch, test_user)
    forged = mine / "policy.toml"
    forged.write_text(f'[site]\ndefault = "forged"\n[environments.forged]\npath = "{site_dir.envs["deb13"]}"\n')
    os.chown(forged, test_user.pw_uid, test_user.pw_gid)
    r = envsched_cmd("exec", "--user", TEST_USER, "--request", "forged", "--", "sh", "-c", f"echo {MARK}",
                     env={"ENVSCHED_POLICY": str(forged)})
    assert MARK not in r.stdout and r.returncode in (77, 78), (r.returncode, r.stderr)
    assert str(forged) not in r.stderr
    assert "/etc/envsched/policy.toml" in r.stderr or "no such environment" in r.stderr
    # as the user (advisory path), the same variable is used: the difference is root
    r = envsched_cmd("validate", "--user", TEST_USER, "--request", "forged", "--print",
                     env={"ENVSCHED_POLICY": str(forged)}, user=TEST_USER)
    assert (r.returncode, r.stdout.strip()) == (0, "forged"), r.stderr


def test_forged_home_user_logname_and_chos_variables_as_root(site_dir, envsched_cmd, home, test_user, scratch):
    """HOME, USER and LOGNAME of root's environment say nothing about the job: ~/.chos is read from the
    passwd entry's home, the payload runs as --user with that user's HOME. CHOS in root's environment
    yields to the shim's --chos-var, and is a request (checked for the uid) either way."""
    fake = _user_dir(scratch, test_user, "fakehome")
    (fake / ".chos").write_text("deb13\n")
    os.chown(fake / ".chos", test_user.pw_uid, test_user.pw_gid)
    policy = site_dir.policy(body=f'[environments.secret]\npath = "{site_dir.envs["deb13"]}"\n'
                                  f'deny_users = ["{TEST_USER}"]\n')
    show = 'echo "$CHOS $(id -u) $HOME $USER $LOGNAME"'
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--", "sh", "-c", show,
                     env={"HOME": str(fake), "USER": "root", "LOGNAME": "root"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["deb12", str(test_user.pw_uid), test_user.pw_dir, TEST_USER, TEST_USER]
    # --chos-var (what every shim passes) wins over CHOS in the resolver's own environment
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--chos-var=deb13", "--",
                     "sh", "-c", show, env={"CHOS": "secret"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "deb13"
    # and a CHOS the policy denies this uid is refused wherever it comes from
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--", "sh", "-c", f"echo {MARK}",
                     env={"CHOS": "secret"})
    _refused(r, 77, "environment 'secret' (CHOS variable) refused", f"user {TEST_USER} is denied")


# --- keys --------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["../forged", "../../etc/forged", "/tmp/forged", "a/b", ".forged", "-forged",
                                 "forged\nx", "x" * 65, ""])
def test_forged_key_is_refused_before_anything_is_done(site_dir, envsched_cmd, home, key, scratch):
    """A key is a name, never a path: prepare (also as --fallback-key), join and release refuse it
    with exit 64 before the policy, ~/.chos or run_dir are touched."""
    policy = site_dir.policy()
    job = f"forged-{uuid.uuid4().hex[:8]}"
    before = _entries(site_dir.run_dir), _entries(site_dir.root)
    for args in (("prepare", f"--key={key}", "--user", TEST_USER, "--request", "deb13", "--job", job,
                  "--owner-pid", str(os.getpid())),
                 ("prepare", "--key", "forged-ok", f"--fallback-key={key}", "--user", TEST_USER, "--request",
                  "deb13", "--job", job, "--owner-pid", str(os.getpid())),
                 ("join", f"--key={key}", "--user", TEST_USER, "--", "sh", "-c", f"echo {MARK}"),
                 ("release", f"--key={key}")):
        _refused(envsched_cmd("--policy", str(policy), *args), 64, "invalid pin key")
    assert (_entries(site_dir.run_dir), _entries(site_dir.root)) == before
    log = site_dir.root / "envsched.log"
    assert job not in (log.read_text() if log.exists() else "")      # not even decided


# --- the owner process -------------------------------------------------------------------------
def test_forged_owner_pid_of_another_users_process(site_dir, envsched_cmd, home, test_user):
    """The owner only decides how long the pin lives. A process of another user (here nobody's) as
    owner: the pin is still the job user's (joined only for them), kept while that process lives
    (pid and start time), collected by gc once it is gone."""
    policy = site_dir.policy()
    other = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                              "sleep", "600"])
    try:
        r = envsched_cmd("--policy", str(policy), "prepare", "--key", "forged-owner", "--user", TEST_USER,
                         "--request", "deb13", "--owner-pid", str(other.pid))
        assert r.returncode == 0, r.stderr
        meta = json.loads((site_dir.run_dir / "forged-owner" / "meta.json").read_text())
        assert (meta["owner_pid"], meta["uid"]) == (other.pid, test_user.pw_uid)
        _refused(envsched_cmd("--policy", str(policy), "join", "--key", "forged-owner", "--user", "nobody",
                              "--", "sh", "-c", f"echo {MARK}"), 73, f"prepared for {TEST_USER}, not nobody")
        r = envsched_cmd("--policy", str(policy), "join", "--key", "forged-owner", "--", "id", "-u")
        assert r.stdout.strip() == str(test_user.pw_uid), r.stderr
        assert envsched_cmd("--policy", str(policy), "gc").stdout == ""          # owner alive: kept
        other.send_signal(signal.SIGKILL)
        other.wait()
        assert envsched_cmd("--policy", str(policy), "gc").stdout.splitlines() == ["released forged-owner"]
    finally:
        other.kill()
        envsched_cmd("--policy", str(policy), "release", "--key", "forged-owner", "--quiet")


@pytest.mark.parametrize("pid", ["0", "-1", "999999999", "gone"])
def test_forged_owner_pid_that_is_no_process_is_refused(site_dir, envsched_cmd, home, pid):
    """No such process: the pin would be stale at once (gc would take it from under the job)."""
    if pid == "gone":
        p = subprocess.Popen(["true"])
        p.wait()
        pid = str(p.pid)
    before = mount_table()
    r = envsched_cmd("--policy", str(site_dir.policy()), "prepare", "--key", "forged-pid", "--user", TEST_USER,
                     "--request", "deb13", f"--owner-pid={pid}")
    _refused(r, 64, f"--owner-pid {pid}: no such process")
    assert not (site_dir.run_dir / "forged-pid").exists()
    assert mount_table() == before


# --- binds -------------------------------------------------------------------------------------
def test_forged_bind_source_in_a_user_writable_directory(site_dir, envsched_cmd, home, test_user, scratch):
    """root follows a bind source: had the user a directory on the way, they could replace the source
    by a link to a directory they cannot reach (below a 0700 parent) and read it in their view.
    Refused (exit 78, a configuration problem), before any view is built."""
    secret = scratch / "private"
    secret.mkdir(mode=0o700)
    (secret / "inner").mkdir(mode=0o755)
    (secret / "inner" / "data").write_text("ROOT-ONLY\n")
    mine = _user_dir(scratch, test_user)
    (mine / "spool").symlink_to(secret / "inner")               # the user's swap, done in advance
    os.lchown(mine / "spool", test_user.pw_uid, test_user.pw_gid)
    (mine / "real").mkdir()
    sticky = scratch / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "spool").mkdir()
    policy = site_dir.policy()
    before = mount_table()
    for source, needle in ((mine / "spool", f"{mine}: must be owned by root"),
                           (mine / "real", f"{mine}: must be owned by root"),
                           (mine / "missing", f"{mine}: must be owned by root"),     # could appear later
                           (sticky / "spool", f"{sticky}: must be owned by root")):
        r = envsched_cmd("--policy", str(policy), "prepare", "--key", "forged-bind", "--user", TEST_USER,
                         "--request", "deb13", "--owner-pid", str(os.getpid()), "--bind", f"{source}:/opt/spool")
        _refused(r, 78, f"--bind {source}: ", needle)
        assert not (site_dir.run_dir / "forged-bind").exists()
    assert mount_table() == before


def test_forged_bind_source_symlinks(site_dir, envsched_cmd, home, test_user, scratch):
    """A link on the way must be root's (in a root directory it is fixed), and where it leads is
    walked the same way: a root link into a user's directory is refused, a root link to a root
    directory is followed."""
    mine = _user_dir(scratch, test_user)
    (mine / "data").mkdir()
    (scratch / "to-mine").symlink_to(mine / "data")
    (scratch / "users-link").symlink_to(scratch)
    os.lchown(scratch / "users-link", test_user.pw_uid, test_user.pw_gid)
    good = scratch / "good"
    good.mkdir()
    (good / "marker").write_text("BIND-OK\n")
    (scratch / "to-good").symlink_to("good")
    policy = site_dir.policy()
    for source, needle in ((scratch / "to-mine", f"{mine}: must be owned by root"),
                           (scratch / "users-link" / "good", f"{scratch / 'users-link'}: a symbolic link not owned")):
        r = envsched_cmd("--policy", str(policy), "prepare", "--key", "forged-link", "--user", TEST_USER,
                         "--request", "deb13", "--owner-pid", str(os.getpid()), "--bind", f"{source}:/opt/spool")
        _refused(r, 78, needle)
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", "forged-link", "--user", TEST_USER, "--request",
                     "deb13", "--owner-pid", str(os.getpid()), "--bind", f"{scratch / 'to-good'}:{good}")
    assert r.returncode == 0, r.stderr
    try:
        r = envsched_cmd("--policy", str(policy), "join", "--key", "forged-link", "--", "cat", f"{good}/marker")
        assert r.stdout.strip() == "BIND-OK", r.stderr
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", "forged-link")


def test_bind_source_owned_by_the_user_in_a_root_directory_is_theirs(site_dir, envsched_cmd, home, test_user,
                                                                      scratch):
    """The source itself may be anyone's (a spool of the scheduler's account, a user's project
    directory): nobody but root can replace it, and what is in it is visible with the ordinary
    permissions; the bind is nosuid,nodev."""
    proj = _user_dir(scratch, test_user, "project")
    (proj / "note").write_text("PROJECT\n")
    policy = site_dir.policy()
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", "forged-proj", "--user", TEST_USER, "--request",
                     "deb13", "--owner-pid", str(os.getpid()), "--bind", f"{proj}")
    assert r.returncode == 0, r.stderr
    try:
        r = envsched_cmd("--policy", str(policy), "join", "--key", "forged-proj", "--", "sh", "-c",
                         f"cat {proj}/note; grep ' {proj} ' /proc/self/mountinfo")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "PROJECT"
        assert "nosuid" in lines[1] and "nodev" in lines[1]
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", "forged-proj")


# --- identity ----------------------------------------------------------------------------------
def test_forged_user_argument_cannot_join_another_users_view(site_dir, envsched_cmd, home, test_user):
    """--user is what the shim takes from the kernel (real uid) or PAM; a pin records the uid, and a
    join for anyone else is refused, also by uid and also for root."""
    policy = site_dir.policy()
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", "forged-user", "--user", str(test_user.pw_uid),
                     "--request", "deb13", "--owner-pid", str(os.getpid()))
    assert r.returncode == 0, r.stderr
    try:
        for who in ("root", "0", "nobody", str(test_user.pw_uid + 100000)):
            r = envsched_cmd("--policy", str(policy), "join", "--key", "forged-user", "--user", who, "--",
                             "sh", "-c", f"echo {MARK}")
            assert MARK not in r.stdout and r.returncode in (67, 73), (who, r.returncode, r.stderr)
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", "forged-user")
