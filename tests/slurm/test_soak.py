"""The soak (#15): many standalone jobs through the real Slurm cluster, several at a time, with
mixed environments, users and outcomes; afterwards nothing may be left.

`make soak` runs ENVSCHED_SOAK_JOBS=10000 (with a report on stdout); `make test` (CI) the bounded
default of 200. Each job is an `srun --job-name=soak-N` of one of these kinds, drawn with a fixed
seed (ENVSCHED_SOAK_SEED):

  tree      --chos=deb12 or deb13: the payload prints its /etc/os-release and $CHOS
  local     --chos=local: the host's
  userfile  no --chos, the user's ~/.chos names deb13
  refused   --chos=secret (root's only): refused at submission, exit 77, one line, no job
  broken    --chos=broken (a tree others can write): refused at start, exit 69
  fails     a tree, the payload exits 3: srun exits 3
  cancel    a tree, the payload sleeps; scancel while it runs
  image     --chos=ci: an image of the admins' store (OCI, imported with `envsched image import`)
  userimage --chos=user:mine: the user's own image (imported by the user, entered through squashfuse)

by three users, ENVSCHED_SOAK_PARALLEL (4) at a time, with the site's decision cache and shared
views (view_hold = 2 s: views are let go while jobs keep coming). Checked per job: the environment
the payload saw (a job in the wrong environment is counted, and must be none), the exit code, the
one line of a refusal. Checked at the end: every job that started has its line in the admin log;
after `envsched gc --idle-views`, no pin, job record, shared view, mount below run_dir, PID
namespace init, loop device or FUSE mount is left; run_dir and the decision cache stay small (the
size at the end against the size a quarter of the way); the resolver's peak RSS flat (its last
runs against its first); no squashfuse of a user's image outlives its job. The run is one row of
the fault and soak report (tests/faultreport.py). Fault injection has its own suite
(test_spank_faults.py); the multi-node cases run on the virtual cluster.
"""
from __future__ import annotations

import os
import random
import re
import sys
import shutil
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from spanksite import PLUGIN_DIR, policy_text
from testlib import USER_SUFFIX, mount_table, namespace_inits, real_user, run_tool

import installed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "images"))
import ocilib  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("views_released")]

JOBS = int(os.environ.get("ENVSCHED_SOAK_JOBS", "200"))
PARALLEL = int(os.environ.get("ENVSCHED_SOAK_PARALLEL", "4"))
SEED = int(os.environ.get("ENVSCHED_SOAK_SEED", "1"))
KINDS = (("tree", 44), ("local", 6), ("userfile", 10), ("refused", 7), ("broken", 5), ("fails", 8), ("cancel", 5),
         ("image", 9), ("userimage", 6))
PAYLOAD = 'echo "SOAK $(head -1 /etc/os-release) CHOS=${CHOS:-}"'
COMMANDS = ("prepare", "release", "gc", "validate", "join", "exec", "explain")
USERS = ("envsched-so1" + USER_SUFFIX, "envsched-so2" + USER_SUFFIX)


def _first_line(path: Path) -> str:
    return path.read_text().splitlines()[0]


def _loops() -> List[str]:
    return sorted(subprocess.run(["losetup", "-a"], stdout=subprocess.PIPE, text=True).stdout.splitlines())


def _fuse() -> List[str]:
    return sorted(line for line in mount_table() if " fuse" in line)


def _tree_bytes(top: Path) -> Tuple[int, int]:
    """(entries, bytes of regular files) below top, not crossing into other file systems."""
    entries = size = 0
    if not top.exists():
        return 0, 0
    dev = top.stat().st_dev
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_dev == dev]
        for f in files:
            entries += 1
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if st.st_dev == dev and (st.st_mode & 0o170000) == 0o100000:
                size += st.st_size
        entries += len(dirs)
    return entries, size


@pytest.fixture(scope="module")
def soak_site(site, slurm_user, user_fuse):
    """The site's cluster with a soak policy (a broken tree, an image `ci` in the admins' store, users'
    images allowed, view_hold = 2 s), each user's own image `mine`, and the resolver behind a wrapper
    that records each run's peak RSS; the site's own plugstack line again at the end."""
    c = site.cluster
    root = c.dir / "soak"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(mode=0o755)
    broken = root / "broken"
    shutil.copytree(site.trees["deb13"], broken, symlinks=True)
    broken.chmod(0o777)                                  # others can write it: the resolver refuses it
    policy = root / "policy.toml"
    store = root / "images"
    policy.write_text(policy_text(c.dir, site.run_dir, site.trees, view_hold=2, extra_environments=f"""
[environments.broken]
path = "{broken}"

[environments.ci]
image = "ci"

[user_images]
enabled = true
""").replace("[defaults]", f'image_dir = "{store}"\n\n[defaults]', 1))
    policy.chmod(0o644)
    imgs = ocilib.build_all(root / "oci")
    r = run_tool("envsched", ["--policy", str(policy), "image", "import", str(imgs.docker_archive), "ci"])
    assert r.returncode == 0, r.stderr
    expected_image = _first_line(imgs.tree / "etc" / "os-release")
    resolver = Path(installed.envsched())
    rss = root / "resolver-rss.log"
    wrapper = root / "resolver"
    # the node's runs (root) are recorded; the submit-time check runs as the user, who cannot write here
    wrapper.write_text(f'#!/bin/bash\n[ "$EUID" = 0 ] || exec {resolver} "$@"\n'
                       f'exec /usr/bin/time -a -o {rss} -f "%M %C" {resolver} "$@"\n')
    wrapper.chmod(0o755)
    good = c.plugstack.read_text()
    line = good.split("\n")[0]
    line = line.replace(f"policy={site.policy} ", f"policy={policy} ").replace(f"resolver={resolver} ",
                                                                               f"resolver={wrapper} ")
    assert f"policy={policy} " in line and f"resolver={wrapper} " in line, line
    with real_user(USERS[0]) as u1, real_user(USERS[1]) as u2:
        users = [slurm_user, u1, u2]
        for pw in users:                                  # ~/.chos: the `userfile` kind's request
            chos = Path(pw.pw_dir) / ".chos"
            chos.write_text("deb13\n")
            os.chown(chos, pw.pw_uid, pw.pw_gid)
            mine = Path(pw.pw_dir) / "soak-img"           # the `userimage` kind's own image
            ocilib.crafted_user_squashfs(imgs.tree, mine, Path(pw.pw_dir) / "soak.sqfs", pw)
            r = run_tool("chos", ["--policy", str(policy), "image", "import", str(Path(pw.pw_dir) / "soak.sqfs"),
                                  "mine"], user=pw.pw_name)
            assert r.returncode == 0, r.stderr
            shutil.rmtree(mine)
            (Path(pw.pw_dir) / "soak.sqfs").unlink()
        c.write_plugstack(line + "\n", restart_slurmd=True)
        try:
            yield site, policy, root, rss, users, expected_image
        finally:
            c.write_plugstack(good, restart_slurmd=True)
            run_tool("envsched", ["--policy", str(policy), "gc", "--idle-images"])
            for pw in users:
                (Path(pw.pw_dir) / ".chos").unlink(missing_ok=True)
                shutil.rmtree(Path(pw.pw_dir) / ".local", ignore_errors=True)
                # the submit-time answers srun kept for the soak's policy (submitcache.py)
                answers = Path(pw.pw_dir) / ".cache" / "envsched" / "submit"
                for entry in answers.glob("*") if answers.is_dir() else ():
                    if f"\tpolicy={policy}\n" in entry.read_text(errors="replace"):
                        entry.unlink()
            shutil.rmtree(root, ignore_errors=True)


def test_soak(soak_site, capsys, fault_report):
    site, policy, root, rss, users, expected_image = soak_site
    c = site.cluster
    rng = random.Random(SEED)
    kinds = [k for k, w in KINDS for _ in range(w)]
    plan = [(n, rng.choice(kinds), rng.choice(users).pw_name, rng.choice(("deb12", "deb13"))) for n in range(JOBS)]
    expected_line = {name: _first_line(tree / "etc" / "os-release") for name, tree in site.trees.items()}
    expected_line["local"] = _first_line(Path("/etc/os-release"))
    expected_line["ci"] = expected_image
    expected_line["user:mine"] = 'PRETTY_NAME="my own (mini)"'
    loops, fuse, inits = _loops(), _fuse(), namespace_inits(str(c.dir))
    results: Dict[int, Tuple[str, int, str, str]] = {}
    wrong: List[str] = []
    sizes: List[Tuple[int, Tuple[int, int], Tuple[int, int]]] = []
    lock = threading.Lock()
    started = time.monotonic()

    def one(job: Tuple[int, str, str, str]) -> None:
        n, kind, user, env = job
        name = f"soak-{n}"
        argv: List[str] = ["srun", f"--job-name={name}"]
        if kind == "tree" or kind in ("fails", "cancel"):
            argv.append(f"--chos={env}")
        elif kind in ("local", "refused", "broken", "image", "userimage"):
            argv.append("--chos=" + {"local": "local", "refused": "secret", "broken": "broken", "image": "ci",
                                     "userimage": "user:mine"}[kind])
        body = {"fails": PAYLOAD + "; exit 3", "cancel": PAYLOAD + "; exec sleep 60"}.get(kind, PAYLOAD)
        argv += ["sh", "-c", body]
        if kind == "cancel":
            p = subprocess.Popen(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv],
                                 env=dict(c.env, HOME=str(Path("/home") / user), USER=user, LOGNAME=user),
                                 cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                q = c.run(["squeue", "-h", "-n", name, "-t", "RUNNING", "-o", "%i"])
                if q.stdout.strip():
                    break
                time.sleep(0.1)
            time.sleep(0.3)                               # the payload has started in its view
            c.run(["scancel", "-n", name])
            out, err = p.communicate(timeout=60)
            rc = p.returncode
        else:
            r = c.srun(*argv[1:], user=user, cwd=str(Path("/home") / user), timeout=120)
            out, err, rc = r.stdout, r.stderr, r.returncode
        with lock:
            results[n] = (kind, rc, out, err)
            saw = next((line for line in out.splitlines() if line.startswith("SOAK ")), None)
            want_env = {"tree": env, "fails": env, "cancel": env, "local": "local", "userfile": "deb13",
                        "image": "ci", "userimage": "user:mine"}.get(kind)
            if want_env is not None and saw is not None:
                want = f"SOAK {expected_line[want_env]} CHOS={want_env}"
                if saw != want:
                    wrong.append(f"{name} ({kind}, {user}): saw {saw!r}, wanted {want!r}")
            done = len(results)
            if done in (JOBS // 4, JOBS // 2, (3 * JOBS) // 4):
                sizes.append((done, _tree_bytes(site.run_dir), _tree_bytes(site.run_dir / ".decisions")))

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        list(pool.map(one, plan))
    wall = time.monotonic() - started

    # outcomes: each kind as the policy says
    bad = []
    for n, (kind, rc, out, err) in sorted(results.items()):
        want_rc = {"refused": 77, "broken": 69, "fails": 3}.get(kind, 0)
        if kind == "cancel":
            ok = rc != 0 and "SOAK " in out                 # it ran, then was cancelled
        else:
            ok = rc == want_rc and (kind in ("refused", "broken") or "SOAK " in out)
        if kind == "refused":                               # at submission: our line alone
            ok = ok and len(err.splitlines()) == 1 and err.startswith("envsched: ") and "SOAK " not in out
        if kind == "broken":                                # at start: our line and srun's exit line
            ours = [line for line in err.splitlines() if line.startswith("envsched: ")]
            ok = ok and len(ours) == 1 and "SOAK " not in out
        if not ok:
            bad.append(f"soak-{n} ({kind}): exit {rc}, out {out[-200:]!r}, err {err[-300:]!r}")

    # every job that started has its line in the admin log (refusals at submission start no job)
    shown = c.run(["scontrol", "show", "job", "-o"], timeout=120).stdout
    ids = {m.group(2): m.group(1) for m in re.finditer(r"JobId=(\d+) JobName=(soak-\d+)", shown)}
    log_file = c.dir / "envsched.log"
    log = log_file.read_text() if log_file.exists() else ""
    logged = set(re.findall(r"job=(\d+)", log))
    unlogged = sorted(name for name, jid in ids.items() if jid not in logged)
    decided = [line for line in log.splitlines() if " event=decided " in f" {line} "]
    by_cache = sum(1 for line in decided if line.endswith("by=cache"))

    # nothing left once the jobs are gone (their epilogs ran) and the views kept warm are let go
    deadline = time.monotonic() + 60
    while [x for x in site.leftovers() if not x.startswith(".views/")] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.5)                                       # view_hold = 2
    gc = subprocess.run([str(installed.envsched()), "--policy", str(policy), "gc", "--idle-views", "--idle-images"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    site.settle(timeout=30)
    left = site.leftovers() + [f"mount {m}" for m in mount_table() if str(site.run_dir) in m]
    left += [f"loop {x}" for x in sorted(set(_loops()) - set(loops))]
    left += [f"fuse {x}" for x in sorted(set(_fuse()) - set(fuse))]
    left += [f"init {x}" for x in sorted(set(namespace_inits(str(c.dir))) - set(inits))]
    left += [f"squashfuse of {pw.pw_name}" for pw in users
             if subprocess.run(["pgrep", "-u", str(pw.pw_uid), "-x", "squashfuse"], stdout=subprocess.DEVNULL).returncode == 0]
    end_run_dir, end_decisions = _tree_bytes(site.run_dir), _tree_bytes(site.run_dir / ".decisions")

    runs = [line.split() for line in rss.read_text().splitlines()] if rss.exists() else []
    runs = [r for r in runs if r and r[0].isdigit()]
    peaks = [int(r[0]) for r in runs]
    by_command = Counter(next((w for w in r[2:] if w in COMMANDS), "?") for r in runs)
    tenth = max(1, len(peaks) // 10)
    first_rss, last_rss = (max(peaks[:tenth]), max(peaks[-tenth:])) if peaks else (0, 0)

    counts = {k: sum(1 for v in results.values() if v[0] == k) for k, _ in KINDS}
    with capsys.disabled():
        print(f"\n\nsoak: {JOBS} jobs, {PARALLEL} at a time, seed {SEED}, {len(users)} users, {wall:.0f} s "
              f"({JOBS / wall:.1f} jobs/s)")
        print("| kind | jobs |\n|---|---:|")
        for k, _ in KINDS:
            print(f"| {k} | {counts[k]} |")
        print(f"| jobs in the wrong environment | {len(wrong)} |")
        print(f"| jobs with another outcome than the policy's | {len(bad)} |")
        print(f"| started jobs without their admin log line | {len(unlogged)} of {len(ids)} |")
        print(f"| leftovers after gc (pins, records, views, mounts, loops, FUSE, inits) | {len(left)} |")
        print(f"| run_dir (entries, bytes) at {', '.join(str(s[0]) for s in sizes)} jobs and the end | "
              f"{', '.join(str(s[1]) for s in sizes)}, {end_run_dir} |")
        print(f"| decision cache (entries, bytes), the same points | {', '.join(str(s[2]) for s in sizes)}, "
              f"{end_decisions} |")
        print(f"| decisions on the nodes; from the decision cache (no Python) | {len(decided)}; {by_cache} |")
        print(f"| resolver runs; peak RSS of the first tenth, of the last tenth (KiB) | {len(peaks)}; "
              f"{first_rss}, {last_rss} |")
        print(f"| the node's resolver runs by command | "
              f"{', '.join(f'{k} {v}' for k, v in by_command.most_common())} |\n")
    with fault_report.case(f"soak: {JOBS} jobs, {PARALLEL} at a time, {len(users)} users", "slurm") as row:
        row.jobs, row.wrong_env, row.leftovers, row.seconds = JOBS, len(wrong), len(left), wall
        for k, what in (("refused", "refused at submission"), ("broken", "broken tree"), ("fails", "payload fails"),
                        ("cancel", "scancel mid-run")):
            row.faults[what] = counts[k]
        if bad or unlogged:
            row.outcome = "FAILED"
    assert not wrong, wrong[:10]
    assert not bad, bad[:10]
    assert not unlogged, unlogged[:10]
    assert gc.returncode == 0, gc.stderr
    assert not left, left
    # flat: the cache holds one entry per distinct request, not one per job
    if sizes:
        quarter = sizes[0]
        assert end_decisions[0] <= quarter[2][0] + 4 * len(users) * 4, (quarter, end_decisions)
        assert end_run_dir[1] <= 2 * quarter[1][1] + 65536, (quarter, end_run_dir)
    if len(peaks) >= 20:
        assert last_rss <= first_rss * 1.25 + 2048, (first_rss, last_rss)
