"""Entering environments for real: namespaces, binds, pivot_root, privilege drop."""
from __future__ import annotations

import os
import pwd
import signal
import subprocess

import pytest

from testlib import TEST_USER

pytestmark = pytest.mark.ns

PAYLOAD = "cat /etc/os-release; echo CHOS=$CHOS; echo CWD=$(pwd); id"


def os_release(stdout: str) -> str:
    return next(line.split("=", 1)[1].strip('"') for line in stdout.splitlines()
                if line.startswith("PRETTY_NAME="))


def field(stdout: str, name: str) -> str:
    return next(line.split("=", 1)[1] for line in stdout.splitlines() if line.startswith(name + "="))


@pytest.mark.parametrize("request_name,expected", [("deb12", "debian 12 (mini)"), ("deb13", "debian 13 (mini)")])
def test_exec_shows_environment_os_release(site_dir, envsched_cmd, test_user, home, request_name, expected):
    policy = site_dir.policy()
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", request_name,
                     "--cwd", str(home), "--", "sh", "-c", PAYLOAD)
    assert r.returncode == 0, r.stderr
    assert os_release(r.stdout) == expected
    assert field(r.stdout, "CHOS") == request_name
    assert field(r.stdout, "CWD") == str(home)
    assert f"uid={test_user.pw_uid}({TEST_USER})" in r.stdout
    assert "gid=%d" % test_user.pw_gid in r.stdout
    assert "uid=0" not in r.stdout


def test_host_os_release_differs_from_views(site_dir, envsched_cmd, home):
    policy = site_dir.policy()
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "local",
                     "--", "sh", "-c", PAYLOAD)
    assert r.returncode == 0, r.stderr
    with open("/etc/os-release") as f:
        host = next(l.split("=", 1)[1].strip().strip('"') for l in f if l.startswith("PRETTY_NAME="))
    assert os_release(r.stdout) == host
    assert field(r.stdout, "CHOS") == "local"


def test_env_ops_applied(site_dir, envsched_cmd, home):
    policy = site_dir.policy(body="""
[environments.deb12.env]
set = { LANG = "C.UTF-8", SITE_FLAG = "on" }
prepend = { PATH = "/opt/site/bin" }
append = { MANPATH = "/opt/site/man" }
unset = ["DROP_ME"]
""")
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb12", "--",
                     "sh", "-c", 'echo "P=$PATH"; echo "L=$LANG"; echo "F=$SITE_FLAG"; echo "M=$MANPATH";'
                     ' echo "D=${DROP_ME-unset}"; echo "H=$HOME"; echo "U=$USER"',
                     env={"DROP_ME": "x", "MANPATH": "/usr/share/man"})
    assert r.returncode == 0, r.stderr
    assert field(r.stdout, "P").startswith("/opt/site/bin:/usr/local/bin:")
    assert field(r.stdout, "L") == "C.UTF-8"
    assert field(r.stdout, "F") == "on"
    assert field(r.stdout, "M") == "/usr/share/man:/opt/site/man"
    assert field(r.stdout, "D") == "unset"
    assert field(r.stdout, "H") == str(home)
    assert field(r.stdout, "U") == TEST_USER


def test_groups_no_new_privs_and_flags(site_dir, envsched_cmd, test_user, home):
    subprocess.run(["groupadd", "-f", "envsched-tg"], check=True)
    subprocess.run(["usermod", "-aG", "envsched-tg", TEST_USER], check=True)
    try:
        policy = site_dir.policy()
        r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb13", "--",
                         "sh", "-c", "grep -E '^(NoNewPrivs|Uid|Gid|CapEff)' /proc/self/status; id -G;"
                         " cat /proc/self/mountinfo")
        assert r.returncode == 0, r.stderr
        lines = dict(l.split(":", 1) for l in r.stdout.splitlines() if l.split(":")[0] in
                     ("NoNewPrivs", "Uid", "Gid", "CapEff"))
        assert lines["NoNewPrivs"].strip() == "1"
        assert lines["Uid"].split() == [str(test_user.pw_uid)] * 4
        assert lines["Gid"].split() == [str(test_user.pw_gid)] * 4
        assert int(lines["CapEff"].strip(), 16) == 0
        import grp
        tg = grp.getgrnam("envsched-tg").gr_gid
        assert str(tg) in r.stdout.split()
        mounts = {l.split()[4]: l.split()[5] for l in r.stdout.splitlines() if l.count(" ") > 8}
        assert mounts["/usr"].startswith("ro") and "nosuid" in mounts["/usr"] and "nodev" in mounts["/usr"]
        assert mounts["/"].startswith("ro")
        assert "nosuid" in mounts["/home"] and mounts["/home"].startswith("rw")
        assert mounts["/local"].startswith("ro")
        assert not any(m.startswith("/oldroot") or m == "/newroot" for m in mounts)
    finally:
        subprocess.run(["gpasswd", "-d", TEST_USER, "envsched-tg"], stdout=subprocess.DEVNULL)
        subprocess.run(["groupdel", "envsched-tg"])


def test_setuid_binary_in_environment_does_not_elevate(site_dir, envsched_cmd, home, tmp_path):
    # a static setuid-root program that reports its effective uid, planted in the tree
    src = tmp_path / "euid.c"
    src.write_text('#include <stdio.h>\n#include <unistd.h>\n'
                   'int main(void){printf("EUID=%d\\n",(int)geteuid());return 0;}\n')
    planted = site_dir.envs["deb13"] / "usr" / "bin" / "euid"
    subprocess.run(["cc", "-static", "-O2", "-o", str(planted), str(src)], check=True)
    os.chown(planted, 0, 0)
    os.chmod(planted, 0o4755)
    try:
        # on the host the plant does elevate (proves the test can fail) ...
        host = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               str(planted)], stdout=subprocess.PIPE, text=True)
        assert host.stdout.strip() == "EUID=0"
        # ... in the view it does not (nosuid mount and no_new_privs)
        policy = site_dir.policy()
        r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb13", "--",
                         "/usr/bin/euid")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "EUID=%d" % pwd.getpwnam(TEST_USER).pw_uid
    finally:
        planted.unlink()


def test_exit_code_and_signal_propagate(site_dir, envsched_cmd, home):
    policy = site_dir.policy()
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb12", "--",
                     "sh", "-c", "exit 42")
    assert r.returncode == 42
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb12", "--",
                     "sh", "-c", "kill -TERM $$")
    assert r.returncode == -signal.SIGTERM


def test_command_not_found_in_view(site_dir, envsched_cmd, home):
    policy = site_dir.policy()
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb12", "--",
                     "/usr/bin/python3", "-c", "pass")
    assert r.returncode == 127
    assert r.stderr.strip() == "envsched: /usr/bin/python3: command not found in environment deb12"


def test_cwd_fallback_to_home_then_root(site_dir, envsched_cmd, home):
    policy = site_dir.policy()
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb12",
                     "--cwd", "/srv/no/such/dir", "--", "pwd")
    assert r.stdout.strip() == str(home)


def test_identity_files_from_host(site_dir, envsched_cmd, test_user, home):
    policy = site_dir.policy()
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb12", "--",
                     "sh", "-c", f"grep '^{TEST_USER}:' /etc/passwd; whoami")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [open("/etc/passwd").read().split(f"\n{TEST_USER}:")[1].join(
        [f"{TEST_USER}:", ""]).split("\n")[0], TEST_USER]


def test_unprivileged_run_as_plain_user(site_dir, chos_cmd, test_user, home):
    policy = site_dir.policy()
    r = chos_cmd("--policy", str(policy), "run", "deb13", "--", "sh", "-c",
                 PAYLOAD + "; grep NoNewPrivs /proc/self/status; ls -ln /usr/bin/busybox",
                 user=TEST_USER, cwd=str(home))
    assert r.returncode == 0, r.stderr
    assert os_release(r.stdout) == "debian 13 (mini)"
    assert field(r.stdout, "CHOS") == "deb13"
    assert field(r.stdout, "CWD") == str(home)
    assert f"uid={test_user.pw_uid}" in r.stdout
    assert "NoNewPrivs:\t1" in r.stdout
    # files of other owners (root) show as the overflow id inside the user namespace
    assert " 65534 " in r.stdout.splitlines()[-1]


def test_chos_compat_mode_uses_CHOS_variable(site_dir, chos_cmd, home):
    policy = site_dir.policy()
    r = chos_cmd("--policy", str(policy), "sh", "-c", "head -1 /etc/os-release; echo $CHOS",
                 user=TEST_USER, env={"CHOS": "deb13"}, cwd=str(home))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ['PRETTY_NAME="debian 13 (mini)"', "deb13"]


def test_bind_target_crossing_symlink_refused(site_dir, envsched_cmd, home):
    # the tree's /opt is a symlink pointing out of the view: a bind into /opt/x must be refused
    tree = site_dir.envs["deb12"]
    os.rename(tree / "opt", tree / "opt.real")
    os.symlink("/etc", tree / "opt")
    try:
        policy = site_dir.policy(body=f"""
[[environments.deb12.binds]]
source = "{site_dir.root}"
target = "/opt/site"
""")
        r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb12", "--",
                         "sh", "-c", "echo PAYLOAD-RAN")
        assert r.returncode == 69, r.stderr
        assert "PAYLOAD-RAN" not in r.stdout
        assert "crosses a symbolic link" in r.stderr
    finally:
        os.unlink(tree / "opt")
        os.rename(tree / "opt.real", tree / "opt")


def test_extra_bind_readonly(site_dir, envsched_cmd, home):
    data = site_dir.root / "licenses"
    data.mkdir(exist_ok=True)
    (data / "lic.txt").write_text("LICENSE-OK\n")
    policy = site_dir.policy(body=f"""
[[environments.deb12.binds]]
source = "{data}"
target = "/opt/licenses"
""")
    cmd = ("--policy", str(policy), "exec", "--user", "root", "--request", "deb12", "--",
           "sh", "-c", "cat /opt/licenses/lic.txt; touch /opt/licenses/new 2>&1 || echo RO")
    # /opt comes read-only from the tree: without a mount point there, the job is refused
    r = envsched_cmd(*cmd)
    assert r.returncode == 69
    assert r.stdout == ""
    assert r.stderr.strip() == ("envsched: mount point /opt/licenses does not exist in the environment and "
                                "its parent comes read-only from the tree: create the directory in the tree")
    mountpoint = site_dir.envs["deb12"] / "opt" / "licenses"
    mountpoint.mkdir()
    try:
        r = envsched_cmd(*cmd)
    finally:
        mountpoint.rmdir()
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "LICENSE-OK"
    assert r.stdout.splitlines()[-1] == "RO"
    assert not (data / "new").exists()


def test_image_environment_squashfs(site_dir, envsched_cmd, home, tmp_path):
    img = site_dir.root / "deb13.sqfs"
    subprocess.run(["mksquashfs", str(site_dir.envs["deb13"]), str(img), "-noappend", "-quiet",
                    "-all-root"], check=True, stdout=subprocess.DEVNULL)
    img.chmod(0o644)
    policy = site_dir.policy(body=f"""
[environments.sq13]
path = "{img}"
kind = "image"
""")
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "sq13", "--",
                     "sh", "-c", "head -1 /etc/os-release; grep ' /usr ' /proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == 'PRETTY_NAME="debian 13 (mini)"'
    assert "squashfs" in r.stdout
    # the loop device is released with the view (autoclear)
    losetup = subprocess.run(["losetup", "-j", str(img)], stdout=subprocess.PIPE, text=True).stdout
    assert losetup.strip() == ""
