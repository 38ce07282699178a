"""The node's one mount of each image from the store (holders.py): made by the first view, shared
by every later one (no loop device of their own), kept idle for site.image_hold, released by
gc, release and image rm, and never while a view uses it."""
from __future__ import annotations

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
def store_site(site_dir):
    work = site_dir.root / "holder-oci"
    imgs = ocilib.build_all(work)
    store = site_dir.root / "holder-store"
    yield imgs, store
    shutil.rmtree(work)
    shutil.rmtree(store, ignore_errors=True)


def _policy(site_dir, store, hold):
    return site_dir.policy('[environments.ci]\nimage = "ci"\n',
                           site=f'image_dir = "{store}"\nimage_hold = {hold}', name=f"policy-hold-{hold}.toml")


def _holders(site_dir):
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4] for line in f if f"{site_dir.run_dir}/.images/" in line)


def _loops(store):
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(store) in line]


def test_one_mount_per_image_shared_and_released(envsched_cmd, site_dir, store_site, test_user):
    imgs, store = store_site
    policy = _policy(site_dir, store, 600)
    r = envsched_cmd("--policy", str(policy), "image", "import", str(imgs.docker_archive), "ci")
    assert r.returncode == 0, r.stderr
    digest = r.stdout.split()[1]
    run = ["--policy", str(policy), "exec", "--user", TEST_USER, "--no-user-file", "--request", "ci", "--"]
    try:
        for _ in range(3):
            r = envsched_cmd(*run, "/bin/sh", "-c", "cat /opt/data/b.txt; grep ' /usr ' /proc/self/mountinfo")
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith("bee\n") and "squashfs" in r.stdout and " ro," in r.stdout
        holders = _holders(site_dir)
        assert holders == [f"{site_dir.run_dir}/.images/{digest.split(':')[1]}"]       # one, for every view
        assert len(_loops(store)) == 1
        # kept while recently used; a pinned view keeps it whatever the hold says
        r = envsched_cmd("--policy", str(policy), "gc")
        assert r.returncode == 0 and _holders(site_dir) == holders
        r = envsched_cmd("--policy", str(policy), "prepare", "--user", TEST_USER, "--no-user-file", "--request",
                         "ci", "--key", "holder-test", "--owner-pid", str(os.getpid()))
        assert r.returncode == 0, r.stderr
        r = envsched_cmd("--policy", str(_policy(site_dir, store, 0)), "gc")
        assert r.returncode == 0 and _holders(site_dir) == holders
        r = envsched_cmd("--policy", str(policy), "image", "rm", f"ci@{digest}")
        assert r.returncode == 73 and len(r.stderr.splitlines()) == 1, r.stderr          # a view uses it
        r = envsched_cmd("--policy", str(_policy(site_dir, store, 0)), "release", "--key", "holder-test")
        assert r.returncode == 0 and _holders(site_dir) == []                          # hold 0: let go at once
        assert _loops(store) == []
        # made again by the next view; `gc --idle-images` lets go of it however recent
        r = envsched_cmd(*run, "/bin/true")
        assert r.returncode == 0 and len(_holders(site_dir)) == 1
        r = envsched_cmd("--policy", str(policy), "gc", "--idle-images")
        assert r.returncode == 0 and f"released image {digest}" in r.stdout and _holders(site_dir) == []
        # image rm lets go of an idle holder itself, then removes the image
        r = envsched_cmd(*run, "/bin/true")
        assert r.returncode == 0 and len(_holders(site_dir)) == 1
        policy_without = site_dir.policy("", site=f'image_dir = "{store}"', name="policy-hold-none.toml")
        r = envsched_cmd("--policy", str(policy_without), "image", "rm", "ci")
        assert r.returncode == 0, r.stderr
        assert _holders(site_dir) == [] and _loops(store) == []
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", "holder-test", "--quiet")
        envsched_cmd("--policy", str(policy), "gc", "--idle-images")
