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
  a hung home file system (~/.chos on a FUSE mount whose daemon is SIGSTOPped): one line within
  ~4 s, another user's job runs meanwhile.
  ENOSPC on run_dir (a tiny tmpfs, filled): exit 71 and one line, nothing half-written kept.
  slurmd killed -9 and restarted with jobs running; a job's slurmstepd killed -9.

Each case records a row in the fault report (tests/faultreport.py): jobs, faults injected, jobs in
the wrong environment, what `envsched gc --idle-views` left (pins, records, views, mounts, loop
devices, FUSE mounts, PID namespace inits of this session).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import installed
from spanksite import policy_text
from testlib import USER_SUFFIX, hung_home, mount_table, namespace_inits, real_user, unmount_below

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
def test_policy_replaced_during_a_job_storm(site, slurm_user, home, how, fault_report):
    with fault_report.case(f"policy replaced during a job storm ({how})", "slurm") as row:
        host = Host(site)
        _policy_storm(site, slurm_user, home, how, row)
        row.leftovers = len(left := host.leftovers())
        assert not left, left


def _policy_storm(site, slurm_user, home, how, row):
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
            row.faults[f"policy rewritten ({how})"] += 1
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
    row.jobs += len(results)
    for ask, rc, out, err in results:
        outcomes[(ask, rc)] = outcomes.get((ask, rc), 0) + 1
        saw = [line for line in out.splitlines() if line.startswith("SAW ")]
        if ask == "secret" and (rc == 0 or saw):
            row.wrong_env += 1
            wrong.append(f"ran in secret: {out!r} {err!r}")
        elif ask == "deb13" and rc == 0 and saw != [f"SAW {deb13} CHOS=deb13"]:
            row.wrong_env += 1
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


def test_a_tree_removed_while_a_job_queues(site, slurm_user, home, fault_report):
    """A job queued for an environment whose tree is then removed fails closed with one line (69)
    when it starts, though the decision cache holds that request and its shared view is kept warm;
    the next job works and nothing is left."""
    with fault_report.case("tree removed while a job queues", "slurm") as row:
        host = Host(site)
        policy = _tree_removed(site, slurm_user, home, row)
        row.leftovers = len(left := host.leftovers(policy))
        assert not left, left


def _tree_removed(site, slurm_user, home, row):
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
        row.jobs += 4
        shutil.rmtree(doomed)
        row.faults["tree removed"] += 1
        c.scontrol("release", job)
        state = c.wait(job, timeout=60)
        out = (home / f"out-{job}.txt").read_text()
        row.wrong_env += "SAW " in out
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
    return policy


def test_run_dir_wiped_under_a_running_job(site, slurm_user, home, fault_report):
    """run_dir wiped (as a reboot empties /run) while a job runs in its view: the job's epilog finds
    nothing to release and says nothing wrong, the next job prepares afresh, nothing is left."""
    with fault_report.case("run_dir wiped under a running job", "slurm") as row:
        host = Host(site)
        _run_dir_wiped(site, slurm_user, home, row)
        row.leftovers = len(left := host.leftovers())
        assert not left, left


def _run_dir_wiped(site, slurm_user, home, row):
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
        row.faults["run_dir wiped"] += 1
        row.jobs += 2
        c.run(["scancel", "-n", "fault-wipe"])
        p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    r = c.srun("--chos=deb13", "sh", "-c", PAYLOAD, user=slurm_user.pw_name, cwd=str(home))
    row.wrong_env += r.returncode == 0 and "CHOS=deb13" not in r.stdout
    assert r.returncode == 0 and "CHOS=deb13" in r.stdout, r.stderr
    site.settle(timeout=60)


# ---- what every case counts: jobs, wrong environments, what is left after gc --------------------

def _loops():
    return sorted(subprocess.run(["losetup", "-a"], stdout=subprocess.PIPE, text=True).stdout.splitlines())


def _fuse():
    return sorted(line for line in mount_table() if " fuse" in line)


class Host:
    """The host's state before a case (mounts, loop devices, FUSE mounts, PID namespace inits), and
    what is left after it beyond that, once `envsched gc --idle-views` ran: the case's leftovers."""

    def __init__(self, site, *paths):
        self.site = site
        self.paths = (str(site.run_dir), str(site.cluster.dir)) + tuple(str(p) for p in paths)
        self.mounts, self.loops, self.fuse = self._ours(mount_table()), self._ours(_loops()), self._ours(_fuse())
        self.inits = namespace_inits(str(site.cluster.dir))

    def _ours(self, lines):
        """Only what names the site's run_dir, the cluster's directory or the case's own paths:
        other sessions on this host come and go meanwhile."""
        return [x for x in lines if any(p in x for p in self.paths)]

    def gc(self, policy=None) -> None:
        r = subprocess.run([str(installed.envsched()), "--policy", str(policy or self.site.policy), "gc",
                            "--idle-views"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert r.returncode == 0, r.stdout

    def leftovers(self, policy=None, timeout: float = 30) -> list:
        deadline = time.monotonic() + timeout
        while True:
            self.gc(policy)
            left = self.site.leftovers()
            left += [f"mount {m}" for m in sorted(set(self._ours(mount_table())) - set(self.mounts))]
            left += [f"loop {x}" for x in sorted(set(self._ours(_loops())) - set(self.loops))]
            left += [f"fuse {x}" for x in sorted(set(self._ours(_fuse())) - set(self.fuse))]
            left += [f"init {x}" for x in sorted(set(namespace_inits(str(self.site.cluster.dir))) - set(self.inits))]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.3)


def saw(out: str) -> list:
    return [line for line in out.splitlines() if line.startswith("SAW ")]


def ours(err: str) -> list:
    return [line for line in err.splitlines() if line.startswith("envsched: ")]


def first_line(tree: Path) -> str:
    return (tree / "etc" / "os-release").read_text().splitlines()[0]


def _own_site(site, name: str, text: str, *, validate: bool = True, run_dir=None):
    """plugstack.conf pointing at a policy of the case's own (and its own run_dir), slurmd
    restarted; returns the policy and the site's plugstack.conf text to put back."""
    c = site.cluster
    policy = c.dir / f"{name}.toml"
    policy.write_text(text)
    policy.chmod(0o644)
    good = c.plugstack.read_text()
    line = good.split("\n")[0].replace(f"policy={site.policy} ", f"policy={policy} ")
    if run_dir is not None:
        line = line.replace(f"run_dir={site.run_dir} ", f"run_dir={run_dir} ")
    c.write_plugstack(line + ("" if validate else " validate=0") + "\n", restart_slurmd=True)
    return policy, good


# ---- a hung home file system ----------------------------------------------------------------

USER_FILE_TIMEOUT = 2       # site.user_file_timeout of the case's policy (seconds)


def test_a_hung_home_file_system(site, slurm_user, home, fault_report):
    """~/.chos on a home that never answers (its FUSE daemon stopped): the job that would read it
    fails closed with one line within a bounded time (the decision cache's reader gives up after
    2 s, plugins/common/es_cache.c; the resolver after site.user_file_timeout, userfile.py); a job
    of another user runs meanwhile, untouched; the same user's job that names its environment runs
    too; once the home answers again, ~/.chos is honoured; nothing is left. The submission's own
    check is off (validate=0): srun, as the user, would read the home on the submit side as any
    command of theirs there does (docs/security.md)."""
    c = site.cluster
    deb12, deb13 = first_line(site.trees["deb12"]), first_line(site.trees["deb13"])
    with fault_report.case("hung home file system (~/.chos never answers)", "slurm") as row, \
            real_user("envsched-hh" + USER_SUFFIX) as other:
        host = Host(site, slurm_user.pw_dir)
        policy, good = _own_site(site, "fault-hung-home", policy_text(c.dir, site.run_dir, site.trees).replace(
            "view_hold = 0\n", f"view_hold = 0\nuser_file_timeout = {USER_FILE_TIMEOUT}\n"), validate=False)

        def job(user, *args, timeout=120):
            row.jobs += 1
            t0 = time.monotonic()
            r = c.srun(*args, "sh", "-c", PAYLOAD, user=user, cwd="/tmp", timeout=timeout)
            return r, time.monotonic() - t0

        def expect(r, first, chos):
            ok = r.returncode == 0 and saw(r.stdout) == [f"SAW {first} CHOS={chos}"]
            row.wrong_env += r.returncode == 0 and not ok
            assert ok, (r.returncode, r.stdout, r.stderr)

        try:
            with hung_home(slurm_user, c.dir / "fault-hung-home", "deb13", lambda: host.gc(policy)) as stop:
                for _ in range(2):                       # the resolver's, then the decision cache's
                    r, _ = job(slurm_user.pw_name)
                    expect(r, deb13, "deb13")
                stop()
                row.faults["home FUSE daemon SIGSTOPped"] += 1
                stuck = subprocess.Popen(
                    ["setpriv", f"--reuid={slurm_user.pw_uid}", f"--regid={slurm_user.pw_gid}", "--init-groups",
                     "--", "srun", "sh", "-c", PAYLOAD], cwd="/tmp", env=dict(c.env, HOME=slurm_user.pw_dir,
                     USER=slurm_user.pw_name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                row.jobs += 1
                t0 = time.monotonic()
                try:
                    time.sleep(1.0)                      # its step is waiting on the home by now
                    r, took = job(other.pw_name)         # another user's job meanwhile: the site default
                    expect(r, deb12, "deb12")
                    assert stuck.poll() is None and took < 10, (took, stuck.poll())
                    out, err = stuck.communicate(timeout=60)
                finally:
                    if stuck.poll() is None:
                        stuck.kill()
                        stuck.wait()
                took = time.monotonic() - t0
                row.wrong_env += bool(saw(out))
                assert stuck.returncode != 0 and not saw(out), (stuck.returncode, out, err)
                assert len(ours(err)) == 1 and f"could not be read within {USER_FILE_TIMEOUT} s" in ours(err)[0], err
                assert stuck.returncode != 70 and "Traceback" not in err, err
                assert took < 2 + USER_FILE_TIMEOUT + 15, took
                # the same user, naming the environment: ~/.chos is no input, the job runs
                r, _ = job(slurm_user.pw_name, "--chos=deb12")
                expect(r, deb12, "deb12")
            # the home answers again (the mount gone: the real home, no ~/.chos): the site default
            r, _ = job(slurm_user.pw_name)
            expect(r, deb12, "deb12")
            log = (c.dir / "envsched.log").read_text()
            assert "could not be read within" in log, log[-2000:]
        finally:
            c.write_plugstack(good, restart_slurmd=True)
        row.leftovers = len(left := host.leftovers(policy))
        assert not left, left


# ---- ENOSPC on run_dir ------------------------------------------------------------------------

def _fill(path: Path) -> None:
    """Fill the file system of `path` up: a root-only file grown until ENOSPC."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == 28, e                   # ENOSPC
    path.chmod(0o600)


def _whole(run_dir: Path) -> list:
    """What under run_dir is half written and still there: a decision cache entry without its
    `end`, a shared view's files without their end, a pin's meta.json that is not whole JSON, a
    temporary file. (Each would be trusted, or be a leftover, if it stayed.)"""
    import json
    bad = []
    decisions = run_dir / ".decisions"
    for p in sorted(decisions.iterdir()) if decisions.is_dir() else []:
        text = p.read_text(errors="replace")
        if not text.endswith("\nend\n") and not text.endswith("\nend"):
            bad.append(f"decision entry {p.name}: {text[-60:]!r}")
    for meta in sorted(run_dir.glob("*/meta.json")) + sorted(run_dir.glob(".views/*/meta.json")):
        try:
            json.loads(meta.read_text())
        except ValueError:
            bad.append(f"half-written {meta}")
    return bad


def _busy(run_dir: Path) -> list:
    """Job records and pins still under run_dir."""
    return [p.name for p in run_dir.iterdir() if not p.name.startswith(".")] + \
        [p.name for p in (run_dir / ".jobs").glob("*")]


def test_enospc_on_run_dir(site, slurm_user, home, fault_report):
    """run_dir on a tiny tmpfs of its own, filled up: every job fails closed with one line (not 70,
    no traceback) or runs in its environment; nothing half-written is left to be trusted later
    (decision cache entries, pins' and views' metadata); once there is space again the next jobs
    work and gc leaves nothing; no node drained."""
    c = site.cluster
    deb12, deb13 = first_line(site.trees["deb12"]), first_line(site.trees["deb13"])
    tiny = Path(f"{site.run_dir}-enospc")
    tiny.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "envsched-enospc", str(tiny)], check=True)
    host = Host(site, tiny)
    want = {"deb13": (deb13, "deb13"), "deb12": (deb12, "deb12"), "": (deb12, "deb12")}
    try:
        with fault_report.case("ENOSPC on run_dir", "slurm") as row:
            text = policy_text(c.dir, tiny, site.trees, view_hold=30)
            policy, good = _own_site(site, "fault-enospc", text, run_dir=tiny)

            def job(ask):
                row.jobs += 1
                r = c.srun(*([f"--chos={ask}"] if ask else []), "sh", "-c", PAYLOAD, user=slurm_user.pw_name,
                           cwd=str(home), timeout=120)
                first, chos = want[ask]
                right = r.returncode == 0 and saw(r.stdout) == [f"SAW {first} CHOS={chos}"]
                row.wrong_env += (r.returncode == 0 or bool(saw(r.stdout))) and not right
                return r, right

            try:
                for ask in ("deb13", "deb13"):            # warm: a decision cache entry, a shared view
                    r, right = job(ask)
                    assert right, (r.returncode, r.stdout, r.stderr)
                _fill(tiny / ".filler")
                row.faults["run_dir full (ENOSPC)"] += 1
                failed, closed = [], 0
                log = c.dir / "envsched.log"
                mark = len(log.read_text().splitlines())
                for ask in ("deb13", "deb12", "", "deb13"):
                    r, right = job(ask)
                    if right:
                        continue
                    closed += 1
                    if (r.returncode in (0, 70) or len(ours(r.stderr)) != 1 or "Traceback" in r.stderr
                            or saw(r.stdout)):
                        failed.append((ask, r.returncode, r.stdout, r.stderr))
                site_left = _whole(tiny)
                (tiny / ".filler").unlink()
                assert not failed, failed
                # each job that failed closed has its admin log line, naming the file at fault
                logged = [ln for ln in log.read_text().splitlines()[mark:]
                          if "event=failed" in ln and "run_dir is full" in ln and f"user={slurm_user.pw_name}" in ln]
                assert closed and len(logged) >= closed, (closed, logged)
                assert not site_left, site_left
                for ask in ("deb13", "deb12", ""):          # space again: the next jobs work
                    r, right = job(ask)
                    assert right, (ask, r.returncode, r.stdout, r.stderr)
                drained = c.run(["sinfo", "-h", "-o", "%n %t"]).stdout
                assert "drain" not in drained, drained
            finally:
                # the last jobs' epilogs release under this plugstack.conf's run_dir: wait for them
                deadline = time.monotonic() + 30
                while _busy(tiny) and time.monotonic() < deadline:
                    time.sleep(0.2)
                c.write_plugstack(good, restart_slurmd=True)
                (tiny / ".filler").unlink(missing_ok=True)
            left = host.leftovers(policy)
            left += [f"{tiny.name}/{p.name}" for p in tiny.iterdir() if p.name not in (".decisions", ".views", ".jobs")]
            left += [f"{tiny.name}/.views/{p.name}" for p in (tiny / ".views").glob("*")]
            left += [f"{tiny.name}/.jobs/{p.name}" for p in (tiny / ".jobs").glob("*")]
            row.leftovers = len(left)
            assert not left, left
    finally:
        unmount_below(str(tiny))
        subprocess.run(["umount", "-l", str(tiny)], check=False)
        shutil.rmtree(tiny, ignore_errors=True)
        c.run(["scontrol", "update", "nodename=node1,node2", "state=resume"])   # were any drained


# ---- slurmd killed -9 and restarted, slurmstepd killed -9 -----------------------------------

def _ours_proc(pid: int, conf: Path) -> bool:
    """A process of this session's cluster (its environment names the cluster's slurm.conf):
    other sessions' clusters on this host reuse job ids."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"SLURM_CONF={conf}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def _procs(comm: str, conf: Path, marker: str = "") -> list:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != comm:
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in argv and _ours_proc(int(entry), conf):
            out.append(int(entry))
    return out


def _pins(site) -> list:
    return sorted(p.name for p in site.run_dir.iterdir() if (p / "meta.json").exists()) if site.run_dir.exists() else []


def _running(c, name: str, n: int, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while True:
        ids = c.run(["squeue", "-h", "-n", name, "-t", "RUNNING", "-o", "%i"]).stdout.split()
        if len(ids) >= n:
            return ids
        assert time.monotonic() < deadline, (ids, c.logs())
        time.sleep(0.1)


def test_slurmd_killed_and_restarted_with_jobs_running(site, slurm_user, home, fault_report):
    """kill -9 of every slurmd while jobs run in their views, then slurmd started again: the jobs
    finish in their environments, their pins and views are released (the job epilog of the new
    slurmd), the next job works, nothing is left."""
    c = site.cluster
    deb12, deb13 = first_line(site.trees["deb12"]), first_line(site.trees["deb13"])
    with fault_report.case("slurmd kill -9 + restart, jobs running", "slurm") as row:
        host = Host(site)
        jobs = {}
        for ask in ("deb12", "deb13"):
            script = f"#!/bin/sh\nsleep 4\n{PAYLOAD}\n"
            jobs[c.sbatch(script, f"--chos={ask}", "--job-name=fault-slurmd", "-o", f"{home}/out-%j.txt",
                          user=slurm_user.pw_name, cwd=str(home))] = ask
            row.jobs += 1
        _running(c, "fault-slurmd", 2)
        deadline = time.monotonic() + 30
        while len(_pins(site)) < 2:
            assert time.monotonic() < deadline, _pins(site)
            time.sleep(0.1)
        daemons = [int(pid) for name, pid in (line.split() for line in (c.dir / "pids").read_text().splitlines())
                   if name.startswith("slurmd:")]
        for pid in daemons:
            os.kill(pid, signal.SIGKILL)
            row.faults["slurmd kill -9"] += 1
        c.restart_slurmd()
        row.faults["slurmd restart"] += 1
        for job, ask in jobs.items():
            state = c.wait(job, timeout=90)
            out = (home / f"out-{job}.txt").read_text()
            first = deb12 if ask == "deb12" else deb13
            right = state.state == "COMPLETED" and saw(out) == [f"SAW {first} CHOS={ask}"]
            row.wrong_env += bool(saw(out)) and not right
            assert right, (state.fields, out)
        site.settle(timeout=60)                      # the epilogs ran: no pin, no record, no view
        r = c.srun("--chos=deb13", "sh", "-c", PAYLOAD, user=slurm_user.pw_name, cwd=str(home))
        row.jobs += 1
        assert r.returncode == 0 and saw(r.stdout) == [f"SAW {deb13} CHOS=deb13"], r.stderr
        row.leftovers = len(left := host.leftovers())
        assert not left, left


def test_slurmstepd_killed(site, slurm_user, home, fault_report):
    """kill -9 of a job's slurmstepd (the batch step's, the process that joined the view for the
    task): the job ends, its pin and view are released (job epilog), the next job works, nothing
    is left (tests/slurm/test_spank.py::test_killed_step_daemon_still_releases, with the report)."""
    c = site.cluster
    deb12 = first_line(site.trees["deb12"])
    with fault_report.case("slurmstepd kill -9 mid-job", "slurm") as row:
        host = Host(site)
        job = c.sbatch("#!/bin/sh\nsleep 300\n", "--chos=deb12", "--job-name=fault-stepd", "-o", f"{home}/out-%j.txt",
                       user=slurm_user.pw_name, cwd=str(home))
        row.jobs += 1
        _running(c, "fault-stepd", 1)
        deadline = time.monotonic() + 30
        while not _pins(site):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        stepd = _procs("slurmstepd", c.conf, f"[{job}.batch]")
        assert stepd, "no slurmstepd for the batch step"
        for pid in stepd:
            os.kill(pid, signal.SIGKILL)
            row.faults["slurmstepd kill -9"] += 1
        try:
            c.run(["scancel", job])
            c.wait(job, timeout=60)
            site.settle(timeout=40)
        finally:
            # with its slurmstepd gone nothing tracks the batch script (proctrack/linuxproc): the
            # test kills what it orphaned, by pid: the script and every process below it
            script = f"/job{int(job):05d}/slurm_script"
            parents = {}
            for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        parents[pid] = int(f.read().rsplit(")", 1)[1].split()[1])
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if script.encode() in f.read():
                            parents[pid] = -1           # a root of what to kill
                except (OSError, ValueError, IndexError):
                    pass
            doomed = {pid for pid, ppid in parents.items() if ppid == -1}
            while True:
                more = {pid for pid, ppid in parents.items() if ppid in doomed} - doomed
                if not more:
                    break
                doomed |= more
            for pid in doomed:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        r = c.srun("--chos=deb12", "sh", "-c", PAYLOAD, user=slurm_user.pw_name, cwd=str(home))
        row.jobs += 1
        right = r.returncode == 0 and saw(r.stdout) == [f"SAW {deb12} CHOS=deb12"]
        row.wrong_env += r.returncode == 0 and not right
        assert right, r.stderr
        row.leftovers = len(left := host.leftovers())
        assert not left, left
