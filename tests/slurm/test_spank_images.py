"""Container images through the real Slurm plugin (#11): an image from the admins' store, exact
versions, a user's own image (entered as the user through squashfuse), and what goes wrong: a
tampered blob, a version removed while a job waits, an image removed while a job runs. The two-node
case runs on the virtual cluster (`vsite`, `vimages`): each node mounts the image itself (its own
holder in its own run_dir), and lets go of it on `envsched gc --idle-images` run on that node."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import installed
from spanksite import lines, policy_text, run_batch
from testlib import run_tool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "images"))
import ocilib  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("views_released")]

SEEN = ('head -1 /etc/os-release; echo "CHOS=$CHOS"; echo "CHOS_DIGEST=$CHOS_DIGEST"; echo "A=$A"; '
        'echo "WORDS=$WORDS"; echo "UID=$(id -u)"; cat /opt/data/b.txt 2>/dev/null | sed "s/^/B=/"')


@contextmanager
def _images(site):
    root = site.cluster.dir
    work = root / "oci"
    imgs = ocilib.build_all(work)
    store = root / "images"
    original = site.policy.read_text()
    site.policy.write_text(policy_text(root, site.run_dir, site.trees, extra_environments="""
[environments.ci]
image = "ci"
[user_images]
enabled = true
""").replace("[defaults]", f'image_dir = "{store}"\n\n[defaults]', 1))

    def envsched(*args):
        r = run_tool("envsched", ["--policy", str(site.policy), *args])
        assert r.returncode == 0, r.stderr
        return r.stdout

    v1 = envsched("image", "import", str(imgs.docker_archive), "ci").split()[1]
    v2 = envsched("image", "import", "--tag", "v2", str(imgs.multi), "ci").split()[1]
    yield {"v1": v1, "v2": v2, "store": store, "imgs": imgs, "envsched": envsched}
    # the node's one mount of each image (holders.py) stays after the jobs (site.image_hold):
    # `envsched gc --idle-images` lets go of them, and nothing of ours is mounted afterwards; on the
    # virtual cluster on each node, inside it (its own run_dir and mount table)
    gc = [str(installed.envsched()), "--policy", str(site.policy), "gc", "--idle-images"]
    if getattr(site, "vnet", None) is None:
        r = run_tool("envsched", gc[1:])
        assert r.returncode == 0 and "released image" in r.stdout, (r.stdout, r.stderr)
        assert not [line for line in open("/proc/self/mountinfo") if f"{site.run_dir}/.images/" in line]
    else:
        released = 0
        for node in site.live_nodes():
            r = site.vnet.run(node, gc)
            assert r.returncode == 0, (node, r.stdout, r.stderr)
            released += "released image" in r.stdout
            assert site.node_mounts(node) == [], node
        assert released, "no node had the image mounted"
    assert not [line for line in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout.splitlines()
                if str(store) in line]
    site.policy.write_text(original)
    shutil.rmtree(store)
    shutil.rmtree(work)


@pytest.fixture(scope="module")
def images(site, slurm_user, user_fuse):
    """The admins' store with `ci` (two versions: v1, then v2 current), the policy naming it, and
    user images allowed; the site's own policy is put back afterwards."""
    with _images(site) as v:
        yield v


@pytest.fixture(scope="module")
def vimages(vsite, slurm_user, user_fuse):
    """The same on the virtual cluster."""
    with _images(vsite) as v:
        yield v


def test_sbatch_runs_the_current_image_with_its_env(site, slurm_user, home, images):
    job, state, out = run_batch(site, home, slurm_user.pw_name, "--chos=ci", script=SEEN)
    assert state.state == "COMPLETED", out
    seen = lines(out)
    assert seen["PRETTY_NAME"] == "OCI test (mini)" and seen["CHOS"] == "ci"
    assert seen["CHOS_DIGEST"] == images["v2"]
    assert seen["A"] == "1" and seen["WORDS"] == "a b=c"       # the image's Env, v2 adds B=2 on v1's
    assert seen["UID"] == str(slurm_user.pw_uid) and seen["B"] == "bee"
    log = (site.cluster.dir / "envsched.log").read_text()
    assert f"event=decided job={job}.batch user={slurm_user.pw_name} env=ci" in log
    assert f"digest={images['v2']}" in log


def test_srun_runs_an_exact_older_version_on_two_nodes(vsite, slurm_user, home, vimages):
    v1 = vimages["v1"]
    r = vsite.cluster.srun("-N2", "-n2", f"--chos=ci@{v1[:19]}", "sh", "-c",
                           'echo "$SLURMD_NODENAME $(hostname) $CHOS_DIGEST"', user=slurm_user.pw_name)
    assert r.returncode == 0, r.stderr
    rows = sorted(r.stdout.splitlines())
    assert len(rows) == 2 and len({row.split()[0] for row in rows}) == 2, rows
    for row in rows:
        node, host, digest = row.split()
        assert node == host and node in vsite.cluster.nodes and digest == v1, rows
        # the node's own holder of the image, in its own run_dir (kept after the job: image_hold)
        assert [m for m in vsite.node_mounts(node) if "/.images/" in m], (node, vsite.node_mounts(node))


def test_an_unknown_version_is_refused_in_one_line(site, slurm_user, home, images):
    r = site.cluster.srun("--chos=ci@sha256:000000000000", "true", user=slurm_user.pw_name)
    assert r.returncode == 69, (r.stdout, r.stderr)
    # (srun's own "task 0: Exited with exit code 69" may come before or after it)
    assert [line for line in r.stderr.splitlines() if not line.startswith("srun: ")] == [
        "envsched: environment ci@sha256:000000000000 is not on this node (see `chos list --versions`)"]


def test_a_tampered_image_is_refused_and_nothing_runs(site, slurm_user, home, images, fault_report):
    with fault_report.case("an image's blob tampered with (one byte)", "slurm") as row:
        blob = images["store"] / "blobs" / "sha256" / (images["v2"].split(":")[1] + ".sqfs")
        data = blob.read_bytes()
        marker = home / "tampered-ran"
        with open(blob, "r+b") as f:               # one byte flipped in place: same size, new mtime/ctime
            f.seek(len(data) // 2)
            f.write(bytes([data[len(data) // 2] ^ 0xFF]))
        try:
            job, state, out = run_batch(site, home, slurm_user.pw_name, "--chos=ci", script=f"touch {marker}")
        finally:
            blob.write_bytes(data)
            images["envsched"]("image", "verify", "ci")           # the same digest again: accepted again
        assert state.state == "FAILED" and not marker.exists()
        assert "changed since it was imported" in out and len(out.strip().splitlines()) == 1
        verify = run_tool("envsched", ["--policy", str(site.policy), "image", "verify", "ci"])
        assert verify.returncode == 0, verify.stdout
        row.faults["blob byte flipped"] += 1
        row.jobs += 1
        job, state, out = run_batch(site, home, slurm_user.pw_name, "--chos=ci", script="head -1 /etc/os-release")
        row.jobs += 1                                          # the next job: the image verified again
        row.wrong_env += 0 if "OCI test (mini)" in out else 1
        assert state.state == "COMPLETED", out
        row.leftovers = len(site.leftovers())


def test_a_version_removed_while_the_job_waits_is_refused(site, slurm_user, home, images, fault_report):
    with fault_report.case("an image version removed while a job for it queues", "slurm") as row:
        c = site.cluster
        marker = home / "removed-ran"
        v1 = images["v1"]
        job = c.sbatch(f"#!/bin/sh\ntouch {marker}\n", "--hold", f"--chos=ci@{v1}", "-o", f"{home}/out-%j.txt",
                       user=slurm_user.pw_name, cwd=str(home))
        images["envsched"]("image", "rm", f"ci@{v1}")
        try:
            c.scontrol("release", job)
            state = c.wait(job, timeout=60)
            site.settle()
        finally:
            images["envsched"]("image", "import", str(images["imgs"].docker_archive), "ci")
            images["envsched"]("image", "import", "--tag", "v2", str(images["imgs"].multi), "ci")
        out = site.output(job, home)
        assert state.state == "FAILED" and not marker.exists()
        assert out.strip() == f"envsched: environment ci@{v1} is not on this node (see `chos list --versions`)"
        log = (c.dir / "envsched.log").read_text()
        assert f"event=broken job={job}.batch user={slurm_user.pw_name} env=ci selector={v1}" in log
        row.faults["image version removed"] += 1
        row.jobs += 1
        job, state, out = run_batch(site, home, slurm_user.pw_name, f"--chos=ci@{v1}", script="head -1 /etc/os-release")
        row.jobs += 1                                          # the next job: the version imported again
        row.wrong_env += 0 if "OCI test (mini)" in out else 1
        assert state.state == "COMPLETED", out
        row.leftovers = len(site.leftovers())


def test_an_image_in_use_cannot_be_removed(site, slurm_user, home, images):
    c = site.cluster
    job = c.sbatch("#!/bin/sh\nsleep 30\n", f"--chos=ci@{images['v1']}", "-o", f"{home}/out-%j.txt", user=slurm_user.pw_name,
                   cwd=str(home))
    try:
        deadline = time.monotonic() + 30
        while c.job(job).state != "RUNNING" or not any(p.name.startswith(f"slurm-{job}") for p in
                                                        site.run_dir.iterdir()):
            assert time.monotonic() < deadline, c.logs()
            time.sleep(0.2)
        r = run_tool("envsched", ["--policy", str(site.policy), "image", "rm", f"ci@{images['v1']}"])
        assert r.returncode == 73, r.stderr
        assert "in use" in r.stderr and len(r.stderr.splitlines()) == 1
    finally:
        c.run(["scancel", job])
        c.wait(job, timeout=60)
        site.settle()
    assert (images["store"] / "blobs" / "sha256" / (images["v1"].split(":")[1] + ".sqfs")).exists()
    r = run_tool("envsched", ["--policy", str(site.policy), "image", "rm", f"ci@{images['v2']}"])
    assert r.returncode == 73 and "named by the policy" in r.stderr      # the version jobs of `ci` get


def test_a_users_own_image_through_the_plugin(site, slurm_user, home, images):
    """Imported by the user, without privilege; run by the plugin as the user through squashfuse:
    the setuid-root program the user put in it runs as the user."""
    user = slurm_user.pw_name
    work = home / "img-work"
    sqfs = home / "mine.sqfs"
    try:
        ocilib.crafted_user_squashfs(images["imgs"].tree, work, sqfs, slurm_user)
        r = run_tool("chos", ["--policy", str(site.policy), "image", "import", str(sqfs), "mine"], user=user)
        assert r.returncode == 0, r.stderr
        digest = r.stdout.split()[1]
        job, state, out = run_batch(site, home, user, "--chos=user:mine", script=(
            'head -1 /etc/os-release; echo "CHOS=$CHOS"; echo "CHOS_DIGEST=$CHOS_DIGEST"; '
            'echo "SUID=$(/opt/suid/busybox id -u)"; echo "UID=$(id -u)"'))
        assert state.state == "COMPLETED", out
        seen = lines(out)
        assert seen["PRETTY_NAME"] == "my own (mini)" and seen["CHOS"] == "user:mine"
        assert seen["CHOS_DIGEST"] == digest
        assert seen["SUID"] == seen["UID"] == str(slurm_user.pw_uid)
        log = (site.cluster.dir / "envsched.log").read_text()
        assert "env=user:mine" in log and f"digest={digest}" in log
    finally:
        shutil.rmtree(work, ignore_errors=True)
        sqfs.unlink(missing_ok=True)
        shutil.rmtree(home / ".local", ignore_errors=True)
    deadline = time.monotonic() + 5
    while subprocess.run(["pgrep", "-u", str(slurm_user.pw_uid), "-x", "-r", "R,S,D", "squashfuse"],
                         stdout=subprocess.DEVNULL).returncode == 0:
        assert time.monotonic() < deadline, "squashfuse outlived the job"
        time.sleep(0.1)


def test_a_warm_image_job_is_decided_by_the_cache_until_the_store_changes(site, slurm_user, home, images):
    """With the view kept warm, the second job of the current image starts from the decision cache;
    the store's state is an input: a blob made group-writable is refused on the very next job, and
    a record rewritten (`image verify`) makes the resolver decide again."""
    original = site.policy.read_text()
    assert "\nview_hold = 0\n" in original
    site.policy.write_text(original.replace("\nview_hold = 0\n", "\nview_hold = 600\n", 1))
    log = site.cluster.dir / "envsched.log"

    def job():
        r = site.cluster.srun("--chos=ci", "sh", "-c", 'echo "JOB=$SLURM_JOB_ID"; echo "CHOS_DIGEST=$CHOS_DIGEST"',
                              user=slurm_user.pw_name)
        seen = lines(r.stdout)
        cached = any(line.endswith("by=cache") and f"event=decided job={seen.get('JOB')}.0 " in line
                     for line in log.read_text().splitlines())
        return r, seen, cached

    blob = images["store"] / "blobs" / "sha256" / (images["v2"].split(":")[1] + ".sqfs")
    try:
        job()
        r, seen, cached = job()
        assert r.returncode == 0 and seen["CHOS_DIGEST"] == images["v2"] and cached, r.stderr
        mode = blob.stat().st_mode & 0o7777
        blob.chmod(mode | 0o020)
        try:
            r, seen, cached = job()
            assert r.returncode == 69 and "CHOS_DIGEST" not in seen and not cached, (r.stdout, r.stderr)
        finally:
            blob.chmod(mode)
        images["envsched"]("image", "verify", "ci")
        r, seen, cached = job()
        assert r.returncode == 0 and seen["CHOS_DIGEST"] == images["v2"] and not cached, r.stderr
        assert job()[2]
    finally:
        site.policy.write_text(original)
        deadline = time.monotonic() + 20
        while [p for p in site.leftovers() if not p.startswith(".views/")] and time.monotonic() < deadline:
            time.sleep(0.1)
        r = run_tool("envsched", ["--policy", str(site.policy), "gc", "--idle-views"])
        assert r.returncode == 0, r.stderr


def test_a_tree_job_is_released_in_c_while_the_node_holds_an_image(site, slurm_user, home, images):
    """While the node holds an image mount (kept site.image_hold after its last view), a tree's
    job is still released by the C epilog (`by=epilog`, es_release.c reads the pin's plan kind);
    an image's job goes to the resolver, which lets go of idle image mounts as their views go.
    The held image is still released by `envsched gc --idle-images` (the fixture's teardown)."""
    def released(job):
        log = (site.cluster.dir / "envsched.log").read_text().splitlines()
        return [line.split("event=released ")[1] for line in log if "event=released" in line and f"slurm-{job}" in line]

    job, state, out = run_batch(site, home, slurm_user.pw_name, "--chos=ci", script="true")
    assert state.state == "COMPLETED", out
    held = site.run_dir / ".images"
    assert held.is_dir() and any(held.iterdir()), "the image's mount is kept (image_hold)"
    assert not any(line.endswith("by=epilog") for line in released(job)), released(job)
    job, state, out = run_batch(site, home, slurm_user.pw_name, "--chos=deb13", script="true")
    assert state.state == "COMPLETED", out
    assert any(held.iterdir()), "still held"
    assert released(job) and all(line.endswith("by=epilog") for line in released(job)), released(job)
