"""Container images (#11) through the Torque and OpenPBS contract harnesses: an image from the
admins' store (its Env, CHOS_DIGEST) and a user's own image (`chos image import` as the user),
entered as the user: Torque through the prologue and the set-user-ID starter (mom_harness.py),
OpenPBS through the launch hook and the set-user-ID joiner (test_openpbs.py). Both join a user's
view through es_join.c's userns path; a setuid-root busybox the user put in the image runs as
the user. What the payload saw is asserted; nothing (pin, mount, squashfuse) is left behind."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "images"))
from testlib import payload_lines, run_tool  # noqa: E402
import ocilib  # noqa: E402
from test_openpbs import config, end, job, launch, pbs_site, run_hook, start  # noqa: E402,F401
from test_torque_mom import mom, torque  # noqa: E402,F401  (the Torque harness fixtures)

pytestmark = [pytest.mark.torque, pytest.mark.ns]

PAYLOAD = ('head -1 /etc/os-release; echo "CHOS=$CHOS"; echo "CHOS_DIGEST=$CHOS_DIGEST"; echo "A=$A"; '
           'echo "UID=$(id -u)"; [ -x /opt/suid/busybox ] && echo "SUID=$(/opt/suid/busybox id -u)"; '
           'cat /opt/data/b.txt 2>/dev/null | sed "s/^/B=/"; '
           'echo "UIDMAP=$(tr -s \' \' < /proc/self/uid_map | sed \'s/^ //\')"')   # whose user namespace
INIT_USERNS_MAP = "0 0 4294967295"
POLICY_EXTRA = """
[environments.ci]
image = "ci"
[user_images]
enabled = true
"""


def with_images(text: str, store: Path) -> str:
    assert "\n[site]\n" in text
    return text.replace("\n[site]\n", f'\n[site]\nimage_dir = "{store}"\n', 1) + POLICY_EXTRA


@pytest.fixture(scope="module")
def images(site_dir, test_user, user_fuse):
    """The admins' store with `ci` (v1, then v2 current) and the test user's own image `mine`
    (a crafted squashfs: every file root's, a setuid-root busybox), imported by the user."""
    work = site_dir.root / "oci-images"
    imgs = ocilib.build_all(work)
    store = site_dir.root / "images"
    policy = site_dir.policy(name="images.toml")
    policy.write_text(with_images(policy.read_text(), store))

    def envsched(*args):
        r = run_tool("envsched", ["--policy", str(policy), *args])
        assert r.returncode == 0, r.stderr
        return r.stdout

    home = Path(test_user.pw_dir)
    mine, sqfs = home / "img-work", home / "mine.sqfs"
    try:
        v1 = envsched("image", "import", str(imgs.docker_archive), "ci").split()[1]
        v2 = envsched("image", "import", "--tag", "v2", str(imgs.multi), "ci").split()[1]
        ocilib.crafted_user_squashfs(imgs.tree, mine, sqfs, test_user)
        r = run_tool("chos", ["--policy", str(policy), "image", "import", str(sqfs), "mine"], user=test_user.pw_name)
        assert r.returncode == 0, r.stderr
        yield {"v1": v1, "v2": v2, "mine": r.stdout.split()[1], "store": store, "policy": policy}
    finally:
        run_tool("envsched", ["--policy", str(policy), "gc", "--idle-images"])     # the node's image mounts
        shutil.rmtree(mine, ignore_errors=True)
        sqfs.unlink(missing_ok=True)
        shutil.rmtree(home / ".local", ignore_errors=True)
        policy.unlink(missing_ok=True)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def torque_images(torque, images):
    """The Torque site's policy with the store and user images, put back afterwards."""
    policy = torque[1]
    original = policy.read_text()
    policy.write_text(with_images(original, images["store"]))
    try:
        yield
    finally:
        policy.write_text(original)


def no_squashfuse_left(uid: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["pgrep", "-u", str(uid), "-x", "-r", "R,S,D", "squashfuse"],
                         stdout=subprocess.DEVNULL).returncode == 0:
        assert time.monotonic() < deadline, "squashfuse outlived the job"
        time.sleep(0.1)


def decided(site, job_id: str) -> list:
    log = (site.root / "envsched.log").read_text().splitlines()
    return [line for line in log if re.search(rf"event=(decided|prepared) job={re.escape(job_id)}\b", line)]


# ------------------------------------------------------------------------------ Torque
@pytest.mark.parametrize("version", ["current", "exact"])
def test_torque_store_image(torque, torque_images, mom, test_user, images, version):
    """`ci` runs its current version (v2); `ci@sha256:<12 hex of v1>` that exact older one."""
    request, digest = ("ci", images["v2"]) if version == "current" else (f"ci@{images['v1'][:19]}", images["v1"])
    job_ = mom.qsub(test_user, "#!/bin/sh\n" + PAYLOAD + "\n", ["-v", f"CHOS={request}"])
    assert not hasattr(job_, "stderr"), job_              # not Refused by the submit filter
    r = mom.run(job_)
    assert (r.state, r.exit_status, r.stderr) == ("completed", 0, ""), r
    got = payload_lines(r.stdout)
    assert (got["PRETTY_NAME"], got["CHOS"], got["CHOS_DIGEST"]) == ("OCI test (mini)", "ci", digest), r.stdout
    assert (got["A"], got["B"], got["UID"]) == ("1", "bee", str(test_user.pw_uid)), r.stdout    # the image's Env
    assert got["UIDMAP"] == INIT_USERNS_MAP, r.stdout                    # an admin's view: no user namespace
    assert any(f"digest={digest}" in line for line in decided(torque[2], job_.id))


def test_torque_users_own_image(torque, torque_images, mom, test_user, images):
    job_ = mom.qsub(test_user, "#!/bin/sh\n" + PAYLOAD + "\n", ["-v", "CHOS=user:mine"])
    assert not hasattr(job_, "stderr"), job_
    r = mom.run(job_)
    assert (r.state, r.exit_status, r.stderr) == ("completed", 0, ""), r
    got = payload_lines(r.stdout)
    assert (got["PRETTY_NAME"], got["CHOS"], got["CHOS_DIGEST"]) == ("my own (mini)", "user:mine", images["mine"]), \
        r.stdout
    assert got["SUID"] == got["UID"] == str(test_user.pw_uid), r.stdout     # setuid root does nothing
    assert got["UIDMAP"] == f"{test_user.pw_uid} {test_user.pw_uid} 1", r.stdout   # in the user's namespace
    log = decided(torque[2], job_.id)
    assert any("env=user:mine" in line for line in log) and any(f"digest={images['mine']}" in line for line in log), log
    no_squashfuse_left(test_user.pw_uid)


# ------------------------------------------------------------------------------ OpenPBS
@pytest.mark.parametrize("which,job_id", [("current", "40.srv"), ("exact", "41.srv"), ("mine", "42.srv")])
def test_openpbs_image(site_dir, pbs_site, test_user, home, images, which, job_id):
    """Accepted by the queuejob hook; the launch hook pins the view, the joiner enters it."""
    chos, digest = {"current": ("ci", images["v2"]), "exact": (f"ci@{images['v1'][:19]}", images["v1"]),
                    "mine": ("user:mine", images["mine"])}[which]
    conf = config(pbs_site, images["policy"])
    queued = run_hook("envsched_queuejob.py", "queuejob", conf, job("", chos=chos), requestor=test_user.pw_name)
    assert not queued["rejected"], queued                       # accepted at submit
    j = job(job_id, chos=chos)
    try:
        r = start(conf, home, j, command=["/bin/sh", "-c", PAYLOAD])
        assert not r["rejected"], r
        assert r["progname"] == str(pbs_site / "pbs-join")
        p = launch(r, home)
        assert (p.returncode, p.stderr) == (0, ""), p
        got = payload_lines(p.stdout)
        assert (got["CHOS_DIGEST"], got["UID"]) == (digest, str(test_user.pw_uid)), p.stdout
        if which != "mine":
            assert (got["PRETTY_NAME"], got["CHOS"], got["A"], got["B"]) == ("OCI test (mini)", "ci", "1", "bee"), \
                p.stdout
            assert got["UIDMAP"] == INIT_USERNS_MAP, p.stdout
        else:
            assert (got["PRETTY_NAME"], got["CHOS"]) == ("my own (mini)", "user:mine"), p.stdout
            assert got["SUID"] == str(test_user.pw_uid), p.stdout                       # setuid root does nothing
            assert got["UIDMAP"] == f"{test_user.pw_uid} {test_user.pw_uid} 1", p.stdout   # es_join.c's userns path
            assert (site_dir.run_dir / f"openpbs-{job_id}" / "userns").exists()
            # a second task on this host (a TM task): the same view, from the pin as it was made
            again = launch(start(conf, home, j, command=["/bin/sh", "-c", PAYLOAD]), home)
            assert (again.returncode, payload_lines(again.stdout)) == (0, got), again
    finally:
        end(conf, j)
    assert not (site_dir.run_dir / f"openpbs-{job_id}").exists()
    no_squashfuse_left(test_user.pw_uid)
