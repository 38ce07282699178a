"""Hostile inputs: each is refused with one clear line, the payload never starts, nothing
is left mounted (the autouse guard in conftest checks the host mount table)."""
from __future__ import annotations

import os
import subprocess

import pytest

from testlib import TEST_USER

pytestmark = pytest.mark.ns

MARK = "PAYLOAD-STARTED"


def _exec(envsched_cmd, policy, *extra, env=None):
    return envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, *extra, "--",
                        "sh", "-c", f"echo {MARK}", env=env)


def _refused(r, code, *needles):
    assert MARK not in r.stdout
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("envsched: ")
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _as_user(cmd):
    home = os.path.expanduser("~" + TEST_USER)
    subprocess.run(["setpriv", "--reuid", TEST_USER, "--regid", TEST_USER, "--init-groups", "--",
                    "sh", "-c", cmd], check=True, cwd=home, env={"HOME": home, "PATH": "/usr/bin:/bin"})


# --- ~/.chos ---------------------------------------------------------------------------------
CHOS_FILES = {
    "symlink to /etc/shadow": ("ln -s /etc/shadow ~/.chos", "~/.chos is a symbolic link"),
    "symlink to a good file": ("echo deb13 > ~/good; ln -s ~/good ~/.chos", "symbolic link"),
    "fifo": ("mkfifo ~/.chos", "not a regular file"),
    "directory": ("mkdir ~/.chos", "not a regular file"),
    "1 GB sparse file": ("truncate -s 1G ~/.chos", "larger than 256 bytes"),
    "257 bytes": ("head -c 257 /dev/zero | tr '\\0' a > ~/.chos", "larger than 256 bytes"),
    "NUL bytes": ("printf 'deb\\000../etc\\n' > ~/.chos", "not a valid name"),
    "dot dot path": ("echo ../../etc > ~/.chos", "not a valid name"),
    "absolute path": ("echo /etc/shadow > ~/.chos", "not a valid name"),
    "spaces": ("echo 'deb 12' > ~/.chos", "not a valid name"),
    "empty": (": > ~/.chos", "~/.chos is empty"),
    "only newline": ("echo > ~/.chos", "~/.chos is empty"),
    "unicode": ("printf 'd\\303\\251b12\\n' > ~/.chos", "not plain ASCII"),
    "leading dash": ("echo -- -rf > ~/.chos", "not a valid name"),
    "unknown name": ("echo sl5 > ~/.chos", "no such environment"),
    "65 characters": ("printf 'a%.0s' $(seq 65) > ~/.chos", "not a valid name"),
    "shell metacharacters": ("echo 'deb12;id' > ~/.chos", "not a valid name"),
    "unreadable by the user": ("echo deb13 > ~/.chos; chmod 000 ~/.chos", "cannot open: Permission denied"),
}


@pytest.mark.parametrize("case", sorted(CHOS_FILES))
def test_hostile_user_file(site_dir, envsched_cmd, home, case):
    setup, needle = CHOS_FILES[case]
    _as_user(setup)
    policy = site_dir.policy()
    line = _refused(_exec(envsched_cmd, policy), 77, needle, "allowed for you: deb12, deb13, local")
    assert "\x00" not in line


def test_user_file_owned_by_someone_else(site_dir, envsched_cmd, home):
    (home / ".chos").write_text("deb13\n")            # written by root, in the user's home
    _refused(_exec(envsched_cmd, site_dir.policy()), 77, "owned by uid 0, not by you")


def test_user_file_in_unreadable_home_is_read_as_user(site_dir, envsched_cmd, home, test_user):
    # root could read it; the user cannot (home 000): the decision must follow the user's view
    _as_user("echo deb13 > ~/.chos")
    mode = home.stat().st_mode
    os.chmod(home, 0)
    try:
        _refused(_exec(envsched_cmd, site_dir.policy()), 77, "~/.chos cannot open: Permission denied")
    finally:
        os.chmod(home, mode)


def test_valid_user_file_is_used(site_dir, envsched_cmd, home):
    _as_user("printf 'deb13\\nignored second line\\n' > ~/.chos")
    r = envsched_cmd("--policy", str(site_dir.policy()), "exec", "--user", TEST_USER, "--",
                     "sh", "-c", "echo $CHOS")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "deb13"


# --- requests ----------------------------------------------------------------------------------
REQUESTS = {
    "unknown": ("sl5", "no such environment"),
    "path traversal": ("../../etc", "not a valid name"),
    "absolute": ("/", "not a valid name"),
    "newline": ("deb12\nid", "not a valid name"),
    "unicode": ("débian", "not a valid name"),
    "too long": ("x" * 65, "not a valid name"),
}


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_hostile_request_option(site_dir, envsched_cmd, home, case):
    value, needle = REQUESTS[case]
    line = _refused(_exec(envsched_cmd, site_dir.policy(), "--request", value), 77, needle, "(option)")
    assert "\n" not in line


def test_hostile_chos_variable(site_dir, envsched_cmd, home):
    _refused(_exec(envsched_cmd, site_dir.policy(), env={"CHOS": "../deb12"}), 77,
             "environment '../deb12' (CHOS variable) refused: not a valid name")


def test_disabled_and_denied_environments(site_dir, envsched_cmd, home):
    policy = site_dir.policy(body=f"""
[environments.old]
path = "{site_dir.envs['deb12']}"
enabled = false
[environments.secret]
path = "{site_dir.envs['deb13']}"
allow_groups = ["no-such-group-here"]
[environments.banned]
path = "{site_dir.envs['deb13']}"
deny_users = ["{TEST_USER}"]
""")
    _refused(_exec(envsched_cmd, policy, "--request", "old"), 77, "disabled by the site")
    _refused(_exec(envsched_cmd, policy, "--request", "secret"), 77, "restricted to other users or groups")
    _refused(_exec(envsched_cmd, policy, "--request", "banned"), 77, f"user {TEST_USER} is denied")


# --- policy files ------------------------------------------------------------------------------
def _bad_policy(site_dir, text, name="bad.toml", mode=0o644):
    path = site_dir.root / name
    if path.exists():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)
    return path


def test_policy_syntax_error(site_dir, envsched_cmd, home):
    p = _bad_policy(site_dir, '[site]\ndefault = "deb12\n')
    _refused(_exec(envsched_cmd, p), 78, f"{p}:2: TOML syntax error")


def test_policy_unknown_key(site_dir, envsched_cmd, home):
    p = _bad_policy(site_dir, '[site]\ndefualt = "deb12"\n')
    _refused(_exec(envsched_cmd, p), 78, f"{p}:2: site.defualt: unknown key")


def test_policy_relative_path(site_dir, envsched_cmd, home):
    p = _bad_policy(site_dir, '[environments.sl6]\npath = "os/sl6"\n')
    line = _refused(_exec(envsched_cmd, p), 78)
    assert line == f"envsched: {p}:2: environments.sl6.path: not an absolute path: 'os/sl6'"


def test_policy_group_writable(site_dir, envsched_cmd, home):
    p = _bad_policy(site_dir, '[site]\ndefault = "local"\n', mode=0o664)
    _refused(_exec(envsched_cmd, p), 78, "not trusted", "writable by group or others")


def test_policy_owned_by_user(site_dir, envsched_cmd, home, test_user):
    p = _bad_policy(site_dir, '[site]\ndefault = "local"\n')
    os.chown(p, test_user.pw_uid, -1)
    _refused(_exec(envsched_cmd, p), 78, "not trusted", f"owned by uid {test_user.pw_uid}")


def test_policy_in_world_writable_dir(site_dir, envsched_cmd, home, tmp_path):
    p = tmp_path / "policy.toml"
    p.write_text('[site]\ndefault = "local"\n')
    _refused(_exec(envsched_cmd, p), 78, "not trusted", "writable by group or others")


def test_policy_missing_file(site_dir, envsched_cmd, home):
    _refused(_exec(envsched_cmd, site_dir.root / "nope.toml"), 78, "cannot open: No such file or directory")


def test_policy_duplicate_environment(site_dir, envsched_cmd, home):
    p = _bad_policy(site_dir, '[environments.a]\npath = "/os/a"\n[environments.a]\npath = "/os/b"\n')
    _refused(_exec(envsched_cmd, p), 78, "TOML syntax error")


def test_policy_missing_tree(site_dir, envsched_cmd, home):
    p = site_dir.policy(body='[environments.ghost]\npath = "/os/does-not-exist"\n')
    _refused(_exec(envsched_cmd, p, "--request", "ghost"), 69,
             "environment ghost is not usable: /os/does-not-exist: No such file or directory")


def test_tree_writable_by_others(site_dir, envsched_cmd, home):
    tree = site_dir.envs["deb13"]
    os.chmod(tree / "usr", 0o777)
    try:
        _refused(_exec(envsched_cmd, site_dir.policy(), "--request", "deb13"), 69,
                 "usr: writable by group or others (mode 0777)")
    finally:
        os.chmod(tree / "usr", 0o755)


def test_tree_owned_by_user(site_dir, envsched_cmd, home, test_user):
    tree = site_dir.envs["deb13"]
    os.chown(tree, test_user.pw_uid, -1)
    try:
        _refused(_exec(envsched_cmd, site_dir.policy(), "--request", "deb13"), 69,
                 f"owned by uid {test_user.pw_uid}, not root")
    finally:
        os.chown(tree, 0, -1)


def test_on_error_default_falls_back_with_warning(site_dir, envsched_cmd, home):
    policy = site_dir.policy(site='on_error = "default"', body='[environments.ghost]\npath = "/os/none"\n')
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "ghost", "--",
                     "sh", "-c", "echo $CHOS")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "deb12"
    assert "warning: environment ghost is not usable" in r.stderr
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "sl5", "--",
                     "sh", "-c", "echo $CHOS")
    assert r.stdout.strip() == "deb12"
    assert "environment 'sl5' (option) refused: no such environment" in r.stderr


def test_admin_log_names_job_user_env_and_reason(site_dir, envsched_cmd, home):
    policy = site_dir.policy()
    log = site_dir.root / "envsched.log"
    _refused(_exec(envsched_cmd, policy, "--request", "sl5", "--job", "4242"), 77)
    last = log.read_text().splitlines()[-1]
    assert "event=refused job=4242 user=%s env=\"'sl5'\" source=option" % TEST_USER in last
    assert f"policy={policy}" in last


def test_exec_as_non_root_is_refused(site_dir, envsched_cmd, home):
    r = envsched_cmd("--policy", str(site_dir.policy()), "exec", "--user", TEST_USER, "--",
                     "sh", "-c", f"echo {MARK}", user=TEST_USER)
    _refused(r, 73, "envsched exec needs root")


def test_policy_symlink_from_untrusted_dir(site_dir, envsched_cmd, home, tmp_path):
    # the target is a good policy, but the link lives in /tmp where anyone could replace it
    link = tmp_path / "policy.toml"
    link.symlink_to(site_dir.policy())
    _refused(_exec(envsched_cmd, link), 78, "not trusted", "writable by group or others")
