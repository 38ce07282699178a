"""Users' own images with the real commands, as a real unprivileged user (#11): `chos image
import | build | list | rm`, `chos run user:NAME`, root's `envsched prepare`/`join` of a user image,
the site's rules ([user_images]), and what a user can do to their own store (nothing for them).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testlib import TEST_USER

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "images"))
import ocilib  # noqa: E402

pytestmark = pytest.mark.ns


@pytest.fixture(scope="module")
def oci(site_dir):
    imgs = ocilib.build_all(site_dir.root / "user-oci")
    for p in imgs.work.rglob("*"):                 # the user imports them: readable to all
        p.chmod(p.stat().st_mode | 0o444 | (0o111 if p.is_dir() else 0))
    yield imgs
    shutil.rmtree(imgs.work)


@pytest.fixture
def policy(site_dir):
    return site_dir.policy("""
[user_images]
enabled = true
max_size = "64M"
deny_users = ["nobody"]
[user_images.env]
set = { SITE_SET = "yes" }
""", name="policy-user-images.toml")


@pytest.fixture
def store(test_user, home):
    path = Path(test_user.pw_dir) / ".local" / "share" / "envsched" / "images"
    yield path
    shutil.rmtree(Path(test_user.pw_dir) / ".local", ignore_errors=True)


def chos(chos_cmd, policy, *args, **kw):
    return chos_cmd("--policy", str(policy), *args, user=TEST_USER, **kw)


def test_import_list_run_rm(chos_cmd, policy, store, oci, test_user, user_fuse):
    r = chos(chos_cmd, policy, "image", "import", str(oci.docker_archive), "app")
    assert r.returncode == 0, r.stderr
    name, digest = r.stdout.split()[:2]
    assert name == "user:app" and digest.startswith("sha256:")
    assert all(p.stat().st_uid == test_user.pw_uid for p in [store, *store.rglob("*")])   # all the user's
    r = chos(chos_cmd, policy, "image", "list")
    assert r.returncode == 0 and "app" in r.stdout and digest[:19] in r.stdout
    r = chos(chos_cmd, policy, "run", "user:app", "--", "/bin/sh", "-c",
             'echo "$CHOS $CHOS_DIGEST $A $SITE_SET $(id -u) $(cat /opt/data/b.txt) $(pwd)"')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["user:app", digest, "1", "yes", str(test_user.pw_uid), "bee", "/"]
    r = chos(chos_cmd, policy, "run", f"user:app@{digest[:19]}", "--", "/bin/true")
    assert r.returncode == 0, r.stderr
    r = chos(chos_cmd, policy, "image", "rm", "app")
    assert r.returncode == 0 and digest in r.stdout
    r = chos(chos_cmd, policy, "run", "user:app", "--", "/bin/true")
    assert r.returncode == 69 and len(r.stderr.splitlines()) == 1 and "is not on this node" in r.stderr


def test_root_prepares_and_joins_a_user_image_as_the_user(chos_cmd, envsched_cmd, policy, store, oci, test_user,
                                                          user_fuse, site_dir):
    r = chos(chos_cmd, policy, "image", "import", str(oci.oci_archive), "app")
    assert r.returncode == 0, r.stderr
    digest = r.stdout.split()[1]
    key = "user-image-test"
    r = envsched_cmd("--policy", str(policy), "prepare", "--user", TEST_USER, "--no-user-file", "--request",
                     "user:app", "--key", key, "--format", "shim")
    try:
        assert r.returncode == 0, r.stderr
        assert f"digest {digest}" in r.stdout.splitlines() and "userns 1" in r.stdout.splitlines()
        pin = site_dir.run_dir / key
        assert (pin / "userns").exists() and json.loads((pin / "meta.json").read_text())["userns"] is True
        r = envsched_cmd("--policy", str(policy), "join", "--key", key, "--", "/bin/sh", "-c",
                         'echo "$CHOS_DIGEST $(id -u) $(cat /proc/self/uid_map | tr -s " ")"')
        assert r.returncode == 0, r.stderr
        uid = str(test_user.pw_uid)
        assert r.stdout.split() == [digest, uid, uid, uid, "1"]     # in the user's namespace, as the user
        log = (site_dir.root / "envsched.log").read_text()
        assert f"env=user:app key={key}" in log and f"digest={digest}" in log
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", key, "--quiet")


def test_build_from_a_directory_leaves_out_host_only_paths(chos_cmd, policy, store, oci, test_user, home,
                                                          user_fuse):
    tree = Path(test_user.pw_dir) / "ws"
    subprocess.run(["cp", "-a", str(oci.tree), str(tree)], check=True)
    for d in ("proc/1", "home/someone", "tmp/junk", "dev/x"):
        (tree / d).mkdir(parents=True)
    (tree / "home" / "someone" / "secret").write_text("not for the image\n")
    subprocess.run(["chown", "-R", f"{test_user.pw_uid}:{test_user.pw_gid}", str(tree)], check=True)
    out = Path(test_user.pw_dir) / "ws.sqfs"
    try:
        r = chos(chos_cmd, policy, "image", "build", "--from-dir", str(tree), "-o", str(out), "ws")
        assert r.returncode == 0, r.stderr
        listing = subprocess.run(["unsquashfs", "-l", str(out)], capture_output=True, text=True).stdout
        assert "squashfs-root/usr/bin/busybox" in listing
        assert not any(f"squashfs-root/{d}" in listing for d in ("proc", "home", "tmp", "dev"))
        r = chos(chos_cmd, policy, "image", "import", str(out), "ws")
        assert r.returncode == 0, r.stderr
        r = chos(chos_cmd, policy, "run", "user:ws", "--", "/bin/sh", "-c", "ls /home | wc -l; head -1 /etc/os-release")
        assert r.returncode == 0, r.stderr
        assert "someone" not in r.stdout
    finally:
        shutil.rmtree(tree)
        out.unlink(missing_ok=True)


def test_too_large_or_truncated_imports_leave_nothing(chos_cmd, policy, store, oci, site_dir, test_user):
    big = site_dir.root / "big.tar"
    filler = site_dir.root / "filler"
    filler.mkdir()
    (filler / "blob").write_bytes(os.urandom(70 * 1024 * 1024))
    subprocess.run(["tar", "-C", str(filler), "-cf", str(big), "."], check=True)
    half = site_dir.root / "half.tar"
    data = oci.docker_archive.read_bytes()
    half.write_bytes(data[:len(data) // 2])
    for p in (big, half):
        p.chmod(0o644)
    try:
        r = chos(chos_cmd, policy, "image", "import", str(big), "big")
        assert r.returncode != 0 and len(r.stderr.splitlines()) == 1 and "larger than" in r.stderr, r.stderr
        r = chos(chos_cmd, policy, "image", "import", str(half), "half")
        assert r.returncode == 69 and len(r.stderr.splitlines()) == 1, r.stderr
    finally:
        for p in (big, half):
            p.unlink()
        shutil.rmtree(filler)
    left = [p for p in store.rglob("*") if p.is_file() and p.name != ".lock"] if store.exists() else []
    assert left == []


def test_the_site_decides(chos_cmd, site_dir, store, oci):
    off = site_dir.policy("", name="policy-no-user-images.toml")
    r = chos(chos_cmd, off, "image", "import", str(oci.docker_archive), "app")
    assert r.returncode == 77
    assert r.stderr == "envsched: your own images: this site does not run users' own images\n"
    r = chos(chos_cmd, off, "run", "user:app", "--", "/bin/true")
    assert r.returncode == 77 and "this site does not run users' own images" in r.stderr
    denied = site_dir.policy(f'[user_images]\nenabled = true\ndeny_users = ["{TEST_USER}"]\n',
                             name="policy-denied-user-images.toml")
    r = chos(chos_cmd, denied, "image", "list")
    assert r.returncode == 77 and "may not run their own images" in r.stderr


def test_forged_user_store_record_pointing_at_another_file(chos_cmd, policy, store, oci, test_user, site_dir,
                                                            user_fuse):
    """The user rewrites their own store's record to name a root-only image elsewhere: the builder
    reads as the user, so at most the user's own refusal comes out; nothing of root's is mounted."""
    r = chos(chos_cmd, policy, "image", "import", str(oci.squashfs), "app")
    assert r.returncode == 0, r.stderr
    secret = site_dir.root / "os" / "root-only.sqfs"
    subprocess.run(["mksquashfs", str(oci.tree), str(secret), "-noappend", "-quiet", "-no-progress"], check=True)
    secret.chmod(0o600)
    try:
        (meta,) = (store / "meta" / "sha256").glob("*.json")
        record = json.loads(meta.read_text())
        record["path"] = str(secret)
        meta.write_text(json.dumps(record))
        r = chos(chos_cmd, policy, "run", "user:app", "--", "/bin/true")
        assert r.returncode == 69 and len(r.stderr.splitlines()) == 1, (r.returncode, r.stderr)
    finally:
        secret.unlink()


def test_logins_do_not_enter_users_images(envsched_cmd, policy, test_user):
    """PAM's session process stays root in the view: a login (pin key pam-*) never gets a user's own image."""
    r = envsched_cmd("--policy", str(policy), "prepare", "--user", TEST_USER, "--no-user-file", "--request",
                     "user:app", "--key", f"pam-{test_user.pw_uid}-1", "--owner-pid", str(os.getpid()),
                     "--format", "shim")
    assert r.returncode == 77, r.stderr
    assert r.stderr == ("envsched: environment user:app is not entered at login (your own images run in jobs "
                        "and with `chos run user:app -- CMD`)\n")
