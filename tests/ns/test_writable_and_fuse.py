"""writable = "tmpfs" overlays, and images entered as the user through squashfuse (#11).

Real trees and squashfs images built here, real views, a real unprivileged user. What an image
holds that would be dangerous with root's mount (a setuid-root program, a device node, a symlink
out of the image) does nothing for the user.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from testlib import TEST_USER

pytestmark = pytest.mark.ns


def _squashfs(tree: Path, dest: Path) -> Path:
    subprocess.run(["mksquashfs", str(tree), str(dest), "-noappend", "-quiet", "-no-progress", "-all-root"],
                   check=True, stdout=subprocess.DEVNULL)
    dest.chmod(0o644)
    return dest


@pytest.fixture(scope="module")
def hostile(site_dir):
    """A tree and its squashfs holding: a world-writable /opt/scratch, a setuid-root copy of
    busybox, /dev/mem as a device node in /opt, and symlinks out of the image."""
    tree = site_dir.build_env("hostile", "debian", "12")
    opt = tree / "opt"
    (opt / "scratch").mkdir()
    (opt / "scratch").chmod(0o1777)
    (opt / "suid").mkdir()
    shutil.copy2(tree / "usr" / "bin" / "busybox", opt / "suid" / "busybox")    # its argv[0] picks the applet
    os.chown(opt / "suid" / "busybox", 0, 0)
    (opt / "suid" / "busybox").chmod(0o4755)
    os.mknod(opt / "mem", 0o666 | 0o020000, os.makedev(1, 1))      # /dev/mem, world-readable
    (opt / "escape-shadow").symlink_to("/local/etc/shadow")
    (opt / "escape-up").symlink_to("../../../../../../etc/shadow")
    image = _squashfs(tree, site_dir.root / "os" / "hostile.sqfs")
    yield tree, image
    image.unlink()
    shutil.rmtree(tree)


@pytest.fixture
def policy(site_dir, hostile):
    tree, image = hostile
    return site_dir.policy(f"""
[environments.tree-rw]
path = "{tree}"
writable = "tmpfs"
[environments.tree-ro]
path = "{tree}"
[environments.img]
path = "{image}"
kind = "image"
[environments.img-rw]
path = "{image}"
kind = "image"
writable = "tmpfs"
""", name="policy-fuse.toml")


def _exec(envsched_cmd, policy, env, script):
    return envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--no-user-file", "--request", env,
                        "--", "/bin/sh", "-c", script)


def test_writable_tree_is_per_job_and_keeps_owners(envsched_cmd, policy, hostile, test_user):
    tree, _ = hostile
    r = _exec(envsched_cmd, policy, "tree-rw",
              "echo one > /opt/scratch/x && cat /opt/scratch/x; touch /usr/owned-by-root; echo usr=$?")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["one", "usr=1"]
    assert "Permission denied" in r.stderr          # writable, but the image's owners and modes still hold
    assert not (tree / "opt" / "scratch" / "x").exists()         # the tree is never written
    r = _exec(envsched_cmd, policy, "tree-rw", "ls /opt/scratch | wc -l")
    assert r.stdout.strip() == "0"                                 # nothing of the last job's
    r = _exec(envsched_cmd, policy, "tree-ro", "echo one > /opt/scratch/x")
    assert r.returncode != 0 and "Read-only file system" in r.stderr


def test_writable_image_as_root_loop_mount(envsched_cmd, policy):
    r = _exec(envsched_cmd, policy, "img-rw", "echo two > /opt/scratch/y && cat /opt/scratch/y; echo $CHOS")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["two", "img-rw"]


def test_image_entered_as_the_user_through_squashfuse(chos_cmd, policy, test_user, user_fuse):
    r = chos_cmd("--policy", str(policy), "run", "img", "--", "/bin/sh", "-c",
                 "cat /etc/os-release | head -1; echo $CHOS; id -u; grep -c ' /image\\| fuse' /proc/self/mountinfo",
                 user=TEST_USER)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1] == "img" and lines[2] == str(test_user.pw_uid)
    _no_squashfuse_left(test_user.pw_uid)


def test_image_writable_as_the_user(chos_cmd, site_dir, hostile, test_user, user_fuse):
    """As the user (a user namespace mapping only them), the overlay copies up what the user owns
    in the image, as in a user's own image (imported as the user: all of it is theirs). What has
    another owner on the way (root's, shown as nobody) cannot be copied up: `writable` does not
    reach there (docs/admin.md section 5)."""
    tree, _ = hostile
    copy = site_dir.root / "os" / "userowned"
    subprocess.run(["cp", "-a", str(tree), str(copy)], check=True)
    subprocess.run(["chown", "-R", f"{test_user.pw_uid}:{test_user.pw_gid}", str(copy)], check=True)
    image = site_dir.root / "os" / "userowned.sqfs"
    subprocess.run(["mksquashfs", str(copy), str(image), "-noappend", "-quiet", "-no-progress"], check=True,
                   stdout=subprocess.DEVNULL)
    image.chmod(0o644)
    shutil.rmtree(copy)
    policy = site_dir.policy(f'[environments.mine-rw]\npath = "{image}"\nkind = "image"\nwritable = "tmpfs"\n',
                             name="policy-userowned.toml")
    try:
        r = chos_cmd("--policy", str(policy), "run", "mine-rw", "--", "/bin/sh", "-c",
                     "echo three > /opt/scratch/z && cat /opt/scratch/z && echo four > /usr/new && cat /usr/new",
                     user=TEST_USER)
        again = chos_cmd("--policy", str(policy), "run", "mine-rw", "--", "/bin/sh", "-c",
                         "cat /opt/scratch/z /usr/new 2>/dev/null | wc -l", user=TEST_USER)
    finally:
        image.unlink()
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["three", "four"]
    assert again.stdout.strip() == "0"                    # nothing stayed
    _no_squashfuse_left(test_user.pw_uid)


@pytest.mark.parametrize("how", ["root", "user"])
def test_what_an_image_holds_gives_the_user_nothing(envsched_cmd, chos_cmd, policy, test_user, user_fuse, how):
    script = ("/opt/suid/busybox id -u; head -c1 /opt/mem >/dev/null 2>&1; echo mem=$?; "
              "cat /opt/escape-shadow >/dev/null 2>&1; echo shadow=$?; cat /opt/escape-up >/dev/null 2>&1; "
              "echo up=$?")
    if how == "root":
        r = _exec(envsched_cmd, policy, "img", script)
    else:
        r = chos_cmd("--policy", str(policy), "run", "img", "--", "/bin/sh", "-c", script, user=TEST_USER)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == str(test_user.pw_uid)             # the setuid-root program runs as the user
    assert lines[1:] == ["mem=1", "shadow=1", "up=1"]    # no device, no host secret, no way out


def test_no_usable_dev_fuse_is_one_clear_line(chos_cmd, policy, test_user):
    mode = os.stat("/dev/fuse").st_mode & 0o7777
    os.chmod("/dev/fuse", 0o600)
    try:
        r = chos_cmd("--policy", str(policy), "run", "img", "--", "/bin/true", user=TEST_USER)
    finally:
        os.chmod("/dev/fuse", mode)
    assert r.returncode == 69
    assert r.stderr.splitlines() == ["envsched: images entered as the user need /dev/fuse readable and writable "
                                     "by users (mode 0666, as udev makes it): Permission denied"]


def test_a_damaged_image_is_refused_as_the_user(chos_cmd, site_dir, test_user, user_fuse):
    bad = site_dir.root / "os" / "damaged.sqfs"
    bad.write_bytes(b"hsqs" + os.urandom(8192))
    bad.chmod(0o644)
    policy = site_dir.policy(f'[environments.bad]\npath = "{bad}"\nkind = "image"\n', name="policy-bad.toml")
    try:
        r = chos_cmd("--policy", str(policy), "run", "bad", "--", "/bin/true", user=TEST_USER)
    finally:
        bad.unlink()
    assert r.returncode == 69, r.stderr
    assert len(r.stderr.splitlines()) == 1 and "cannot be read (squashfuse refused it" in r.stderr
    _no_squashfuse_left(test_user.pw_uid)


def _no_squashfuse_left(uid: int) -> None:
    """squashfuse ends with the view (a zombie waiting for init does not count)."""
    deadline = time.monotonic() + 5
    while True:
        alive = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            if fields.get("Name") == "squashfuse" and fields.get("Uid", "").split()[0] == str(uid) \
                    and not fields.get("State", "").startswith("Z"):
                alive.append(pid)
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not alive, f"squashfuse still running: {alive}"
