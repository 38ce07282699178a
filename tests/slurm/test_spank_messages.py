"""What the user sees when the SPANK plugin says no: exactly one line of ours, and only the lines Slurm
itself prints whatever a plugin does (docs/user.md, "Slurm", lists them verbatim).

  * at submit (sbatch, srun, salloc): our line alone, exit 77 (64 for a --chos that cannot be a
    name); nothing queued.
    Returning an error from init_post_opt would add "spank: required plugin ...: init_post_opt()
    failed with rc=-1" and "Plugin stack post-option processing failed" and exit 1.
  * at step start: our line once per node (from the node's first task), on srun's stderr or in the
    batch job's output file; the tasks exit with the refusal's code. srun adds its own "srun: error:
    NODE: task N: Exited with exit code C". Nothing from slurmstepd: the admin's lines go to the slurmd
    log (info level), not to the user through slurmstepd's stderr.

With `site.on_error = "default"` a request that is refused or broken when the job starts falls back to
the site default: the job runs, and the user sees our warning line once per node, from the node's first
task (srun's stderr, the batch job's output file), before the payload's output; sbatch and salloc also
print it at submit when the submit-time check already falls back (a refused name), srun does not (its
step says it).

Lines Slurm prints on success too (srun's "job N queued and waiting for resources", salloc's "Pending
job allocation N" and, racily, "Job allocation N has been revoked.") are left out of the comparison;
node names and job ids are normalised (NODE, N), and srun's lines are compared in any order (srun
writes the task's stderr and its own messages from different threads).

The "once per node" cases run on the virtual cluster (`vsite`, #15: `vmsg_site`, `von_error_default`,
`vbroken_deb13`, the same policy there): each node refuses or falls back for itself, says so in its own
slurmd log, and has nothing of the job left in its own run_dir.
"""
from __future__ import annotations

import os
import re
import uuid
from contextlib import contextmanager

import pytest

from spanksite import policy_text

pytestmark = pytest.mark.slurm

ALLOWED = "allowed for you: deb12, deb13, local"
SL5_OPTION = f"envsched: environment 'sl5' (option) refused: no such environment at this site; {ALLOWED}"
SL5_CHOS = f"envsched: environment 'sl5' (CHOS variable) refused: no such environment at this site; {ALLOWED}"
LEGACYONLY = f"envsched: environment 'legacyonly' (option) refused: not allowed in partition 'debug'; {ALLOWED}"
EMPTY = "envsched: --chos needs an environment name (see `chos list`)"
TOO_LONG = "envsched: --chos: no environment name is that long (see `chos list`)"
# Slurm's progress lines, printed whether or not anything is refused; salloc's "revoked" is a race in
# salloc 22.05 (salloc.c: the job-complete message from slurmctld can be handled between
# slurm_complete_job() and marking the allocation REVOKED after "Relinquishing job allocation")
CHATTER = re.compile(r"(srun|salloc): (job N queued and waiting for resources|job N has been allocated resources|"
                     r"Pending job allocation N|Job allocation N has been revoked\.)")


def seen(text: str):
    """The lines the user sees, normalised (NODE, N), progress chatter left out, sorted."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"\bv?node\d+\b", "NODE", line)
        line = re.sub(r"\b(job|allocation) \d+\b", r"\1 N", line)
        if not CHATTER.fullmatch(line):
            out.append(line)
    return sorted(out)


def exited(code: int, tasks: str = "task 0") -> str:
    return f"srun: error: NODE: {tasks}: Exited with exit code {code}"


@contextmanager
def _msg_policy(site):
    base = site.policy.read_text()
    site.policy.write_text(policy_text(site.cluster.dir, site.run_dir, site.trees, extra_environments=f"""
[environments.legacyonly]
path = "{site.trees['deb13']}"
allow_partitions = ["legacy"]
"""))
    try:
        yield site
    finally:
        site.policy.write_text(base)


@pytest.fixture(scope="module")
def msg_site(site):
    """The site's policy plus `legacyonly`, allowed only in partition legacy: accepted at submit (which
    leaves partition rules to the start), refused when a job of partition debug starts."""
    with _msg_policy(site) as s:
        yield s


@pytest.fixture(scope="module")
def vmsg_site(vsite):
    """The same on the virtual cluster."""
    with _msg_policy(vsite) as s:
        yield s


@pytest.fixture(autouse=True)
def views_released(request):
    """After each test, the views of its site released: msg_site's or vmsg_site's, the one it uses."""
    sites = [request.getfixturevalue(name) for name in ("msg_site", "vmsg_site") if name in request.fixturenames]
    yield
    for s in sites:
        s.settle()


@contextmanager
def _broken(site):
    usr = site.trees["deb13"] / "usr"
    os.chmod(usr, 0o777)
    try:
        yield f"envsched: environment deb13 is not usable: {usr}: writable by group or others (mode 0777)"
    finally:
        os.chmod(usr, 0o755)


@pytest.fixture
def broken_deb13(msg_site):
    """deb13's /usr writable by others: the tree is refused (exit 69) when a job starts in it."""
    with _broken(msg_site) as line:
        yield line


@pytest.fixture
def vbroken_deb13(vmsg_site):
    """The same on the virtual cluster (its own deb13 tree)."""
    with _broken(vmsg_site) as line:
        yield line


class SlurmdLogs:
    """What each node's slurmd log (log/slurmd-NODE.log) gained since this was made."""

    def __init__(self, site):
        self.site = site
        self.start = {node: self._path(node).stat().st_size if self._path(node).exists() else 0
                      for node in site.cluster.nodes}

    def _path(self, node):
        return self.site.cluster.dir / "log" / f"slurmd-{node}.log"

    def new(self, node) -> str:
        path = self._path(node)
        if not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(self.start[node])
            return f.read().decode(errors="replace")


def batch(site, home, user, *args):
    """Submit `touch MARKER` with args; (job, final state, lines of the output file, marker made)."""
    c = site.cluster
    marker = home / f"ran-{uuid.uuid4().hex[:6]}"
    job = c.sbatch(f"#!/bin/sh\ntouch {marker}\n", "-o", f"{home}/out-%j.txt", *args, user=user, cwd=str(home))
    state = c.wait(job, timeout=60)
    site.settle()
    out = site.output(job, home)
    return job, state, out.splitlines(), marker.exists()


# ------------------------------------------------------------------------------------------ submit
@pytest.mark.parametrize("client", ["sbatch", "srun", "salloc"])
def test_refusal_at_submit_is_our_line_alone(msg_site, slurm_user, home, client):
    marker = home / f"ran-{uuid.uuid4().hex[:6]}"
    argv = {"sbatch": ["sbatch", "--chos=sl5", "--wrap", f"touch {marker}"],
            "srun": ["srun", "--chos=sl5", "touch", str(marker)],
            "salloc": ["salloc", "--chos=sl5", "touch", str(marker)]}[client]
    r = msg_site.cluster.run(argv, user=slurm_user.pw_name, timeout=90)
    assert (r.returncode, r.stderr.splitlines(), r.stdout) == (77, [SL5_OPTION], ""), r.stderr
    assert msg_site.cluster.run(["squeue", "-h", "-u", slurm_user.pw_name]).stdout.strip() == ""
    assert not marker.exists()


def test_empty_option_is_our_line_alone(msg_site, slurm_user, home):
    for argv in (["srun", "--chos=", "true"], ["sbatch", "--chos=", "--wrap", "true"]):
        r = msg_site.cluster.run(argv, user=slurm_user.pw_name)
        assert (r.returncode, r.stderr.splitlines()) == (64, [EMPTY]), r.stderr
    # longer than any name: refused whole, never cut to a name that might exist
    r = msg_site.cluster.run(["salloc", "--chos=" + "d" * 300, "true"], user=slurm_user.pw_name)
    assert (r.returncode, r.stderr.splitlines()) == (64, [TOO_LONG]), r.stderr
    # a step of an allocation (srun skips the submit-time check there): refused when it starts
    r = msg_site.cluster.run(["salloc", "-N1", "srun", "--chos=", "true"], user=slurm_user.pw_name, timeout=90)
    salloc = ["salloc: Granted job allocation N", "salloc: Relinquishing job allocation N"]
    assert (r.returncode, seen(r.stderr)) == (64, sorted(salloc + [EMPTY, exited(64)])), r.stderr


# ------------------------------------------------------------------------------------------ start
def test_refusal_at_batch_start_is_our_line_alone(msg_site, slurm_user, home):
    job, state, out, ran = batch(msg_site, home, slurm_user.pw_name, "-p", "debug", "--chos=legacyonly")
    assert (state.state, state.exit_code, out, ran) == ("FAILED", (77, 0), [LEGACYONLY], False), out
    # the admin's lines are in the node's slurmd log, not in the job's output
    log = "\n".join(p.read_text(errors="replace") for p in (msg_site.cluster.dir / "log").glob("slurmd-*.log"))
    assert f"envsched: resolver: {LEGACYONLY}" in log
    assert (f"envsched: job {job}.batch user {slurm_user.pw_uid}: environment not prepared (resolver exit 77)"
            in log)


def test_refusal_at_srun_start(msg_site, slurm_user, home):
    r = msg_site.cluster.srun("-p", "debug", "--chos=legacyonly", "true", user=slurm_user.pw_name)
    assert (r.returncode, seen(r.stderr)) == (77, sorted([LEGACYONLY, exited(77)])), r.stderr


def test_refusal_at_srun_start_once_per_node(vmsg_site, slurm_user, home):
    """On the virtual cluster: each of the two nodes refuses for itself (its own slurmd log), the
    payload runs on neither, and neither keeps anything of the step."""
    site, c = vmsg_site, vmsg_site.cluster
    logs = SlurmdLogs(site)
    marker = home / f"ran-{uuid.uuid4().hex[:6]}"
    r = c.srun("-N2", "-n4", "-p", "debug", "--chos=legacyonly", "sh", "-c",
               f'touch "{marker}-$SLURMD_NODENAME-$(hostname)"', user=slurm_user.pw_name)
    assert (r.returncode, seen(r.stderr)) == (77, sorted([LEGACYONLY, LEGACYONLY, exited(77, "tasks 0-1"),
                                                          exited(77, "tasks 2-3")])), r.stderr
    nodes = re.findall(r"^srun: error: (\S+): tasks \d-\d: Exited", r.stderr, re.M)
    assert len(set(nodes)) == 2 and set(nodes) <= set(c.nodes), r.stderr
    assert not list(home.glob(f"{marker.name}*"))                 # the payload ran nowhere
    site.settle()
    steps = {}
    for node in c.nodes:
        log = logs.new(node)
        found = re.findall(rf"envsched: job (\d+)\.0 user {slurm_user.pw_uid}: environment not prepared "
                           r"\(resolver exit 77\)", log)
        if node in nodes:                                          # its own refusal, in its own log
            assert f"envsched: resolver: {LEGACYONLY}" in log, (node, log)
            assert len(found) == 1, (node, log)
            steps[node] = found[0]
        else:
            assert found == [] and LEGACYONLY not in log, (node, log)
        assert site.node_leftovers(node) == [], node
    assert len(set(steps.values())) == 1, steps                    # the one job's step 0 on both


def test_refusal_at_start_under_salloc(msg_site, slurm_user, home):
    c = msg_site.cluster
    r = c.run(["salloc", "-p", "debug", "--chos=legacyonly", "srun", "true"], user=slurm_user.pw_name, timeout=90)
    salloc = ["salloc: Granted job allocation N", "salloc: Relinquishing job allocation N"]
    assert (r.returncode, seen(r.stderr)) == (77, sorted(salloc + [LEGACYONLY, exited(77)])), r.stderr
    # a step of an allocation (srun skips the submit-time check there): refused when it starts
    r = c.run(["salloc", "-N1", "sh", "-c", "CHOS=sl5 srun true"], user=slurm_user.pw_name, timeout=90)
    assert (r.returncode, seen(r.stderr)) == (77, sorted(salloc + [SL5_CHOS, exited(77)])), r.stderr


def test_broken_tree_at_start(msg_site, slurm_user, home, broken_deb13):
    r = msg_site.cluster.srun("--chos=deb13", "true", user=slurm_user.pw_name)
    assert (r.returncode, seen(r.stderr)) == (69, sorted([broken_deb13, exited(69)])), r.stderr
    job, state, out, ran = batch(msg_site, home, slurm_user.pw_name, "--chos=deb13")
    assert (state.state, state.exit_code, out, ran) == ("FAILED", (69, 0), [broken_deb13], False), out


# ------------------------------------------------------------------------------------------ fallback
OS_RELEASE = 'head -1 /etc/os-release; echo "CHOS=$CHOS"'
IN_DEB12 = ['PRETTY_NAME="Debian 12 (mini)"', "CHOS=deb12"]
SL5_FALLBACK = (f"envsched: warning: environment 'sl5' (option) refused: no such environment at this site; "
                f"{ALLOWED}; using the site default deb12")


@contextmanager
def _on_error_default(site):
    text = site.policy.read_text()
    assert "\n[site]\n" in text
    site.policy.write_text(text.replace("\n[site]\n", '\n[site]\non_error = "default"\n', 1))
    try:
        yield site
    finally:
        site.policy.write_text(text)


@pytest.fixture
def on_error_default(msg_site):
    """The site's policy with `site.on_error = "default"`."""
    with _on_error_default(msg_site) as s:
        yield s


@pytest.fixture
def von_error_default(vmsg_site):
    """The same on the virtual cluster."""
    with _on_error_default(vmsg_site) as s:
        yield s


def fallback_line(broken: str) -> str:
    """The warning for a broken deb13 (the refusal's line, told that the job runs in deb12)."""
    return broken.replace("envsched: ", "envsched: warning: ", 1) + "; using the site default deb12"


def test_fallback_warning_at_srun_start(on_error_default, slurm_user, home, broken_deb13):
    c = on_error_default.cluster
    r = c.srun("--chos=deb13", "sh", "-c", OS_RELEASE, user=slurm_user.pw_name)
    assert (r.returncode, seen(r.stderr), r.stdout.splitlines()) == (0, [fallback_line(broken_deb13)], IN_DEB12), \
        r.stderr


ROW = 'echo "ROW $SLURM_JOB_ID $SLURMD_NODENAME $(hostname) $SLURM_PROCID CHOS=$CHOS $(head -1 /etc/os-release)"'


def test_fallback_warning_at_srun_start_once_per_node(von_error_default, slurm_user, home, vbroken_deb13):
    """Once per node, as a refusal (on the virtual cluster): each node falls back for itself (its own
    slurmd log) and runs its tasks in the site default, on its own host."""
    site, c = von_error_default, von_error_default.cluster
    logs = SlurmdLogs(site)
    r = c.srun("-N2", "-n4", "--chos=deb13", "sh", "-c", ROW, user=slurm_user.pw_name)
    assert (r.returncode, seen(r.stderr)) == (0, [fallback_line(vbroken_deb13)] * 2), r.stderr
    rows = [line.split(" ", 6)[1:] for line in r.stdout.splitlines() if line.startswith("ROW ")]
    assert sorted(row[3] for row in rows) == ["0", "1", "2", "3"], r.stdout
    assert len({row[0] for row in rows}) == 1, r.stdout               # one job
    job = rows[0][0]
    nodes = sorted({row[1] for row in rows})
    assert len(nodes) == 2 and set(nodes) <= set(c.nodes), r.stdout
    assert all(row[1] == row[2] for row in rows), r.stdout            # each task on its own node's host
    assert all(row[4:] == ["CHOS=deb12", IN_DEB12[0]] for row in rows), r.stdout
    site.settle()
    for node in c.nodes:
        log = logs.new(node)
        # the node's own warning, in its own slurmd log (info level); none on the nodes not in the job
        assert (f"[{job}.0] {fallback_line(vbroken_deb13)}" in log) == (node in nodes), (node, log)
        assert site.node_leftovers(node) == [], node


def test_fallback_warning_in_batch_output(on_error_default, slurm_user, home, broken_deb13):
    c = on_error_default.cluster
    job = c.sbatch(f"#!/bin/sh\n{OS_RELEASE}\n", "-o", f"{home}/out-%j.txt", "--chos=deb13",
                   user=slurm_user.pw_name, cwd=str(home))
    state = c.wait(job, timeout=60)
    on_error_default.settle()
    out = on_error_default.output(job, home).splitlines()
    assert (state.state, state.exit_code, out) == ("COMPLETED", (0, 0), [fallback_line(broken_deb13)] + IN_DEB12), out
    # the admin's: the same line in the node's slurmd log (info level), the tree in the admin log
    log = "\n".join(p.read_text(errors="replace") for p in (c.dir / "log").glob("slurmd-*.log"))
    assert f"[{job}.batch] {fallback_line(broken_deb13)}" in log
    admin = [line.split(": ", 1)[1] for line in (c.dir / "envsched.log").read_text().splitlines()
             if f" job={job}.batch " in line]
    assert [line.split(" ", 3)[0] for line in admin] == ["event=broken", "event=decided", "event=prepared"], admin
    assert 'env=deb12 source="site default (on_error)"' in admin[1], admin


def test_fallback_warning_per_step(on_error_default, slurm_user, home, broken_deb13):
    """A step of the job with the job's request (srun inherits --chos) is told again; a step that asks
    by name for the environment the job runs in is not."""
    c = on_error_default.cluster
    job = c.sbatch(f"#!/bin/sh\n{OS_RELEASE}\nsrun -n1 echo step\nsrun -n1 --chos=deb12 echo named\n",
                   "-o", f"{home}/out-%j.txt", "--chos=deb13", user=slurm_user.pw_name, cwd=str(home))
    state = c.wait(job, timeout=60)
    on_error_default.settle()
    out = on_error_default.output(job, home).splitlines()
    warn = fallback_line(broken_deb13)
    assert (state.state, out[:3], sorted(out[3:])) == ("COMPLETED", [warn] + IN_DEB12,
                                                       sorted([warn, "step", "named"])), out


def test_fallback_warning_for_a_refused_name(on_error_default, slurm_user, home):
    """A name refused at submit: sbatch and salloc say so then, and the job's steps when they start;
    srun once (its step's line), not twice."""
    c = on_error_default.cluster
    r = c.srun("--chos=sl5", "sh", "-c", OS_RELEASE, user=slurm_user.pw_name)
    assert (r.returncode, seen(r.stderr), r.stdout.splitlines()) == (0, [SL5_FALLBACK], IN_DEB12), r.stderr
    script = c.dir / "scripts" / f"job-{uuid.uuid4().hex[:10]}.sh"
    script.write_text(f"#!/bin/sh\n{OS_RELEASE}\n")
    script.chmod(0o644)
    r = c.run(["sbatch", "--parsable", "-o", f"{home}/out-%j.txt", "--chos=sl5", str(script)],
              user=slurm_user.pw_name, cwd=str(home))
    assert (r.returncode, r.stderr.splitlines()) == (0, [SL5_FALLBACK]), r.stderr
    job = r.stdout.strip().split(";")[0]
    state = c.wait(job, timeout=60)
    on_error_default.settle()
    out = on_error_default.output(job, home).splitlines()
    assert (state.state, state.exit_code, out) == ("COMPLETED", (0, 0), [SL5_FALLBACK] + IN_DEB12), out


# ------------------------------------------------------------------------------------------ programs
@pytest.fixture
def programs(msg_site):
    """`envsched-viewonly` only in deb13's /usr/bin; `envsched-hostonly` only in a host directory first in
    srun's PATH. Yields srun's environment (that PATH)."""
    view = msg_site.trees["deb13"] / "usr" / "bin" / "envsched-viewonly"
    hostbin = msg_site.cluster.dir / "hostbin"
    hostbin.mkdir(mode=0o755, exist_ok=True)
    for prog, where in ((view, "in the view"), (hostbin / "envsched-hostonly", "on the host")):
        prog.write_text(f"#!/bin/sh\necho {where}\n")
        prog.chmod(0o755)
    yield {"PATH": f"{hostbin}:{msg_site.cluster.env['PATH']}"}
    view.unlink()
    (hostbin / "envsched-hostonly").unlink()


def test_a_command_name_is_looked_up_in_the_view(msg_site, slurm_user, home, programs):
    """srun 22.05 sends the name as typed (it resolves it itself only with LaunchParameters=test_exec,
    SLURM_TEST_EXEC or --bcast: srun/libsrun/opt.c); slurmstepd looks it up in the job's PATH after
    task_init, i.e. inside the view (slurmstepd/task.c: exec_task, _build_path). docs/user.md quotes
    these lines."""
    c, user = msg_site.cluster, slurm_user.pw_name
    r = c.srun("--chos=deb13", "envsched-viewonly", user=user, env=programs)
    assert (r.returncode, r.stdout, seen(r.stderr)) == (0, "in the view\n", []), r.stderr
    r = c.srun("--chos=deb13", "envsched-hostonly", user=user, env=programs)
    assert (r.returncode, r.stdout, seen(r.stderr)) == (2, "", sorted([
        "slurmstepd-NODE: error: execve(): envsched-hostonly: No such file or directory", exited(2)])), r.stderr
    # where srun resolves names itself (test_exec), a program it does not find on the submit host is
    # refused there, and `sh -c` looks the name up in the view again
    test_exec = dict(programs, SLURM_TEST_EXEC="1")
    r = c.srun("--chos=deb13", "envsched-viewonly", user=user, env=test_exec)
    assert (r.returncode, r.stdout, r.stderr.splitlines()) == (1, "", [
        "srun: fatal: Can not execute envsched-viewonly"]), r.stderr
    r = c.srun("--chos=deb13", "sh", "-c", "exec envsched-viewonly", user=user, env=test_exec)
    assert (r.returncode, r.stdout, seen(r.stderr)) == (0, "in the view\n", []), r.stderr
