"""The envsched SPANK plugin on a real Slurm cluster: real jobs, checking what the payload saw."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from spanksite import PLUGIN_DIR, lines, run_batch
from testlib import mount_table

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("views_released")]


def test_sbatch_chos_as_user(site, slurm_user, home):
    job, state, out = run_batch(site, home, slurm_user.pw_name, "--chos=deb13")
    assert state.state == "COMPLETED", out
    seen = lines(out)
    assert seen["PRETTY_NAME"] == "Debian 13 (mini)"
    assert seen["CHOS"] == "deb13"
    assert seen["CWD"] == str(home)
    assert seen["USER"] == slurm_user.pw_name


def test_srun_chos_multi_node_multi_task(vsite, slurm_user, home):
    r = vsite.cluster.srun("-N2", "-n4", "--chos=deb12", "sh", "-c",
                           'echo "$SLURMD_NODENAME $(hostname) $SLURM_PROCID $(head -1 /etc/os-release) $CHOS"',
                           user=slurm_user.pw_name)
    assert r.returncode == 0, r.stderr
    rows = sorted(r.stdout.splitlines())
    assert len(rows) == 4
    nodes = {row.split()[0] for row in rows}
    assert len(nodes) == 2 and nodes <= set(vsite.cluster.nodes), rows
    assert all(row.split()[0] == row.split()[1] for row in rows), rows       # each task on its own host
    assert all(row.endswith('PRETTY_NAME="Debian 12 (mini)" deb12') for row in rows), rows
    vsite.settle()
    for node in vsite.cluster.nodes:
        assert vsite.node_leftovers(node) == [], node


def test_salloc_then_srun_steps(site, slurm_user, home):
    r = site.cluster.run(["salloc", "-N1", "--chos=deb13", "sh", "-c",
                          "srun sh -c 'head -1 /etc/os-release'; srun sh -c 'echo $CHOS'"],
                         user=slurm_user.pw_name, timeout=90)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ['PRETTY_NAME="Debian 13 (mini)"', "deb13"]
    site.settle()


@pytest.mark.parametrize("how,expected", [("CHOS variable", "deb13"), ("~/.chos", "deb13"),
                                          ("partition default", "deb13"), ("site default", "deb12")])
def test_selection_sources(site, slurm_user, home, how, expected):
    args, env = [], None
    if how == "CHOS variable":
        env = {"CHOS": "deb13"}
    elif how == "~/.chos":
        (home / ".chos").write_text("deb13\n")
        os.chown(home / ".chos", slurm_user.pw_uid, slurm_user.pw_gid)
    elif how == "partition default":
        args = ["-p", "legacy"]
    job, state, out = run_batch(site, home, slurm_user.pw_name, *args, env=env)
    assert state.state == "COMPLETED", out
    assert lines(out)["CHOS"] == expected
    assert lines(out)["PRETTY_NAME"] == f"Debian {expected[3:]} (mini)"


def test_as_root_and_exit_code(site, home):
    r = site.cluster.srun("--chos=deb13", "sh", "-c", "id -u; head -1 /etc/os-release; exit 3")
    assert r.returncode == 3
    assert r.stdout.splitlines() == ["0", 'PRETTY_NAME="Debian 13 (mini)"']
    site.settle()


@pytest.mark.parametrize("request_name,reason", [("sl5", "no such environment at this site"),
                                                 ("secret", "restricted to other users or groups"),
                                                 ("../etc", "not a valid name")])
def test_refused_at_submit(site, slurm_user, home, request_name, reason):
    marker = home / f"ran-{uuid.uuid4().hex[:6]}"
    for cmd in (["sbatch", f"--chos={request_name}", "--wrap", f"touch {marker}"],
                ["srun", f"--chos={request_name}", "touch", str(marker)]):
        r = site.cluster.run(cmd, user=slurm_user.pw_name)
        assert r.returncode != 0
        first = r.stderr.splitlines()[0]
        assert first.startswith(f"envsched: environment '{request_name}' (option) refused: {reason}"), r.stderr
        assert first.endswith("allowed for you: deb12, deb13, local")
    queue = site.cluster.run(["squeue", "-h", "-u", slurm_user.pw_name])
    assert queue.stdout.strip() == ""
    assert not marker.exists()


def test_broken_at_start_fails_before_payload(site, slurm_user, home):
    marker = home / "payload-ran"
    c = site.cluster
    job = c.sbatch(f"#!/bin/sh\ntouch {marker}\n", "--hold", "--chos=deb13", "-o", f"{home}/out-%j.txt",
                   user=slurm_user.pw_name, cwd=str(home))
    os.chmod(site.trees["deb13"] / "usr", 0o777)          # the tree becomes untrusted after submit
    try:
        c.scontrol("release", job)
        state = c.wait(job, timeout=60)
    finally:
        os.chmod(site.trees["deb13"] / "usr", 0o755)
    site.settle()
    out = site.output(job, home)
    assert state.state == "FAILED"
    assert not marker.exists()
    assert "envsched: environment deb13 is not usable: " in out and "writable by group or others" in out
    log = (c.dir / "envsched.log").read_text()
    assert f"event=broken job={job}.batch user={slurm_user.pw_name} env=deb13" in log


def test_scancel_releases_the_view(site, slurm_user, home):
    c = site.cluster
    before = mount_table()
    job = c.sbatch("#!/bin/sh\nsleep 300\n", "--chos=deb13", "-o", f"{home}/out-%j.txt",
                   user=slurm_user.pw_name, cwd=str(home))
    _wait_for_pin(site)
    assert len(mount_table()) > len(before)
    c.run(["scancel", job])
    c.wait(job, timeout=60)
    site.settle()
    assert mount_table() == before


def test_the_job_epilog_releases_views_without_the_resolver(vsite, slurm_user, home):
    """#13: the job epilog releases each of the job's views in C (plugins/common/es_release.c) and
    says so in the admin log (log_file=, `by=epilog`); the resolver's own release line is absent.
    On the virtual cluster: each of the two nodes releases its own view, in its own run_dir."""
    c = vsite.cluster
    before = mount_table()
    job = c.sbatch("#!/bin/sh\nsrun -N2 -n2 true\n", "-N2", "--chos=deb12", "-o", f"{home}/out-%j.txt",
                   user=slurm_user.pw_name, cwd=str(home))
    state = c.wait(job, timeout=60)
    vsite.settle()
    assert state.state == "COMPLETED", vsite.output(job, home)
    assert mount_table() == before
    for node in c.nodes:
        assert vsite.node_leftovers(node) == [], node
    log = (c.dir / "envsched.log").read_text().splitlines()
    released = sorted(line.split("event=released ")[1] for line in log
                      if "event=released" in line and f"slurm-{job}-" in line)
    assert released == [f"key=slurm-{job}-0 scheduler=slurm job={job} by=epilog",
                        f"key=slurm-{job}-1 scheduler=slurm job={job} by=epilog"], released


def test_killed_step_daemon_still_releases(site, slurm_user, home):
    c = site.cluster
    before = mount_table()
    job = c.sbatch("#!/bin/sh\nsleep 300\n", "--chos=deb12", "-o", f"{home}/out-%j.txt",
                   user=slurm_user.pw_name, cwd=str(home))
    _wait_for_pin(site)
    stepd = [pid for pid in _pids("slurmstepd") if f"[{job}.batch]" in _cmdline(pid)]
    assert stepd, "no slurmstepd for the batch step"
    for pid in stepd:
        os.kill(pid, signal.SIGKILL)
    c.run(["scancel", job])
    c.wait(job, timeout=60)
    site.settle(timeout=40)
    assert mount_table() == before
    # with its slurmstepd gone, nothing tracks the batch script any more (proctrack/linuxproc):
    # the test kills what it orphaned, so that nothing it started outlives it
    script = f"/job{int(job):05d}/slurm_script"
    for pid in [p for p in os.listdir("/proc") if p.isdigit() and script in _cmdline(int(p))]:
        try:
            if os.getpgid(int(pid)) == int(pid):        # the task leads its own process group
                os.killpg(int(pid), signal.SIGKILL)
            else:
                os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for_pin(site, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if site.run_dir.exists() and any((p / "meta.json").exists() for p in site.run_dir.iterdir()):
            return
        time.sleep(0.2)
    raise AssertionError("the job's view was never pinned")


def _pids(name: str):
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == name:
                        yield int(entry)
            except OSError:
                continue


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_batch_script_in_environment_uses_slurm_clients(site, slurm_user, home):
    script = """
head -1 /etc/os-release
srun sh -c 'echo "step: $(head -1 /etc/os-release) $CHOS"'
srun --chos=deb12 sh -c 'echo "other: $(head -1 /etc/os-release) $CHOS"'
squeue -h -j "$SLURM_JOB_ID" -o "squeue: %i %T"
scontrol show job "$SLURM_JOB_ID" | grep -o "JobState=[A-Z]*"
scancel --version
"""
    job, state, out = run_batch(site, home, slurm_user.pw_name, "--chos=deb13", script=script)
    assert state.state == "COMPLETED", out
    assert out.splitlines() == [
        'PRETTY_NAME="Debian 13 (mini)"',
        'step: PRETTY_NAME="Debian 13 (mini)" deb13',
        'other: PRETTY_NAME="Debian 12 (mini)" deb12',
        f"squeue: {job} RUNNING",
        "JobState=RUNNING",
        "slurm-wlm 22.05.8",
    ]
    # the resolver ran for the batch step and for the step asking for deb12, not for the plain
    # srun step: it joined the job's view through the plugin's memo, without Python
    log = (site.cluster.dir / "envsched.log").read_text().splitlines()
    decided = [line for line in log if "event=decided" in line and f" job={job}." in line]
    assert len(decided) == 2, decided


def test_signal_and_stderr_propagate(site, slurm_user, home):
    # the pause lets srun forward the line before the step is torn down
    r = site.cluster.srun("--chos=deb13", "sh", "-c", "echo to-stderr >&2; sleep 1; kill -TERM $$",
                          user=slurm_user.pw_name)
    assert r.returncode != 0
    assert "to-stderr" in r.stderr
    assert "Terminated" in r.stderr or r.returncode in (143, -15), (r.returncode, r.stderr)
    job, state, out = run_batch(site, home, slurm_user.pw_name, "--chos=deb12", "-e", f"{home}/err-%j.txt",
                                script="echo out-line; echo err-line >&2; exit 5")
    assert state.state == "FAILED" and state.exit_code == (5, 0)
    assert out.strip() == "out-line"
    assert (home / f"err-{job}.txt").read_text().strip() == "err-line"


def test_plugin_exports_only_spank_symbols(site):
    out = subprocess.run(["nm", "-D", "--defined-only", str(PLUGIN_DIR / "envsched_spank.so")],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    names = sorted(line.split()[-1] for line in out.splitlines() if line.strip())
    assert names == sorted(["plugin_name", "plugin_type", "plugin_version", "spank_plugin_version",
                            "slurm_spank_init", "slurm_spank_init_post_opt", "slurm_spank_user_init",
                            "slurm_spank_task_init_privileged", "slurm_spank_task_init",
                            "slurm_spank_task_post_fork", "slurm_spank_exit",
                            "slurm_spank_job_prolog", "slurm_spank_job_epilog"])


def test_unknown_plugstack_argument_is_fatal(site, slurm_user, home):
    c = site.cluster
    good = c.plugstack.read_text()
    c.write_plugstack(good.rstrip("\n") + " polcy=/typo\n")
    try:
        r = c.srun("--chos=deb13", "true", user=slurm_user.pw_name)
    finally:
        c.write_plugstack(good)
    assert r.returncode != 0
    assert "envsched: plugstack.conf: unknown argument 'polcy=/typo'" in r.stderr


def test_step_with_unusable_chos_fails_closed_at_start(site, slurm_user, home):
    # steps inside an allocation are not checked by srun: slurmstepd must refuse, not ignore
    long_name = "x" * 300
    r = site.cluster.run(["salloc", "-N1", "sh", "-c",
                          f"CHOS={long_name} srun sh -c 'echo PAYLOAD'; "
                          "CHOS=sl5 srun sh -c 'echo PAYLOAD'"],
                         user=slurm_user.pw_name, timeout=90)
    assert "PAYLOAD" not in r.stdout
    assert "envsched: the job's CHOS is too long" in r.stderr
    assert "envsched: environment 'sl5' (CHOS variable) refused: no such environment" in r.stderr
    site.settle()


def test_request_starting_with_dash_is_refused_as_a_name(site, slurm_user, home):
    r = site.cluster.run(["srun", "--chos=-x", "true"], user=slurm_user.pw_name)
    assert r.returncode != 0
    assert r.stderr.splitlines()[0].startswith("envsched: environment '-x' (option) refused: not a valid name")
