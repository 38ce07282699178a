"""Login shells in a real tree: the environment's settings survive its /etc/profile.

Debian's /etc/profile sets PATH to "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
(for users other than root), so a login shell would lose the policy's `env.prepend PATH` and
whatever a shim put first in PATH. The view's /etc/profile.d/zz-envsched.sh (src/envsched/
loginenv.py) puts them back. The busybox test trees have no /etc/profile, so these tests use the
real debootstrap tree of the `real_tree` fixture (tests/conftest.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testlib import TEST_USER

pytestmark = pytest.mark.ns

REPO = Path(__file__).resolve().parents[2]

PROFILE_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"   # bookworm's, for a user
SITE_ENV = """
[environments.deb12real]
path = "{tree}"
description = "Debian 12 (debootstrap)"

[environments.deb12real.env]
set = {{ SITE_FLAG = "it's on" }}
prepend = {{ PATH = "/opt/site/bin" }}
append = {{ MANPATH = "/opt/site/man" }}
unset = ["DROP_ME"]
"""
SHOW = 'echo "P=$PATH"; echo "F=$SITE_FLAG"; echo "M=${MANPATH-}"; echo "D=${DROP_ME-unset}"; echo "C=$CHOS"'


def field(stdout: str, name: str) -> str:
    return next(line.split("=", 1)[1] for line in stdout.splitlines() if line.startswith(name + "="))


@pytest.fixture
def policy(site_dir, real_tree):
    return site_dir.policy(name="login-profile.toml", body=SITE_ENV.format(tree=real_tree))


def _assert_kept(stdout: str, first: str = "/opt/site/bin") -> None:
    path = field(stdout, "P")
    assert path == f"{first}:{PROFILE_PATH}", path        # /etc/profile ran, then the site's prepend
    assert field(stdout, "F") == "it's on"
    assert field(stdout, "M") == "/opt/site/man"
    assert field(stdout, "D") == "unset"
    assert field(stdout, "C") == "deb12real"


def test_chos_run_login_shell_keeps_policy_prepend_unprivileged(policy, chos_cmd, home):
    """`chos run` as the user: a user-namespace view, `sh -l` (dash) reads /etc/profile."""
    r = chos_cmd("--policy", str(policy), "run", "deb12real", "--", "sh", "-l", "-c",
                 SHOW + "; grep ' /etc/profile.d ' /proc/self/mountinfo",
                 user=TEST_USER, cwd=str(home), env={"DROP_ME": "x", "PATH": "/somewhere/else:/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    _assert_kept(r.stdout)
    assert " - overlay envsched-login ro," in r.stdout.splitlines()[-1]   # overlayfs in the user namespace


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_exec_login_shell_keeps_policy_prepend_as_root(policy, envsched_cmd, home, shell):
    """The privileged path (`envsched exec`, what every shim's view is made by)."""
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb12real",
                     "--cwd", str(home), "--", shell, "-l", "-c", SHOW, env={"DROP_ME": "x"})
    assert r.returncode == 0, r.stderr
    _assert_kept(r.stdout)


def test_chos_shell_keeps_policy_prepend(policy, chos_cmd, home):
    """`chos shell`: the user's shell (/bin/sh) as a login shell, commands on stdin."""
    r = chos_cmd("--policy", str(policy), "shell", "deb12real", user=TEST_USER, cwd=str(home),
                 stdin=SHOW + "\nexit 3\n", env={"DROP_ME": "x", "SHELL": "/bin/sh"})
    assert r.returncode == 3, r.stderr
    _assert_kept(r.stdout)


def test_shim_path_prepend_survives_and_nested_login_shells_add_no_duplicates(policy, envsched_cmd, home):
    """ENVSCHED_PATH_PREPEND (a shim's own PATH entries, e.g. Grid Engine's host tools) comes
    first again after /etc/profile; a login shell inside a login shell changes nothing."""
    inner = "sh -l -c 'echo \"P=$PATH\"'"
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb12real",
                     "--cwd", str(home), "--", "sh", "-l", "-c", f'echo "O=$PATH"; {inner}',
                     env={"ENVSCHED_PATH_PREPEND": "/opt/host tools/bin"})
    assert r.returncode == 0, r.stderr
    expected = f"/opt/host tools/bin:/opt/site/bin:{PROFILE_PATH}"
    assert field(r.stdout, "O") == expected
    assert field(r.stdout, "P") == expected


def test_snippet_is_in_the_view_only_read_only(policy, envsched_cmd, home, real_tree):
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb12real",
                     "--cwd", str(home), "--", "sh", "-c",
                     "ls -A /etc/profile.d; grep ' /etc/profile.d ' /proc/self/mountinfo;"
                     " touch /etc/profile.d/x 2>/dev/null && echo WROTE; cat /etc/profile.d/zz-envsched.sh")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "zz-envsched.sh"                     # the tree's directory is empty
    opts = lines[1].split(" - ")[0].split()[5].split(",")
    assert {"ro", "nosuid", "nodev"} <= set(opts), lines[1]
    assert " overlay " in lines[1]
    assert "WROTE" not in r.stdout
    assert "PATH='/opt/site/bin'${PATH:+:$PATH}" in r.stdout
    assert not (real_tree / "etc" / "profile.d" / "zz-envsched.sh").exists()
    assert os.listdir(real_tree / "etc" / "profile.d") == []


def test_pinned_view_has_the_snippet(policy, envsched_cmd, home):
    """Views prepared once per job (the shims' pins) get it too; every task that joins sees it."""
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", "login-1", "--user", TEST_USER,
                     "--request", "deb12real", "--owner-pid", str(os.getpid()))
    assert r.returncode == 0, r.stderr
    try:
        r = envsched_cmd("--policy", str(policy), "join", "--key", "login-1", "--cwd", str(home), "--",
                         "sh", "-l", "-c", SHOW, env={"DROP_ME": "x"})
        assert r.returncode == 0, r.stderr
        _assert_kept(r.stdout)
    finally:
        assert envsched_cmd("--policy", str(policy), "release", "--key", "login-1").returncode == 0


def test_busybox_tree_without_profile_d_is_unaffected(site_dir, envsched_cmd, home):
    r = envsched_cmd("--policy", str(site_dir.policy()), "exec", "--user", TEST_USER, "--request", "deb12",
                     "--", "sh", "-c", "ls -d /etc/profile.d 2>&1; grep -c profile.d /proc/self/mountinfo")
    assert r.stdout.splitlines()[-1] == "0"
    assert "No such file" in r.stdout
    explain = envsched_cmd("--policy", str(site_dir.policy()), "explain", "--user", TEST_USER, "--json")
    ops = json.loads(explain.stdout)["plan"]["ops"]
    assert {"op": "login_env", "dir": "/etc/profile.d", "name": "zz-envsched.sh"} in ops


FORCE_TMPFS = """
import sys
from envsched import linux
from envsched.cli.envsched import main
real_mount = linux.mount
def mount(source, target, fstype, flags, data=None):
    if fstype == "overlay":
        raise linux.SetupError("overlay refused for this test")
    return real_mount(source, target, fstype, flags, data)
linux.mount = mount
sys.exit(main(sys.argv[1:]))
"""


def test_without_overlayfs_a_tmpfs_holds_the_same_entries(policy, home, tmp_path):
    """Where overlayfs is refused, a tmpfs with the directory's entries bound in does the same."""
    profile_d = tmp_path / "tree-profile.d"                     # a tree's profile.d with some entries
    profile_d.mkdir()
    (profile_d / "a-site.sh").write_text("A_SITE=1; export A_SITE\n")
    (profile_d / "sub").mkdir()
    os.symlink("a-site.sh", profile_d / "link.sh")
    os.chmod(tmp_path, 0o755)
    extra = policy.with_name("login-tmpfs.toml")
    extra.write_text(policy.read_text().replace(
        "[environments.deb12real.env]",
        f'binds = [{{ source = "{profile_d}", target = "/etc/profile.d" }}]\n\n[environments.deb12real.env]'))
    extra.chmod(0o644)
    p = subprocess.run(
        [sys.executable, "-c", FORCE_TMPFS, "--policy", str(extra), "exec", "--user",
         TEST_USER, "--request", "deb12real", "--cwd", str(home), "--", "sh", "-l", "-c",
         SHOW + "; echo A=$A_SITE; ls -A /etc/profile.d | tr '\\n' ' '; echo;"
         " awk '$5 ~ \"^/etc/profile.d\" { i = 7; while ($i != \"-\") i++; print \"mount\", $5, $6, $(i + 1) }'"
         " /proc/self/mountinfo; touch /etc/profile.d/x 2>/dev/null && echo WROTE; true"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src"), "DROP_ME": "x"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60, cwd="/")
    assert p.returncode == 0, p.stderr
    _assert_kept(p.stdout)
    assert field(p.stdout, "A") == "1"
    lines = p.stdout.splitlines()
    i = next(n for n, l in enumerate(lines) if l.startswith("A="))
    assert lines[i + 1].split() == ["a-site.sh", "link.sh", "sub", "zz-envsched.sh"]
    mounts = [l.split()[1:] for l in lines if l.startswith("mount ")]
    tmpfs = mounts.index(["/etc/profile.d", mounts[1][1], "tmpfs"])  # over the site's bind of the directory
    assert [m[0] for m in mounts[tmpfs + 1:]] == ["/etc/profile.d/a-site.sh", "/etc/profile.d/sub"]
    assert all({"ro", "nosuid", "nodev"} <= set(m[1].split(",")) for m in mounts), mounts
    assert "WROTE" not in p.stdout
