"""Torque end to end through the pbs_mom contract harness (mom_harness.py): the shims of
plugins/torque/torque installed from `site-config render --scheduler torque`, real views, a real
unprivileged user. Not a live Torque (it is not installable here)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from envsched.siteconfig import section

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mom_harness import Mom, Refused, root_script_ok  # noqa: E402
import installed  # noqa: E402
from testlib import launch_records, launcher_tree  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.torque, pytest.mark.ns]
PLUGIN = REPO / "plugins" / "torque" / "torque"
PAYLOAD = """#!/bin/sh
. /etc/os-release; echo "os=$PRETTY_NAME"
echo "chos=$CHOS uid=$(id -u) cwd=$(pwd)"
"""


def envsched_cmd() -> str:
    return installed.envsched()


@pytest.fixture(scope="module")
def torque(site_dir):
    """Shims installed the way docs/admin.md section 13 says, from the render output."""
    root = site_dir.root / f"torque-{uuid.uuid4().hex[:6]}"
    libexec, home, out = root / "libexec", root / "pbs_home", root / "out"
    for d in (root, libexec, home, home / "mom_priv", home / "mom_priv" / "jobs", home / "mom_priv" / "aux", out):
        d.mkdir(mode=0o755)
    out.chmod(0o1777)
    broken = site_dir.root / "os" / "broken-tree"
    launch = launcher_tree(root / "launch-tree", launch_dir(root))        # test_launcher_* below
    policy = site_dir.policy(name=f"torque-{root.name}.toml", body=f"""
[environments.broken]
path = "{broken}"
description = "a tree missing on this node"
[environments.mck]
path = "{launch}"
launcher = ["/opt/launch/rec", "--rec-tag=mck one"]
[environments.mck-broken]
path = "{launch}"
launcher = ["/opt/launch/broken"]
""")
    for name in ("torque-starter", "torque-pelog", "envsched_torque.py"):
        shutil.copy(installed.shim(PLUGIN / name, name), libexec / name)
        os.chown(libexec / name, 0, 0)
        (libexec / name).chmod(0o4755 if name == "torque-starter" else 0o755)   # make install's modes
    rendered = subprocess.run([envsched_cmd(), "--policy", str(policy), "site-config", "render", "--scheduler",
                               "torque", "--plugin-dir", str(libexec), *(["--src", installed.src()] if installed.src() else []), "--resolver",
                               envsched_cmd(), "--spool-dir", str(home)],
                              check=True, stdout=subprocess.PIPE, text=True).stdout
    mom_priv = home / "mom_priv"
    files = {"starter_conf": libexec / "torque-starter.conf", "prologue": mom_priv / "prologue",
             "prologue_parallel": mom_priv / "prologue.parallel", "epilogue": mom_priv / "epilogue",
             "epilogue_parallel": mom_priv / "epilogue.parallel", "submitfilter": libexec / "torque-submitfilter"}
    for name, path in files.items():
        path.write_text(section(rendered, name))
        path.chmod(0o644 if name == "starter_conf" else 0o755 if name == "submitfilter" else 0o500)
    config = [line for line in section(rendered, "mom_config").splitlines() if not line.startswith("#")]
    assert config == [f"$job_starter {libexec}/torque-starter"]       # not run privileged
    (mom_priv / "config").write_text("\n".join(config) + "\n")
    mom = Mom(home, config[0].split()[1], str(files["submitfilter"]), out)
    yield mom, policy, site_dir
    shutil.rmtree(root)
    shutil.rmtree(launch_dir(root))


def launch_dir(root: Path) -> Path:
    """The recording launcher's records (testlib.launcher_tree): below /tmp, in every view."""
    return Path(f"/tmp/envsched-launch-{root.name}")


@pytest.fixture
def mom(torque, home):
    m, _policy, site = torque
    yield m
    assert not site.run_dir.exists() or not [p for p in os.listdir(site.run_dir) if p.startswith("torque-")], \
        "a pin was left behind"
    records = site.run_dir / ".jobs"
    assert not records.exists() or not [p for p in os.listdir(records) if p.startswith("torque-")], \
        "a job record was left behind"


def decided(site, job) -> list:
    log = (site.root / "envsched.log").read_text().splitlines()
    return [line for line in log if "event=decided" in line and f"job={job.id}" in line]


def lines(text: str) -> list:
    return [line for line in text.splitlines() if line]


def test_qsub_v_chos(torque, mom, test_user):
    job = mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=deb13"])
    r = mom.run(job)
    assert (r.state, r.exit_status) == ("completed", 0), r
    assert lines(r.stdout) == ['os=debian 13 (mini)', f"chos=deb13 uid={test_user.pw_uid} cwd={test_user.pw_dir}"]
    assert r.stderr == ""
    assert len(decided(torque[2], job)) == 1          # the prologue prepared; the starter joined
    assert decided(torque[2], job)[0].endswith(" scheduler=torque")     # job ids of schedulers apart


def test_warm_job_without_python(torque, mom, test_user):
    """The rendered prologue and epilogue are C (torque-pelog): the job's record, then its pin from
    the decision cache when an earlier job's decision still holds (the pinned version included in
    the inputs), released in C at the end. A policy edit is honoured on the next job."""
    m, policy, site = torque
    original = policy.read_text()
    policy.write_text(original.replace("view_hold = 0\n", "view_hold = 600\n", 1))
    try:
        seen = []
        for _ in range(3):
            job = m.qsub(test_user, PAYLOAD, ["-v", "CHOS=deb13"])
            r = m.run(job)
            assert (r.state, r.exit_status) == ("completed", 0) and "os=debian 13 (mini)" in r.stdout, r
            seen.append(decided(site, job))
        assert len(seen[0]) == 1 and not seen[0][0].endswith("by=cache"), seen
        assert all(len(d) == 1 and d[0].endswith("by=cache") and " scheduler=torque " in d[0] for d in seen[1:]), seen
        log = (site.root / "envsched.log").read_text()
        assert f"event=released key=torque-{job.id}\n" in log                    # the C epilogue
        # submitted (stamped, pinned) while deb13 is allowed, then the policy disables it: the next
        # job is the resolver's again, refused, and Torque aborts it with the line
        job = m.qsub(test_user, PAYLOAD, ["-v", "CHOS=deb13"])
        policy.write_text(policy.read_text().replace("[environments.deb13]\n", "[environments.deb13]\nenabled = false\n"))
        r = m.run(job)
        assert r.state == "aborted" and "os=" not in r.stdout, r
        assert "envsched: environment 'deb13'" in r.stderr and "disabled by the site" in r.stderr, r
    finally:
        policy.write_text(original)
        subprocess.run([envsched_cmd(), "--policy", str(policy), "gc", "--idle-views"], stdout=subprocess.DEVNULL)


def test_a_stamp_the_c_prologue_leaves_to_python(torque, mom, test_user):
    """A stamp outside printable ASCII (here a no-break space after the name, which Python's
    str.strip() removes) is read by the Python shim, not guessed at by torque-pelog: the job gets
    deb13 from the Python prologue's pin, joined by the starter."""
    m, _policy, site = torque
    filt, m.submit_filter = m.submit_filter, None
    try:
        job = m.qsub(test_user, PAYLOAD.replace("\n", "\n#ENVSCHED chos=deb13\u00a0\n", 1), ["-v", "CHOS=deb13"])
    finally:
        m.submit_filter = filt
    r = m.run(job)
    assert (r.state, r.exit_status) == ("completed", 0) and "os=debian 13 (mini)" in r.stdout, r
    d = decided(site, job)
    assert len(d) == 1 and not d[0].endswith("by=cache"), d        # the Python prologue, then a join


def test_pbs_directive_in_the_script(torque, mom, test_user):
    job = mom.qsub(test_user, "#!/bin/sh\n#PBS -v CHOS=deb13\n. /etc/os-release; echo \"$PRETTY_NAME $CHOS\"\n")
    r = mom.run(job)
    assert lines(r.stdout) == ["debian 13 (mini) deb13"], r
    assert len(decided(torque[2], job)) == 1


def test_tm_task_in_a_running_job(torque, mom, test_user):
    job = mom.qsub(test_user, "#!/bin/sh\n#PBS -v CHOS=deb13\n"
                              "sleep 3\n")
    import threading
    result = {}
    t = threading.Thread(target=lambda: result.update(r=mom.run(job)))
    t.start()
    try:
        import time
        for _ in range(100):
            if (torque[2].run_dir / f"torque-{job.id}" / "shim").exists():     # the prologue's pin is ready
                break
            time.sleep(0.05)
        task = mom.tm_spawn(job, ["/bin/sh", "-c", '. /etc/os-release; echo "$PRETTY_NAME $CHOS $(id -u)"'])
    finally:
        t.join()
    assert task.returncode == 0, task.stderr
    assert task.stdout.strip() == f"debian 13 (mini) deb13 {test_user.pw_uid}"
    assert result["r"].exit_status == 0
    assert len(decided(torque[2], job)) == 1          # no resolver run for the task


def test_user_file_and_site_default(mom, home, test_user):
    r = mom.run(mom.qsub(test_user, PAYLOAD))
    assert lines(r.stdout)[0] == "os=debian 12 (mini)" and "chos=deb12" in r.stdout, r
    (home / ".chos").write_text("deb13\n")
    os.chown(home / ".chos", test_user.pw_uid, test_user.pw_gid)
    r = mom.run(mom.qsub(test_user, PAYLOAD))
    assert lines(r.stdout)[0] == "os=debian 13 (mini)" and "chos=deb13" in r.stdout, r


def test_refused_at_submit(mom, test_user):
    r = mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=sl5"])
    assert isinstance(r, Refused) and r.status != 0
    assert len(lines(r.stderr)) == 1 and r.stderr.startswith("envsched: environment 'sl5'"), r.stderr
    r = mom.qsub(test_user, "#!/bin/sh\n#PBS -v CHOS=nope\necho hi\n")
    assert isinstance(r, Refused) and "'nope'" in r.stderr


def test_refused_at_start_without_the_filter(mom, test_user):
    filt, mom.submit_filter = mom.submit_filter, None
    try:
        job = mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=sl5"])
    finally:
        mom.submit_filter = filt
    r = mom.run(job)
    assert (r.state, r.exit_status) == ("completed", 77), r
    assert r.stdout == "" and len(lines(r.stderr)) == 1 and r.stderr.startswith("envsched: environment 'sl5'")


def test_prologue_aborts_on_a_broken_tree(mom, test_user):
    job = mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=broken"])      # identity-only check passes at submit
    assert not isinstance(job, Refused), job
    r = mom.run(job)
    assert r.state == "aborted" and r.stdout == "", r
    assert len(lines(r.stderr)) == 1 and "broken" in r.stderr and "not usable" in r.stderr or "broken" in r.stderr


def test_exit_status_and_stderr(mom, test_user):
    r = mom.run(mom.qsub(test_user, "#!/bin/sh\necho out; echo err >&2; exit 5\n", ["-v", "CHOS=deb12"]))
    assert (r.state, r.exit_status, r.stdout, r.stderr) == ("completed", 5, "out\n", "err\n")


def test_harness_maps_prologue_codes_and_permissions(torque, home, test_user):
    """The harness itself: 0 run, 1 abort, >1 requeue, writable by others -> permission error."""
    mom, _policy, site = torque
    prologue = mom.mom_priv / "prologue"
    saved = prologue.read_bytes()
    starter, mom.starter = mom.starter, None            # the harness alone: envsched's starter would refuse
    try:                                                # jobs whose prologue wrote no record
        for code, state in ((1, "aborted"), (2, "requeued"), (0, "completed")):
            prologue.write_text(f"#!/bin/sh\nexit {code}\n")
            r = mom.run(mom.qsub(test_user, "#!/bin/sh\necho ran\n"))
            assert r.state == state and (("ran" in r.stdout) == (state == "completed")), (code, r)
        prologue.chmod(0o522)
        assert not root_script_ok(prologue)
        assert mom.run(mom.qsub(test_user, "#!/bin/sh\necho ran\n")).state == "requeued"
    finally:
        mom.starter = starter
        prologue.write_bytes(saved)
        prologue.chmod(0o500)
    for p in os.listdir(site.run_dir):                  # jobs that ran above without a prologue
        if p.startswith("torque-"):
            subprocess.run([envsched_cmd(), "--policy", str(torque[1]), "release", "--key", p, "--quiet"], check=True)


# ------------------------------------------------------------------ forged identities (docs/security.md)
ID_PAYLOAD = ["/bin/sh", "-c", 'echo "uid=$(id -ru) euid=$(id -u) gid=$(id -g) chos=$CHOS"; '
              '. /etc/os-release; echo "os=$PRETTY_NAME"']


def running(mom: Mom, job):
    """Run `job` (a `sleep`) in a thread until the prologue's record is there; join() afterwards."""
    import threading
    import time
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(r=mom.run(job)))
    t.start()
    record = mom_site(mom).run_dir / ".jobs" / f"torque-{job.id}"
    shim = mom_site(mom).run_dir / f"torque-{job.id}" / "shim"
    for _ in range(200):                                # the record, and the prologue's view if it prepares one
        if record.exists() and (shim.exists() or "#ENVSCHED chos=" not in job.script):
            break
        time.sleep(0.05)
    return t, result


def mom_site(mom: Mom):
    return mom.site                                     # set by the fixture below


@pytest.fixture
def fmom(torque, mom):
    mom.site = torque[2]
    return mom


def test_forged_tm_task_as_root(fmom, test_user):
    """The report's case: pbsdsh -e USER=root,HOME=/root,LOGNAME=root runs as the job's user."""
    job = fmom.qsub(test_user, "#!/bin/sh\n#PBS -v CHOS=deb13\nsleep 2\n")
    t, result = running(fmom, job)
    try:
        task = fmom.tm_spawn(job, ID_PAYLOAD, task_env={"USER": "root", "HOME": "/root", "LOGNAME": "root"})
    finally:
        t.join()
    assert task.returncode == 0, task.stderr
    uid = test_user.pw_uid
    assert task.stdout.splitlines()[0] == f"uid={uid} euid={uid} gid={test_user.pw_gid} chos=deb13", task.stdout
    assert result["r"].exit_status == 0


def test_forged_tm_task_as_another_user(fmom, test_user):
    job = fmom.qsub(test_user, "#!/bin/sh\nsleep 2\n", ["-v", "CHOS=deb12"])
    t, _ = running(fmom, job)
    try:
        task = fmom.tm_spawn(job, ID_PAYLOAD, task_env={"USER": "daemon", "HOME": "/usr/sbin",
                                                         "LOGNAME": "daemon"})
    finally:
        t.join()
    assert task.returncode == 0, task.stderr
    assert task.stdout.startswith(f"uid={test_user.pw_uid} "), task.stdout


def test_forged_job_id_of_another_users_job(fmom, test_user):
    """PBS_JOBID naming a job of another user (root's, here): refused, nothing runs."""
    from envsched import jobrecord
    other = "9999.torque-test"
    jobrecord.write(str(fmom.site.run_dir), f"torque-{other}", jobrecord.JobRecord(0, "root", "batch", ""))
    job = fmom.qsub(test_user, "#!/bin/sh\nsleep 2\n", ["-v", "CHOS=deb12"])
    t, _ = running(fmom, job)
    try:
        task = fmom.tm_spawn(job, ["/bin/sh", "-c", "echo ran"], task_env={"PBS_JOBID": other})
        nojob = fmom.tm_spawn(job, ["/bin/sh", "-c", "echo ran"], task_env={"PBS_JOBID": "4242.nowhere"})
    finally:
        t.join()
        jobrecord.remove(str(fmom.site.run_dir), f"torque-{other}")
    assert (task.returncode, task.stdout) == (73, ""), task
    assert lines(task.stderr) == [f"envsched: job {other} is not {test_user.pw_name}'s (uid {test_user.pw_uid}) job"]
    assert (nojob.returncode, nojob.stdout) == (73, "") and "has no record on this host" in nojob.stderr, nojob


def test_forged_queue_in_a_tm_task_and_with_v(torque, fmom, test_user):
    """deb13q is for queue `gpu` only; a job in `batch` forging PBS_QUEUE (qsub -v, a TM task's
    environment) does not get it: the queue is the record's, from pbs_mom's prologue arguments."""
    mom, policy, site = torque
    restricted = policy.read_text() + f'\n[environments.deb13q]\npath = "{site.envs["deb13"]}"\n' \
                                      'allow_partitions = ["gpu"]\n'
    saved = policy.read_text()
    policy.write_text(restricted)
    try:
        filt, mom.submit_filter = mom.submit_filter, None
        try:
            job = mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=deb13q,PBS_QUEUE=gpu"])
            sleeper = mom.qsub(test_user, "#!/bin/sh\nsleep 2\n", ["-v", "CHOS=deb12"])
        finally:
            mom.submit_filter = filt
        r = mom.run(job)
        assert (r.state, r.exit_status, r.stdout) == ("completed", 77, ""), r
        assert lines(r.stderr)[0].startswith("envsched: environment 'deb13q'"), r.stderr
        t, _ = running(fmom, sleeper)
        try:
            task = mom.tm_spawn(sleeper, ID_PAYLOAD, task_env={"CHOS": "deb13q", "PBS_QUEUE": "gpu"})
        finally:
            t.join()
        assert (task.returncode, task.stdout) == (77, ""), task
        gpu = mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=deb13q"])
        gpu.queue = "gpu"                                # the real queue: allowed
        r = mom.run(gpu)
        assert (r.exit_status, lines(r.stdout)[0]) == (0, "os=debian 13 (mini)"), r
    finally:
        policy.write_text(saved)


def test_forged_ld_preload_never_reaches_root(fmom, test_user):
    """-v LD_PRELOAD=evil.so: the set-user-ID starter runs in glibc's secure mode; the library's
    constructor records every process it was loaded into, and none of them had euid 0."""
    d = fmom.site.root / f"evil-{uuid.uuid4().hex[:6]}"
    d.mkdir(mode=0o755)
    marks = d / "marks"
    marks.mkdir()
    marks.chmod(0o1777)
    src = d / "evil.c"
    src.write_text('#include <stdio.h>\n#include <unistd.h>\n__attribute__((constructor)) static void mark(void)'
                   f'{{ char p[256]; snprintf(p, sizeof p, "{marks}/%d-%d", (int)getuid(), (int)geteuid());'
                   ' FILE *f = fopen(p, "w"); if (f) fclose(f); }\n')
    evil = d / "evil.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(evil), str(src)], check=True)
    try:
        job = fmom.qsub(test_user, "#!/bin/sh\nsleep 1\n", ["-v", f"CHOS=deb12,LD_PRELOAD={evil}"])
        t, result = running(fmom, job)
        try:
            task = fmom.tm_spawn(job, ["/bin/sh", "-c", "true"], task_env={"LD_PRELOAD": str(evil)})
        finally:
            t.join()
        assert result["r"].exit_status == 0 and task.returncode == 0, (result["r"], task)
        assert not os.listdir(marks)                    # the starter (dynamic, set-user-ID) did not load it
        # the control: the same library, the same user, a dynamic program outside the starter
        subprocess.run(["setpriv", f"--reuid={test_user.pw_uid}", f"--regid={test_user.pw_gid}", "--clear-groups",
                        "/bin/true"], env={"LD_PRELOAD": str(evil)}, check=True)
        assert f"{test_user.pw_uid}-{test_user.pw_uid}" in os.listdir(marks)   # (setpriv, root, loads it too)
    finally:
        shutil.rmtree(d)


def test_forged_job_id_loses_to_the_cgroup(fmom, test_user):
    """Where pbs_mom keeps jobs in cgroups (/torque/<jobid>), the cgroup names the job, whatever
    PBS_JOBID says: a task of job A naming job B gets A's view."""
    a = fmom.qsub(test_user, "#!/bin/sh\nsleep 2\n", ["-v", "CHOS=deb13"])
    b = fmom.qsub(test_user, "#!/bin/sh\nsleep 2\n", ["-v", "CHOS=deb12"])
    cg = Path("/sys/fs/cgroup/cpuacct/torque") / a.id
    cg.mkdir(parents=True)
    ta, _ = running(fmom, a)
    tb, _ = running(fmom, b)
    try:
        env = fmom.job_env(a, 2)
        env.update(PBS_JOBID=b.id)

        def in_a_cgroup() -> None:
            (cg / "tasks").write_text(str(os.getpid()))
            os.setsid()
            os.initgroups(test_user.pw_name, test_user.pw_gid)
            os.setgid(test_user.pw_gid)
            os.setuid(test_user.pw_uid)
        task = subprocess.run([fmom.starter, *ID_PAYLOAD], env=env, cwd=test_user.pw_dir, preexec_fn=in_a_cgroup,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        ta.join()
        tb.join()
        cg.rmdir()
        if not os.listdir(cg.parent):
            cg.parent.rmdir()
    assert task.returncode == 0, task.stderr
    assert task.stdout.splitlines() == [f"uid={test_user.pw_uid} euid={test_user.pw_uid} gid={test_user.pw_gid} "
                                        "chos=deb13", "os=debian 13 (mini)"]


def test_root_and_privileged_starts_refused(torque, fmom, test_user):
    """uid 0 is not a job identity unless root_jobs=allow, and never while pbs_mom runs the starter
    privileged ($job_starter_run_privileged, where every job would arrive as uid 0)."""
    mom, _policy, site = torque
    job = mom.qsub(test_user, "#!/bin/sh\nsleep 2\n", ["-v", "CHOS=deb12"])
    env = mom.job_env(job)
    conf = Path(mom.starter + ".conf").parent / "torque-starter.conf"
    saved = conf.read_text()
    mom_config = mom.mom_priv / "config"
    t, _ = running(fmom, job)
    try:
        as_root = subprocess.run([mom.starter, "/bin/sh", "-c", "id -u"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert (as_root.returncode, as_root.stdout) == (73, ""), as_root
        assert "runs as the job's user" in as_root.stderr and len(lines(as_root.stderr)) == 1
        conf.write_text(saved.replace("root_jobs=refuse", "root_jobs=allow"))
        mom_config.write_text(mom_config.read_text() + "$job_starter_run_privileged true\n")
        privileged = subprocess.run([mom.starter, "/bin/sh", "-c", "id -u"], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        assert (privileged.returncode, privileged.stdout) == (73, ""), privileged
        assert "every job would arrive as root" in privileged.stderr
        mom_config.write_text(mom_config.read_text().replace("$job_starter_run_privileged true\n", ""))
        not_roots = subprocess.run([mom.starter, "/bin/sh", "-c", "id -u"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert (not_roots.returncode, not_roots.stdout) == (73, ""), not_roots
        assert lines(not_roots.stderr) == [f"envsched: job {job.id} is not root's (uid 0) job"]
    finally:
        t.join()
        conf.write_text(saved)
        mom_config.write_text(mom_config.read_text().replace("$job_starter_run_privileged true\n", ""))


def test_sister_node_prologue_parallel(torque, fmom, test_user):
    """A sister node: no script, so prologue.parallel writes the record alone; the first TM task
    there has the resolver prepare the view (one decision), a second joins it; epilogue.parallel
    releases both the pin and the record."""
    mom, _policy, site = torque
    job = mom.qsub(test_user, "#!/bin/sh\necho unused\n", ["-v", "CHOS=deb13"])
    assert mom.prologue_parallel(job) == 0
    env = {"CHOS": "deb13"}
    try:
        first = mom.tm_spawn(job, ID_PAYLOAD, task_env=env)
        second = mom.tm_spawn(job, ID_PAYLOAD, task_env=env, task=3)
    finally:
        assert mom.epilogue_parallel(job) == 0
    for task in (first, second):
        assert task.returncode == 0, task.stderr
        assert task.stdout.splitlines()[1] == "os=debian 13 (mini)"
    assert len(decided(site, job)) == 1


def test_forged_src_directory_aborts_the_prologue(torque, fmom, test_user, home):
    """A Python prologue whose --src (root's sys.path) is the user's imports nothing: one line, job
    aborted. (The rendered prologue is C, torque-pelog, which runs the Python shim only for what it
    leaves to it; here the Python shim runs alone.)"""
    import re
    mom, _policy, site = torque
    evil = home / "torque-src"
    evil.mkdir(exist_ok=True)
    os.chown(evil, test_user.pw_uid, test_user.pw_gid)
    prologue = mom.mom_priv / "prologue"
    saved = prologue.read_text()
    python_alone = re.sub(r"exec \S+/torque-pelog prologue ", "exec ", saved)
    assert python_alone != saved
    forged = (python_alone.replace(f"--src {REPO / 'src'}", f"--src {evil}") if installed.src()
              else python_alone.replace(" prologue --policy ", f" prologue --src {evil} --policy "))   # installed: no --src
    assert forged != saved
    prologue.write_text(forged)
    try:
        r = mom.run(mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=deb12"]))
    finally:
        prologue.write_text(saved)
    assert r.state == "aborted" and r.stdout == "", r
    assert lines(r.stderr) == [f"envsched: --src {evil}: {evil} must be root's and not writable by group or others"]


def test_forged_starter_configuration_and_resolver(torque, fmom, test_user, home):
    """The starter's configuration must be root's alone, and so must the resolver it names (and
    that resolver's interpreter): otherwise 78 and one line, nothing runs."""
    mom, _policy, site = torque
    conf = Path(mom.starter).parent / "torque-starter.conf"
    saved = conf.read_text()
    fake = home / "envsched"
    fake.write_text("#!/bin/sh\nid -u > /tmp/envsched-forged-resolver-ran\n")
    os.chown(fake, test_user.pw_uid, test_user.pw_gid)
    fake.chmod(0o755)
    filt, mom.submit_filter = mom.submit_filter, None   # no stamp: the starter itself runs the resolver
    try:
        conf.chmod(0o664)
        r = mom.run(mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=deb13"]))
        assert (r.exit_status, r.stdout) == (78, ""), r
        assert lines(r.stderr) == [f"envsched: starter configuration: {conf}: must be owned by root and not "
                                   "writable by group or others"]
        conf.chmod(0o644)
        conf.write_text("\n".join(f"resolver={fake}" if line.startswith("resolver=") else line
                                  for line in saved.splitlines()) + "\n")
        r = mom.run(mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=deb13"]))
        assert (r.exit_status, r.stdout) == (78, ""), r
        assert len(lines(r.stderr)) == 1 and f"the resolver {fake} is not trusted, not run" in r.stderr, r.stderr
        assert not Path("/tmp/envsched-forged-resolver-ran").exists()
    finally:
        mom.submit_filter = filt
        conf.chmod(0o644)
        conf.write_text(saved)


LAUNCHED = 'echo "PID=$$"; for a in "$@"; do echo "ARG=$a"; done; head -1 /etc/os-release'


def test_launcher_batch_shell_and_tm_task(torque, mom, test_user):
    """An environment's launcher (#12): the batch shell (its script on stdin) and a TM task run as
    launcher + their argv in the view; the launcher exec's them (same pid)."""
    records = launch_dir(torque[0].pbs_home.parent)
    job = mom.qsub(test_user, f"#!/bin/sh\n#PBS -v CHOS=mck\n{LAUNCHED}\nsleep 2\n")
    import threading
    import time
    result = {}
    t = threading.Thread(target=lambda: result.update(r=mom.run(job)))
    t.start()
    try:
        for _ in range(100):
            if (torque[2].run_dir / f"torque-{job.id}" / "shim").exists():
                break
            time.sleep(0.05)
        task = mom.tm_spawn(job, ["sh", "-c", LAUNCHED, "sh", "a b", ""])
    finally:
        t.join()
    r = result["r"]
    assert (r.state, r.exit_status) == ("completed", 0), r
    recs = {rec["pid"]: rec for rec in launch_records(records)}
    assert len(recs) == 2 and all(rec["view"] == "launch 12" and rec["tag"] == "mck one" for rec in recs.values())
    batch_pid = lines(r.stdout)[0].split("=")[1]
    assert recs[batch_pid]["args"] == ["/bin/sh"]                      # the login shell's "-sh" is not passed on
    assert lines(r.stdout)[1:] == ['PRETTY_NAME="launch 12 (mini)"']
    assert task.returncode == 0, task.stderr
    out = task.stdout.splitlines()
    rec = recs[out[0].split("=")[1]]
    assert rec["args"][0] in ("/bin/sh", "/usr/bin/sh") and rec["args"][1:] == ["-c", LAUNCHED, "sh", "a b", ""]
    assert out[1:] == ["ARG=a b", "ARG=", 'PRETTY_NAME="launch 12 (mini)"']
    for p in records.iterdir():
        p.unlink()


def test_launcher_that_cannot_be_executed_fails_the_job_in_one_line(torque, mom, test_user):
    r = mom.run(mom.qsub(test_user, f"#!/bin/sh\n#PBS -v CHOS=mck-broken\ntouch {test_user.pw_dir}/ran\n"))
    assert (r.state, r.exit_status) == ("completed", 69), r
    assert r.stdout == "" and lines(r.stderr) == [
        "envsched: cannot execute the launcher /opt/launch/broken: No such file or directory"]
    assert not os.path.exists(f"{test_user.pw_dir}/ran")
