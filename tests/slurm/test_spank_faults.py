"""Faults (#15), on the real Slurm cluster: each case injects one, and a job either fails closed with
one line or runs in the right environment; nothing is left afterwards.

  policy replaced during a job storm, atomically (rename) and by an in-place truncating write (two
  writes 50 ms apart, the first ending before `secret`'s allow_users: on its own a policy in which
  every user may use `secret`): no job ever runs in `secret`, none in another environment than it
  asked for; the jobs that could not tell which policy holds fail closed (policy/load.py reads a
  policy changed in the last 100 ms again, and never uses one still being written).
"""
from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from spanksite import policy_text

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
