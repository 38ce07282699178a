"""Views shared across jobs and the decision cache's entries, through `envsched prepare` itself
(the Slurm plugin's path: tests/slurm/test_spank_cache.py): one view for every job that needs the
same one, counted per job pin, kept for site.view_hold after the last, collected after crashes."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from testlib import TEST_USER, mount_table

pytestmark = pytest.mark.ns


def prepare(envsched_cmd, policy, key, *extra):
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", key, "--user", TEST_USER, "--request", "deb13",
                     "--owner-pid", str(os.getpid()), "--shared-view", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def release(envsched_cmd, policy, key):
    r = envsched_cmd("--policy", str(policy), "release", "--key", key)
    assert r.returncode == 0, r.stderr


def views(site_dir):
    top = site_dir.run_dir / ".views"
    return {p.name: sorted(r.name for r in (p / "refs").iterdir()) for p in top.iterdir()} if top.exists() else {}


def namespace(path) -> int:
    return os.stat(path).st_ino                 # an nsfs file's inode is the namespace's


def test_jobs_share_one_view_kept_after_the_last_until_collected(site_dir, envsched_cmd, home):
    policy = site_dir.policy(site="view_hold = 600")
    before = mount_table()
    prepare(envsched_cmd, policy, "sv-a")
    prepare(envsched_cmd, policy, "sv-b")
    [(vid, refs)] = views(site_dir).items()
    assert refs == ["sv-a", "sv-b"]
    a, b = site_dir.run_dir / "sv-a" / "mnt", site_dir.run_dir / "sv-b" / "mnt"
    assert namespace(a) == namespace(b) == namespace(site_dir.run_dir / ".views" / vid / "mnt")
    assert (site_dir.run_dir / "sv-a" / "view").read_text().strip() == vid
    # a job joins its own pin as before: the view's tree
    r = envsched_cmd("--policy", str(policy), "join", "--key", "sv-b", "--cwd", str(home), "--",
                     "head", "-1", "/etc/os-release")
    assert r.returncode == 0 and r.stdout.strip() == 'PRETTY_NAME="debian 13 (mini)"', r.stderr
    r = envsched_cmd("--policy", str(policy), "pins", "--views")
    assert r.returncode == 0 and [json.loads(line) for line in r.stdout.splitlines()] == [
        {"view": vid, "environment": "deb13", "digest": "", "jobs": ["sv-a", "sv-b"], "hold": 600.0}], r.stdout
    release(envsched_cmd, policy, "sv-a")
    assert views(site_dir) == {vid: ["sv-b"]}
    release(envsched_cmd, policy, "sv-b")
    assert views(site_dir) == {vid: []}                     # warm: site.view_hold
    r = envsched_cmd("--policy", str(policy), "gc")
    assert views(site_dir) == {vid: []}, r.stdout          # not idle for 600 s yet
    r = envsched_cmd("--policy", str(policy), "gc", "--idle-views")
    assert r.returncode == 0 and f"released view {vid}" in r.stdout, r.stderr
    assert views(site_dir) == {} and mount_table() == before


def test_with_no_hold_the_view_goes_with_its_last_job(site_dir, envsched_cmd, home):
    policy = site_dir.policy(site="view_hold = 0")
    before = mount_table()
    prepare(envsched_cmd, policy, "sv-c")
    prepare(envsched_cmd, policy, "sv-d")
    release(envsched_cmd, policy, "sv-c")
    assert list(views(site_dir).values()) == [["sv-d"]]
    release(envsched_cmd, policy, "sv-d")
    assert views(site_dir) == {} and mount_table() == before


def test_a_view_lost_meanwhile_is_built_again_and_running_jobs_keep_theirs(site_dir, envsched_cmd, home):
    policy = site_dir.policy(site="view_hold = 0")
    prepare(envsched_cmd, policy, "sv-e")
    [vid] = views(site_dir)
    shared = site_dir.run_dir / ".views" / vid / "mnt"
    old = namespace(shared)
    subprocess.run(["umount", "-l", str(shared)], check=True)    # as a crash mid-release would leave it
    try:
        prepare(envsched_cmd, policy, "sv-f")
        assert namespace(site_dir.run_dir / "sv-f" / "mnt") == namespace(shared) != old
        # the first job still has its view, through its own pin
        r = envsched_cmd("--policy", str(policy), "join", "--key", "sv-e", "--cwd", str(home), "--", "true")
        assert r.returncode == 0, r.stderr
    finally:
        release(envsched_cmd, policy, "sv-e")
        release(envsched_cmd, policy, "sv-f")
    assert views(site_dir) == {}


def test_gc_drops_the_references_of_pins_that_are_gone(site_dir, envsched_cmd, home):
    """A job pin removed without its release (run_dir cleaned by hand, a killed resolver): gc drops
    its reference, and the view, idle then, goes."""
    policy = site_dir.policy(site="view_hold = 0")
    before = mount_table()
    prepare(envsched_cmd, policy, "sv-g")
    [vid] = views(site_dir)
    pin = site_dir.run_dir / "sv-g"
    subprocess.run(["umount", "-l", str(pin / "mnt")], check=True)
    subprocess.run(["rm", "-rf", str(pin)], check=True)
    assert views(site_dir) == {vid: ["sv-g"]}
    r = envsched_cmd("--policy", str(policy), "gc")
    assert r.returncode == 0, r.stderr
    assert views(site_dir) == {} and mount_table() == before


def test_not_shared_isolated_views_and_the_cache_entry_of_a_shared_one(site_dir, envsched_cmd, home):
    policy = site_dir.policy(site="view_hold = 0", body=f"""
[environments.iso]
path = "{site_dir.envs['deb13']}"
namespaces = ["ipc", "uts"]
""")
    cache = site_dir.run_dir / ".decisions"
    inputs = f"uid=test\toption=iso\tchos=\tpartition=\taccount=\tconfig=ns-{os.getpid()}"
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", "sv-h", "--user", TEST_USER, "--request", "iso",
                     "--owner-pid", str(os.getpid()), "--shared-view", "--decision-cache", "--inputs", inputs)
    assert r.returncode == 0, r.stderr
    try:
        assert views(site_dir) == {}                              # a job's own namespaces: its own view
        assert not (site_dir.run_dir / "sv-h" / "view").exists()
        assert not [p for p in cache.iterdir() if inputs in p.read_text()] if cache.exists() else True
    finally:
        release(envsched_cmd, policy, "sv-h")
    shared = inputs.replace("option=iso", "option=deb13")
    prepare(envsched_cmd, policy, "sv-i", "--decision-cache", f"--inputs={shared}")
    try:
        [entry] = [p for p in cache.iterdir() if f"inputs\t{shared}\n" in p.read_text()]
        st = entry.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
        lines = entry.read_text().splitlines()
        assert lines[0] == "envsched-decision 1" and lines[-1] == "end"
        assert f"view\t{next(iter(views(site_dir)))}" in lines and "env\tdeb13\toption\t-" in lines
        # an edit of the policy: `gc` drops the entries made under the old one
        policy.write_text(policy.read_text() + "\n")
        r = envsched_cmd("--policy", str(policy), "gc")
        assert r.returncode == 0 and not entry.exists(), r.stderr
    finally:
        release(envsched_cmd, policy, "sv-i")


def test_two_jobs_released_at_once_never_leave_their_view(site_dir, envsched_cmd, home):
    """Both releases drop their reference while the view is locked (here by the test, as by a join
    or the other release): each must wait for the lock of the view it used rather than skip it,
    or the last one out would leave it behind."""
    import fcntl
    import time
    from concurrent.futures import ThreadPoolExecutor
    policy = site_dir.policy(site="view_hold = 0")
    before = mount_table()
    keys = ["sv-ra", "sv-rb"]
    for key in keys:
        prepare(envsched_cmd, policy, key)
    [vid] = views(site_dir)
    fd = os.open(site_dir.run_dir / ".views" / vid, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with ThreadPoolExecutor(2) as pool:
            running = [pool.submit(envsched_cmd, "--policy", str(policy), "release", "--key", k) for k in keys]
            deadline = time.monotonic() + 30
            while views(site_dir).get(vid) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)                                   # a release that skips the view is done by now
            fcntl.flock(fd, fcntl.LOCK_UN)
            done = [f.result(timeout=60) for f in running]
    finally:
        os.close(fd)
    assert [r.returncode for r in done] == [0, 0], [r.stderr for r in done]
    assert views(site_dir) == {} and mount_table() == before


def write_faults(site_dir, *points):
    """The root-only switch of the fault points (src/envsched/faults.py, plugins/common/es_fault.c)."""
    site_dir.run_dir.mkdir(mode=0o700, exist_ok=True)
    path = site_dir.run_dir / ".faults"
    path.write_text("".join(p + "\n" for p in points))
    path.chmod(0o600)
    return path


# the resolver's fault points (src/envsched/faults.py) and where the test meets them: at prepare
# (the resolver killed), in the view builder (a child of the resolver: the resolver fails closed),
# at release, at gc
AT_PREPARE = ["pin-made", "view-locked", "view-built", "view-bound", "pin-bound", "meta-before", "meta-written",
              "memo-written", "cache-before-write", "cache-written"]
IN_BUILDER = ["view-ns-made", "view-staged", "view-mounted-env_dir", "view-mounted-bind", "view-mounted-pivot_root"]
AT_RELEASE = ["release-unmounted", "view-unref", "release-detached"]
AT_GC = ["gc-released"]


@pytest.mark.parametrize("point", AT_PREPARE + IN_BUILDER + AT_RELEASE + AT_GC)
def test_killed_at_each_step_of_a_shared_view_the_next_job_works_and_gc_leaves_nothing(
        site_dir, envsched_cmd, home, point, fault_report):
    """kill -9 at each step of a pin's and its shared view's life (#15: after the namespace is
    made, after each class of mount, after the pin, before and after the metadata and cache
    writes, during release and gc), with the job's owner gone too: a job whose builder was killed
    fails closed with one line (71); the next job gets a working view, and `envsched gc` leaves no
    pin, no view, no cache file half written and no mount."""
    import time
    with fault_report.case(f"resolver kill -9 at {point}", "slurm") as row:
        _killed_at(site_dir, envsched_cmd, home, point, row)


def _killed_at(site_dir, envsched_cmd, home, point, row):
    import time
    policy = site_dir.policy(site="view_hold = 0")
    before = mount_table()
    owner = subprocess.Popen(["sleep", "600"])
    faults = None
    inputs = f"uid=test\toption=deb13\tchos=\tpartition=\taccount=\tconfig=faults-{os.getpid()}"
    try:
        def prepare_owned(key):
            row.jobs += 1
            return envsched_cmd("--policy", str(policy), "prepare", "--key", key, "--user", TEST_USER,
                                "--request", "deb13", "--owner-pid", str(owner.pid), "--shared-view",
                                "--decision-cache", "--inputs", inputs)
        if point in AT_RELEASE + AT_GC:
            assert prepare_owned("sv-f1").returncode == 0
            if point in AT_GC:
                owner.kill()
                owner.wait()                             # the pin is stale now: gc's to release
            faults = write_faults(site_dir, point)
            r = (envsched_cmd("--policy", str(policy), "gc") if point in AT_GC else
                 envsched_cmd("--policy", str(policy), "release", "--key", "sv-f1"))
        else:
            faults = write_faults(site_dir, point)
            r = prepare_owned("sv-f1")
        row.faults[f"kill -9 at {point}"] += 1
        if point in IN_BUILDER:                          # the builder killed: one line, exit 71
            said = [line for line in r.stderr.splitlines() if line.startswith("envsched: ")]
            assert r.returncode == 71 and len(said) == 1 and "Traceback" not in r.stderr, (r.returncode, r.stderr)
        else:
            assert r.returncode == -9, (r.returncode, r.stderr)           # killed at the point
    finally:
        if faults is not None:
            faults.unlink()
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    # the next job on the node: a working view of deb13 (from the cache entry if one was written)
    row.jobs += 1
    meta = prepare(envsched_cmd, policy, "sv-f2", "--decision-cache", "--inputs", inputs)
    assert meta["environment"] == "deb13"
    r = envsched_cmd("--policy", str(policy), "join", "--key", "sv-f2", "--", "sh", "-c", "head -1 /etc/os-release")
    row.wrong_env += r.returncode == 0 and "debian 13" not in r.stdout
    assert r.returncode == 0 and "debian 13" in r.stdout, (r.stdout, r.stderr)
    release(envsched_cmd, policy, "sv-f2")
    # gc: the dead owner's pin, its reference, the idle view, a half-written cache file: nothing left
    cache = site_dir.run_dir / ".decisions"
    deadline = time.monotonic() + 10
    while True:
        r = envsched_cmd("--policy", str(policy), "gc", "--idle-views")
        assert r.returncode == 0, r.stderr
        left = sorted(p.name for p in site_dir.run_dir.iterdir() if p.name.startswith("sv-"))
        left += [f".decisions/{p.name}" for p in cache.glob("*.tmp")] if cache.exists() else []
        left += [f".views/{v}" for v in views(site_dir)]
        left += [f"mount {m}" for m in sorted(set(mount_table()) - set(before))]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    row.leftovers = len(left)
    assert left == [], left
    if cache.exists():                                   # entries are whole, or gone
        for entry in cache.iterdir():
            assert entry.read_text().endswith("\nend\n"), entry
