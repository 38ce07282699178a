"""Faults (#15), on the real Slurm cluster: each case injects one, and a job either fails closed with
one line or runs in the right environment; nothing is left afterwards.

  policy replaced during a job storm, atomically (rename) and by an in-place truncating write (two
  writes 50 ms apart, the first ending before `secret`'s allow_users: on its own a policy in which
  every user may use `secret`): no job ever runs in `secret`, none in another environment than it
  asked for; the jobs that could not tell which policy holds fail closed (policy/load.py reads a
  policy changed in the last 100 ms again, and never uses one still being written).
  a tree removed while a job for it queues (its decision cached, its shared view kept warm): the job
  fails closed (69, one line); the next job works.
  run_dir wiped (a reboot empties /run) under a running job: the epilog copes, the next job prepares
  afresh.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import installed
from spanksite import policy_text
from testlib import unmount_below

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("views_released")]

STORM_JOBS = int(os.environ.get("ENVSCHED_FAULT_STORM_JOBS", "40"))
PAYLOAD = 'echo "SAW $(head -1 /etc/os-release) CHOS=${CHOS:-}"'


def versions(site, root: Path):
    """Two policies: deb13 open (A) and deb13 disabled (B); `secret` root's only in both, its
    allow_users the last line, after the first half of the text."""
    base = policy_text(root, site.run_dir, site.trees).replace(
        '[environments.secret]\npath = "{}"\nallow_users = ["root"]\n'.format(site.trees["deb13"]), "")
    secret = f'[environments.secret]\npath = "{site.trees["deb13"]}"\n' + "#" * 2000 + '\nallow_users = ["root"]\n'
    a = base + secret
    b = base.replace("[environments.deb13]\n", "[environments.deb13]\nenabled = false\n") + secret
    assert "allow_users" not in a[:len(a) // 2] and "allow_users" not in b[:len(b) // 2]
    return a, b


def write(path: Path, text: str, how: str) -> None:
    if how == "atomic":
        tmp = path.with_name(path.name + ".new")
        tmp.write_text(text)
        tmp.chmod(0o644)
        os.replace(tmp, path)
        return
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data[:len(data) // 2])
        time.sleep(0.05)
        os.write(fd, data[len(data) // 2:])
    finally:
        os.close(fd)


@pytest.mark.parametrize("how", ["atomic", "truncating"])
def test_policy_replaced_during_a_job_storm(site, slurm_user, home, how):
    c = site.cluster
    root = c.dir / f"fault-policy-{how}"
    root.mkdir(mode=0o755, exist_ok=True)
    policy = root / "policy.toml"
    a, b = versions(site, c.dir)
    policy.write_text(a)
    policy.chmod(0o644)
    good = c.plugstack.read_text()
    # validate=0: no submit-time check, so every job is decided on the node, under whatever policy
    # text is there when its slurmstepd reads it
    line = good.split("\n")[0].replace(f"policy={site.policy} ", f"policy={policy} ")
    c.write_plugstack(line + " validate=0\n", restart_slurmd=True)
    stop = threading.Event()
    rng = random.Random(7)

    def writer():
        i = 0
        while not stop.is_set():
            write(policy, (a, b)[i % 2], how)
            i += 1
            time.sleep(rng.choice((0.05, 0.15, 0.4)))

    def one(n: int):
        ask = ("secret", "deb13")[n % 2]
        r = c.srun(f"--chos={ask}", "sh", "-c", PAYLOAD, user=slurm_user.pw_name, cwd=str(home), timeout=120)
        return ask, r.returncode, r.stdout, r.stderr

    w = threading.Thread(target=writer)
    w.start()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(one, range(STORM_JOBS)))
    finally:
        stop.set()
        w.join()
        c.write_plugstack(good, restart_slurmd=True)
    deb13 = (site.trees["deb13"] / "etc" / "os-release").read_text().splitlines()[0]
    wrong, outcomes = [], {}
    for ask, rc, out, err in results:
        outcomes[(ask, rc)] = outcomes.get((ask, rc), 0) + 1
        saw = [line for line in out.splitlines() if line.startswith("SAW ")]
        if ask == "secret" and (rc == 0 or saw):
            wrong.append(f"ran in secret: {out!r} {err!r}")
        elif ask == "deb13" and rc == 0 and saw != [f"SAW {deb13} CHOS=deb13"]:
            wrong.append(f"deb13 job saw {saw!r}")
        elif rc != 0 and rc not in (77, 78):
            wrong.append(f"{ask}: exit {rc}: {err!r}")
        elif rc != 0 and not any(line.startswith("envsched: ") for line in err.splitlines()):
            wrong.append(f"{ask}: exit {rc} without our line: {err!r}")
    assert not wrong, (wrong[:5], outcomes)
    assert outcomes.get(("deb13", 0)), outcomes             # the storm did run jobs
    site.settle(timeout=60)


def _with_policy(site, name: str, text: str):
    """plugstack.conf pointing at a policy of the test's own (slurmd restarted); the site's again after."""
    c = site.cluster
    policy = c.dir / f"{name}.toml"
    policy.write_text(text)
    policy.chmod(0o644)
    good = c.plugstack.read_text()
    c.write_plugstack(good.replace(f"policy={site.policy} ", f"policy={policy} "), restart_slurmd=True)
    return policy, good


def test_a_tree_removed_while_a_job_queues(site, slurm_user, home):
    """A job queued for an environment whose tree is then removed fails closed with one line (69)
    when it starts, though the decision cache holds that request and its shared view is kept warm;
    the next job works and nothing is left."""
    c = site.cluster
    doomed = c.dir / "os" / "doomed"
    shutil.rmtree(doomed, ignore_errors=True)
    shutil.copytree(site.trees["deb13"], doomed, symlinks=True)
    policy, good = _with_policy(site, "fault-tree", policy_text(c.dir, site.run_dir, site.trees, view_hold=30,
                                                                  extra_environments=f"""
[environments.doomed]
path = "{doomed}"
"""))
    try:
        for _ in range(2):                                # decided, then from the cache: both warm
            r = c.srun("--chos=doomed", "sh", "-c", PAYLOAD, user=slurm_user.pw_name, cwd=str(home))
            assert r.returncode == 0 and "CHOS=doomed" in r.stdout, r.stderr
        job = c.sbatch(f"#!/bin/sh\n{PAYLOAD}\n", "--hold", "--chos=doomed", "-o", f"{home}/out-%j.txt",
                       user=slurm_user.pw_name, cwd=str(home))
        shutil.rmtree(doomed)
        c.scontrol("release", job)
        state = c.wait(job, timeout=60)
        out = (home / f"out-{job}.txt").read_text()
        assert (state.state, state.exit_code) == ("FAILED", (69, 0)), (state.fields, out)
        assert "SAW " not in out and [line for line in out.splitlines() if line.startswith("envsched: ")], out
        r = c.srun("--chos=deb13", "sh", "-c", PAYLOAD, user=slurm_user.pw_name, cwd=str(home))
        assert r.returncode == 0 and "CHOS=deb13" in r.stdout, r.stderr
    finally:
        c.write_plugstack(good, restart_slurmd=True)
        shutil.rmtree(doomed, ignore_errors=True)
    subprocess.run([str(installed.envsched()), "--policy", str(policy), "gc", "--idle-views"], check=True,
                   stdout=subprocess.DEVNULL)
    site.settle(timeout=60)


def test_run_dir_wiped_under_a_running_job(site, slurm_user, home):
    """run_dir wiped (as a reboot empties /run) while a job runs in its view: the job's epilog finds
    nothing to release and says nothing wrong, the next job prepares afresh, nothing is left."""
    c = site.cluster
    p = subprocess.Popen(["setpriv", f"--reuid={slurm_user.pw_uid}", f"--regid={slurm_user.pw_gid}",
                          "--init-groups", "--", "srun", "--job-name=fault-wipe", "--chos=deb13", "sleep", "60"],
                         env=dict(c.env, HOME=str(home), USER=slurm_user.pw_name), cwd=str(home),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not c.run(["squeue", "-h", "-n", "fault-wipe", "-t", "RUNNING", "-o", "%i"]).stdout.strip():
            assert time.monotonic() < deadline, c.logs()
            time.sleep(0.1)
        time.sleep(0.5)                                   # the step is in its view
        unmount_below(str(site.run_dir))
        shutil.rmtree(site.run_dir)
        c.run(["scancel", "-n", "fault-wipe"])
        p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    r = c.srun("--chos=deb13", "sh", "-c", PAYLOAD, user=slurm_user.pw_name, cwd=str(home))
    assert r.returncode == 0 and "CHOS=deb13" in r.stdout, r.stderr
    site.settle(timeout=60)
