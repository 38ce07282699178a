"""Container images (#11) end to end on a real Grid Engine: an image from the admins' store
(`-l chos=ci`: its Env, CHOS_DIGEST) in a batch job and through qrsh, an exact version, an
unknown version and a tampered blob refused with one line before anything runs, and a user's
own image (`chos image import` as the user, `-l chos=user:NAME`) entered as the user through the
set-user-ID starter (es_join.c's userns path): a setuid-root program the user put in it runs as
the user. The site's policy gets `ci` and user images for this module and is put back after."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testlib import payload_lines, run_tool
from ugesite import envsched_cmd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "images"))
import ocilib  # noqa: E402

pytestmark = pytest.mark.uge

# what the payload saw: the image (os-release, /opt/data/b.txt), its Env (A, WORDS; v2 adds B=2 as
# ENVB here), CHOS and CHOS_DIGEST, the uid, and the request the JSV recorded for the job
SEEN = ('#!/bin/sh\nhead -1 /etc/os-release; echo "CHOS=$CHOS"; echo "CHOS_DIGEST=$CHOS_DIGEST"; '
        'echo "A=$A"; echo "WORDS=$WORDS"; echo "ENVB=$B"; echo "UID=$(id -u)"; '
        'cat /opt/data/b.txt 2>/dev/null | sed "s/^/B=/"; echo "REQ=$ENVSCHED_REQUEST"\n')


def no_squashfuse_left(uid: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["pgrep", "-u", str(uid), "-x", "-r", "R,S,D", "squashfuse"],
                         stdout=subprocess.DEVNULL).returncode == 0:
        assert time.monotonic() < deadline, "squashfuse outlived the job"
        time.sleep(0.1)


def gc_until_released(site, timeout: float = 15) -> None:
    """qrsh runs no prolog and no epilog: its pin goes with `envsched gc` once the shepherd is gone."""
    deadline = time.monotonic() + timeout
    while site.pins() and time.monotonic() < deadline:
        subprocess.run([envsched_cmd(), "--policy", str(site.policy), "gc"], stdout=subprocess.DEVNULL)
        time.sleep(0.1)
    assert site.pins() == []


@pytest.fixture(scope="module")
def images(uge_site, user_fuse):
    """The admins' store with `ci` (v1, then v2 current), the policy naming it, user images
    allowed; the site's own policy is put back afterwards."""
    root = uge_site.cluster.dir
    work = root / "oci"
    imgs = ocilib.build_all(work)
    store = root / "images"
    original = uge_site.policy.read_text()
    assert "\n[site]\n" in original
    uge_site.policy.write_text(original.replace("\n[site]\n", f'\n[site]\nimage_dir = "{store}"\n', 1) + """
[environments.ci]
image = "ci"
[user_images]
enabled = true
""")

    def envsched(*args):
        r = run_tool("envsched", ["--policy", str(uge_site.policy), *args])
        assert r.returncode == 0, r.stderr
        return r.stdout

    try:
        v1 = envsched("image", "import", str(imgs.docker_archive), "ci").split()[1]
        v2 = envsched("image", "import", "--tag", "v2", str(imgs.multi), "ci").split()[1]
        yield {"v1": v1, "v2": v2, "store": store, "imgs": imgs, "envsched": envsched}
    finally:
        # the node's mounts of the images (holders): let go of them, as an admin would
        run_tool("envsched", ["--policy", str(uge_site.policy), "gc", "--idle-images"])
        uge_site.policy.write_text(original)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def test_batch_job_runs_the_current_image_with_its_env(uge_site, uge_user, images):
    c = uge_site.cluster
    job = c.qsub(SEEN, "-l", "chos=ci", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, out)
    seen = payload_lines(out)
    assert seen["PRETTY_NAME"] == "OCI test (mini)" and seen["CHOS"] == "ci", out
    assert seen["CHOS_DIGEST"] == images["v2"], out
    assert seen["REQ"] in ("ci", f"ci@{images['v2']}"), out              # the JSV's record (pinned at submit)
    assert (seen["A"], seen["WORDS"], seen["ENVB"]) == ("1", "a b=c", "2"), out     # v2's Env
    assert seen["UID"] == str(uge_user.pw_uid) and seen["B"] == "bee", out
    log = uge_site.admin_log.read_text()
    decided = [ln for ln in log.splitlines() if f"event=decided job={job}.1 user={uge_user.pw_name} env=ci" in ln]
    assert decided and f"digest={images['v2']}" in decided[-1], log[-2000:]


def test_qrsh_runs_the_image(uge_site, uge_user, images):
    c = uge_site.cluster
    p = c.qrsh("-l", "chos=ci", 'head -1 /etc/os-release; echo "CHOS_DIGEST=$CHOS_DIGEST A=$A"; exit 3',
               user=uge_user.pw_name)
    try:
        assert p.returncode == 3, (p.stdout, p.stderr)
        out = p.stdout.replace("\r", "")
        assert 'PRETTY_NAME="OCI test (mini)"' in out.splitlines(), (out, p.stderr)
        assert f"CHOS_DIGEST={images['v2']} A=1" in out.splitlines(), (out, p.stderr)
    finally:
        gc_until_released(uge_site)


def test_an_exact_older_version(uge_site, uge_user, images):
    c = uge_site.cluster
    v1 = images["v1"]
    job = c.qsub(SEEN, "-l", f"chos=ci@{v1[:19]}", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, out)
    seen = payload_lines(out)
    assert seen["CHOS_DIGEST"] == v1 and seen["CHOS"] == "ci", out
    assert seen["REQ"] == f"ci@{v1[:19]}", out
    assert (seen["A"], seen["ENVB"], seen["B"]) == ("1", "", "bee"), out      # v1's Env: no B=2


def test_an_unknown_version_is_refused_in_one_line(uge_site, uge_user, images):
    c = uge_site.cluster
    marker = Path(uge_user.pw_dir) / "unknown-ran"
    marker.unlink(missing_ok=True)
    job = c.qsub(f"#!/bin/sh\ntouch {marker}\n", "-l", "chos=ci@sha256:000000000000", user=uge_user.pw_name,
                 cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    assert not marker.exists()
    assert acct.exit_status == 69, (acct.fields, out)
    assert out.splitlines() == [
        "envsched: environment ci@sha256:000000000000 is not on this node (see `chos list --versions`)"], out


def test_a_tampered_image_is_refused_and_nothing_runs(uge_site, uge_user, images):
    c = uge_site.cluster
    blob = images["store"] / "blobs" / "sha256" / (images["v2"].split(":")[1] + ".sqfs")
    data = blob.read_bytes()
    marker = Path(uge_user.pw_dir) / "tampered-ran"
    marker.unlink(missing_ok=True)
    with open(blob, "r+b") as f:               # one byte flipped in place: same size, new mtime/ctime
        f.seek(len(data) // 2)
        f.write(bytes([data[len(data) // 2] ^ 0xFF]))
    try:
        job = c.qsub(f"#!/bin/sh\ntouch {marker}\n", "-l", "chos=ci", user=uge_user.pw_name, cwd=uge_user.pw_dir)
        acct = c.wait(job)
    finally:
        blob.write_bytes(data)
        images["envsched"]("image", "verify", "ci")           # the same digest again: accepted again
    out = c.output(job)
    assert not marker.exists()
    assert acct.exit_status == 69, (acct.fields, out)                     # EnvironmentBroken
    assert len(out.splitlines()) == 1 and out.startswith("envsched: ") and "changed since it was imported" in out, out


@pytest.fixture(scope="module")
def user_image(uge_user, images, uge_site):
    """`mine`, the user's own image: a squashfs the user made (-all-root: every file claims to be
    root's) with a setuid-root busybox, imported by the user without privilege. Its digest."""
    user = uge_user
    home = Path(user.pw_dir)
    work, sqfs = home / "img-work", home / "mine.sqfs"
    try:
        ocilib.crafted_user_squashfs(images["imgs"].tree, work, sqfs, user)
        r = run_tool("chos", ["--policy", str(uge_site.policy), "image", "import", str(sqfs), "mine"],
                     user=user.pw_name)
        assert r.returncode == 0, r.stderr
        yield r.stdout.split()[1]
    finally:
        shutil.rmtree(work, ignore_errors=True)
        sqfs.unlink(missing_ok=True)
        shutil.rmtree(home / ".local", ignore_errors=True)


# the user's view is entered in the user namespace that owns it, which maps the user alone
MINE = ('head -1 /etc/os-release; echo "CHOS=$CHOS"; echo "CHOS_DIGEST=$CHOS_DIGEST"; '
        'echo "SUID=$(/opt/suid/busybox id -u)"; echo "UID=$(id -u)"; echo "REQ=$ENVSCHED_REQUEST"; '
        'echo "UIDMAP=$(tr -s \' \' < /proc/self/uid_map | sed \'s/^ //\')"')


def check_mine(out: str, user, digest: str) -> None:
    seen = payload_lines(out)
    assert seen["PRETTY_NAME"] == "my own (mini)" and seen["CHOS"] == "user:mine", out
    assert seen["CHOS_DIGEST"] == digest, out
    assert seen["SUID"] == seen["UID"] == str(user.pw_uid), out          # setuid root does nothing
    assert seen["UIDMAP"] == f"{user.pw_uid} {user.pw_uid} 1", out       # es_join.c's userns path
    assert seen["REQ"] in ("user:mine", f"user:mine@{digest}"), out       # what the JSV carried


def test_a_users_own_image_through_the_starter(uge_site, uge_user, images, user_image):
    """Run through the set-user-ID starter from the prolog's pin, which the starter joins as the
    user (es_join.c: the pin's `userns`): the setuid-root busybox the user put in it runs as the user."""
    c = uge_site.cluster
    job = c.qsub("#!/bin/sh\n" + MINE + "\n", "-l", "chos=user:mine", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, out, uge_site.admin_log.read_text()[-2000:])
    check_mine(out, uge_user, user_image)
    log = uge_site.admin_log.read_text()
    prepared = [ln for ln in log.splitlines() if f"event=prepared job={job}.1 " in ln]   # the builder's find
    assert prepared and "env=user:mine" in prepared[-1] and f"digest={user_image}" in prepared[-1], log[-2000:]
    no_squashfuse_left(uge_user.pw_uid)


def test_a_users_own_image_through_qrsh(uge_site, uge_user, images, user_image):
    """qrsh runs no prolog: the starter has the resolver pin the user's view, then joins it."""
    c = uge_site.cluster
    p = c.qrsh("-l", "chos=user:mine", MINE, user=uge_user.pw_name)
    try:
        assert p.returncode == 0, (p.stdout, p.stderr)
        check_mine(p.stdout.replace("\r", ""), uge_user, user_image)
    finally:
        gc_until_released(uge_site)
    no_squashfuse_left(uge_user.pw_uid)
