"""The decision cache and shared views through the real Slurm plugin (#13).

A job whose inputs (user, groups, request, ~/.chos, partition, account, the policy file, the tree's
owners and modes) are those of an earlier job on the node, all unchanged, is started from the
cache: no resolver, its view bound from the node's shared one (the admin log says `by=cache`).
Every input change is honoured on the very next job: the cache can never widen what the policy
allows."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from spanksite import policy_text
from testlib import USER_SUFFIX, payload_lines, run_tool

pytestmark = [pytest.mark.slurm]

GROUP = "envsched-cg" + USER_SUFFIX
SHOW = 'echo "JOB=$SLURM_JOB_ID"; echo "CHOS=$CHOS"; echo "FOO=$FOO"; head -1 /etc/os-release'


@pytest.fixture(scope="module")
def group(slurm_user):
    subprocess.run(["groupadd", GROUP], check=True)
    subprocess.run(["gpasswd", "-a", slurm_user.pw_name, GROUP], check=True, stdout=subprocess.DEVNULL)
    yield GROUP
    subprocess.run(["groupdel", GROUP], check=True)


def cached_policy(site, foo: str = "1", grp_enabled: bool = True) -> str:
    return policy_text(site.cluster.dir, site.run_dir, site.trees, view_hold=600, extra_environments=f"""
[environments.grp]
path = "{site.trees['deb13']}"
allow_groups = ["{GROUP}"]
enabled = {str(grp_enabled).lower()}
env.set = {{ FOO = "{foo}" }}
""")


@pytest.fixture
def warm(site, group):
    """The policy with shared views kept warm (view_hold = 600), no submit-time check; afterwards
    every job pin gone,
    the warm views let go (`envsched gc --idle-views`) and nothing of ours left mounted."""
    original = site.policy.read_text()
    site.policy.write_text(cached_policy(site))
    # no submit-time check: what is tested is the node's decision (cache or resolver), which a
    # refusal in srun would hide
    plugstack = site.cluster.plugstack.read_text()
    site.cluster.write_plugstack(plugstack.rstrip("\n") + " validate=0\n")
    yield site
    site.cluster.write_plugstack(plugstack)
    pins_released(site)
    r = run_tool("envsched", ["--policy", str(site.policy), "gc", "--idle-views"])
    assert r.returncode == 0, r.stderr
    site.policy.write_text(original)
    site.settle()


def pins_released(site) -> None:
    """Wait for the job epilogs to release every job's pin (the shared views may stay)."""
    deadline = time.monotonic() + 20
    while [p for p in site.leftovers() if not p.startswith(".views/")] and time.monotonic() < deadline:
        time.sleep(0.1)


def job(site, user, *args):
    """srun one task as `user`: (exit code, what the payload saw, its stderr, its job id)."""
    r = site.cluster.srun(*args, "sh", "-c", SHOW, user=user.pw_name)
    seen = payload_lines(r.stdout)
    return r.returncode, seen, r.stderr, seen.get("JOB", "")


def by_cache(site, jobid: str) -> bool:
    log = (site.cluster.dir / "envsched.log").read_text()
    return f"event=decided job={jobid}.0 " in log and any(
        line.endswith("by=cache") for line in log.splitlines() if f"event=decided job={jobid}.0 " in line)


def test_a_second_job_is_decided_by_the_cache_and_shares_the_view(warm, slurm_user, home):
    rc, first, err, j1 = job(warm, slurm_user, "--chos=deb13")
    assert rc == 0 and first["CHOS"] == "deb13", err
    assert not by_cache(warm, j1)                              # the resolver decided, and wrote it down
    rc, second, err, j2 = job(warm, slurm_user, "--chos=deb13")
    assert rc == 0, err
    assert by_cache(warm, j2)
    assert {k: v for k, v in second.items() if k != "JOB"} == {k: v for k, v in first.items() if k != "JOB"}
    # one shared view, kept warm, used by no job now; every job's own pin released
    pins_released(warm)
    views = sorted((warm.run_dir / ".views").iterdir())
    assert len(views) == 1 and not list((views[0] / "refs").iterdir())
    assert [p for p in warm.leftovers() if not p.startswith(".views/")] == []


def test_a_changed_chos_file_is_honoured_on_the_next_job(warm, slurm_user, home):
    chos = home / ".chos"
    chos.write_text("deb13\n")
    os.chown(chos, slurm_user.pw_uid, slurm_user.pw_gid)
    assert job(warm, slurm_user)[1]["CHOS"] == "deb13"
    rc, seen, err, j = job(warm, slurm_user)
    assert seen["CHOS"] == "deb13" and by_cache(warm, j), err
    chos.write_text("deb12\n")
    rc, seen, err, j = job(warm, slurm_user)
    assert rc == 0 and seen["CHOS"] == "deb12" and not by_cache(warm, j), err
    chos.unlink()                                              # absent: the site default, deb12
    rc, seen, err, j = job(warm, slurm_user, "--partition=legacy")
    assert rc == 0 and seen["CHOS"] == "deb13", err            # legacy's default; another entry


def test_a_group_removed_is_honoured_on_the_next_job(warm, slurm_user, home, group):
    job(warm, slurm_user, "--chos=grp")
    rc, seen, err, j = job(warm, slurm_user, "--chos=grp")
    assert rc == 0 and seen["CHOS"] == "grp" and by_cache(warm, j), err
    subprocess.run(["gpasswd", "-d", slurm_user.pw_name, group], check=True, stdout=subprocess.DEVNULL)
    try:
        rc, seen, err, j = job(warm, slurm_user, "--chos=grp")
        assert rc == 77 and "CHOS" not in seen, (seen, err)
    finally:
        subprocess.run(["gpasswd", "-a", slurm_user.pw_name, group], check=True, stdout=subprocess.DEVNULL)


def test_a_policy_edit_is_honoured_on_the_next_job(warm, slurm_user, home):
    job(warm, slurm_user, "--chos=grp")
    rc, seen, err, j = job(warm, slurm_user, "--chos=grp")
    assert seen["FOO"] == "1" and by_cache(warm, j), err
    warm.policy.write_text(cached_policy(warm, foo="2"))        # in place: same file, new content
    rc, seen, err, j = job(warm, slurm_user, "--chos=grp")
    assert rc == 0 and seen["FOO"] == "2" and not by_cache(warm, j), err
    rc, seen, err, j = job(warm, slurm_user, "--chos=grp")
    assert seen["FOO"] == "2" and by_cache(warm, j), err
    tmp = warm.policy.with_suffix(".new")                       # replaced (rename): disabled
    tmp.write_text(cached_policy(warm, foo="2", grp_enabled=False))
    tmp.chmod(0o644)
    os.rename(tmp, warm.policy)
    rc, seen, err, j = job(warm, slurm_user, "--chos=grp")
    assert rc == 77 and "CHOS" not in seen, (seen, err)
    assert "grp" in err and "disabled" in err, err


def test_a_tree_made_writable_is_honoured_on_the_next_job(warm, slurm_user, home):
    tree = warm.trees["deb13"]
    job(warm, slurm_user, "--chos=deb13")
    rc, seen, err, j = job(warm, slurm_user, "--chos=deb13")
    assert by_cache(warm, j), err
    for target in (tree, tree / "etc"):
        mode = target.stat().st_mode & 0o7777
        target.chmod(mode | 0o020)
        try:
            rc, seen, err, j = job(warm, slurm_user, "--chos=deb13")
            assert rc == 69 and "CHOS" not in seen and "writable by group or others" in err, (target, seen, err)
        finally:
            target.chmod(mode)


def test_no_cache_when_the_plugin_says_so(warm, slurm_user, home):
    c = warm.cluster
    text = c.plugstack.read_text()
    c.write_plugstack(text.rstrip("\n") + " cache=0\n")
    try:
        for _ in range(2):
            rc, seen, err, j = job(warm, slurm_user, "--chos=deb13")
            assert rc == 0 and seen["CHOS"] == "deb13" and not by_cache(warm, j), err
        assert not (warm.run_dir / ".views").exists() or not list((warm.run_dir / ".views").iterdir())
    finally:
        c.write_plugstack(text)


@pytest.mark.usefixtures("views_released")
def test_the_submit_check_answers_from_the_users_own_cache(site, slurm_user, home):
    """srun's submit-time check gives the answer it gave before for the same request while nothing it
    read changed, without the resolver; the answer lives in the user's home (it is advice: the node
    decides again), so what a user writes there changes only what they are told at submit."""
    entries = home / ".cache" / "envsched" / "submit"
    r = site.cluster.srun("--chos=deb13", "true", user=slurm_user.pw_name)
    assert r.returncode == 0, r.stderr
    [entry] = [p for p in entries.iterdir() if f"\toption=deb13\t" in p.read_text()
               and f"\tpolicy={site.policy}\n" in p.read_text()]
    assert entry.stat().st_uid == slurm_user.pw_uid and entry.stat().st_mode & 0o777 == 0o600
    text = entry.read_text()
    assert "\nexit\t0\n" in text
    # what the user's own file says is what srun answers: so it was not the resolver
    entry.write_text(text.replace("\nexit\t0\n", "\nexit\t77\nerr\tenvsched: MARKER from the cache\n"))
    r = site.cluster.srun("--chos=deb13", "true", user=slurm_user.pw_name)
    assert r.returncode == 77 and r.stderr.strip() == "envsched: MARKER from the cache", r.stderr
    # any input changed (here the policy touched): the resolver answers, and writes the entry again
    os.utime(site.policy)
    r = site.cluster.srun("--chos=deb13", "true", user=slurm_user.pw_name)
    assert r.returncode == 0, r.stderr
    assert "\nexit\t0\n" in entry.read_text()
    # a refusal is kept too, and given again with its one line
    first = site.cluster.srun("--chos=secret", "true", user=slurm_user.pw_name)
    again = site.cluster.srun("--chos=secret", "true", user=slurm_user.pw_name)
    assert first.returncode == again.returncode == 77 and first.stderr == again.stderr, (first.stderr, again.stderr)
    assert [p for p in entries.iterdir() if "\toption=secret\t" in p.read_text()]


def test_an_entry_that_is_not_roots_alone_is_never_applied(warm, slurm_user, home):
    job(warm, slurm_user, "--chos=deb13")
    [entry] = [p for p in (warm.run_dir / ".decisions").iterdir() if "\toption=deb13\t" in p.read_text()]
    for change in (lambda: os.chown(entry, slurm_user.pw_uid, 0), lambda: entry.chmod(0o644)):
        change()
        rc, seen, err, j = job(warm, slurm_user, "--chos=deb13")
        assert rc == 0 and seen["CHOS"] == "deb13" and not by_cache(warm, j), err
        # the resolver wrote it again, root's alone: the next job is served from it
        assert entry.stat().st_uid == 0 and entry.stat().st_mode & 0o777 == 0o600
        assert by_cache(warm, job(warm, slurm_user, "--chos=deb13")[3])


def test_a_chos_file_replaced_by_a_link_is_the_resolvers_to_judge(warm, slurm_user, home):
    chos = home / ".chos"
    chos.write_text("deb13\n")
    os.chown(chos, slurm_user.pw_uid, slurm_user.pw_gid)
    job(warm, slurm_user)
    assert by_cache(warm, job(warm, slurm_user)[3])
    target = home / "elsewhere"
    target.write_text("deb13\n")
    os.chown(target, slurm_user.pw_uid, slurm_user.pw_gid)
    chos.unlink()
    chos.symlink_to(target)                                   # the same text, through a link
    os.lchown(chos, slurm_user.pw_uid, slurm_user.pw_gid)
    try:
        rc, seen, err, j = job(warm, slurm_user)
        assert not by_cache(warm, j), (rc, seen, err)
        assert "symbolic link" in err or rc != 0 or seen.get("CHOS") != "deb13", (rc, seen, err)
    finally:
        chos.unlink()
        target.unlink()


def test_forged_partition_never_reaches_another_partitions_cached_decision(warm, slurm_user, home):
    """The cache is keyed on the partition the controller gave the job (the job record), never on
    the job's environment: a job that forges SLURM_JOB_PARTITION gets its own partition's decision."""
    job(warm, slurm_user, "-p", "legacy")
    rc, seen, err, j = job(warm, slurm_user, "-p", "legacy")
    assert seen["CHOS"] == "deb13" and by_cache(warm, j), err           # legacy's default, cached
    forged = {"SLURM_JOB_PARTITION": "legacy"}
    for _ in range(2):
        r = warm.cluster.srun("-p", "debug", "sh", "-c", SHOW, user=slurm_user.pw_name, env=forged)
        assert r.returncode == 0 and payload_lines(r.stdout)["CHOS"] == "deb12", r.stderr
