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

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.torque, pytest.mark.ns]
PLUGIN = REPO / "plugins" / "torque" / "torque"
PAYLOAD = """#!/bin/sh
. /etc/os-release; echo "os=$PRETTY_NAME"
echo "chos=$CHOS uid=$(id -u) cwd=$(pwd)"
"""


def envsched_cmd() -> str:
    return str(Path(sys.executable).parent / "envsched")


@pytest.fixture(scope="module")
def torque(site_dir):
    """Shims installed the way docs/admin.md section 13 says, from the render output."""
    root = site_dir.root / f"torque-{uuid.uuid4().hex[:6]}"
    libexec, home, out = root / "libexec", root / "pbs_home", root / "out"
    for d in (root, libexec, home, home / "mom_priv", home / "mom_priv" / "jobs", home / "mom_priv" / "aux", out):
        d.mkdir(mode=0o755)
    out.chmod(0o1777)
    broken = site_dir.root / "os" / "broken-tree"
    policy = site_dir.policy(name=f"torque-{root.name}.toml", body=f"""
[environments.broken]
path = "{broken}"
description = "a tree missing on this node"
""")
    subprocess.run(["make", "-s", "-C", str(PLUGIN)], check=True, stdout=subprocess.DEVNULL)
    for name in ("torque-starter", "torque-starter-core", "envsched_torque.py"):
        shutil.copy(PLUGIN / name, libexec / name)
        (libexec / name).chmod(0o755)
    rendered = subprocess.run([envsched_cmd(), "--policy", str(policy), "site-config", "render", "--scheduler",
                               "torque", "--plugin-dir", str(libexec), "--src", str(REPO / "src"), "--resolver",
                               envsched_cmd(), "--spool-dir", str(home)],
                              check=True, stdout=subprocess.PIPE, text=True).stdout
    files = {"starter_conf": libexec / "torque-starter.conf", "prologue": home / "mom_priv" / "prologue",
             "epilogue": home / "mom_priv" / "epilogue", "submitfilter": libexec / "torque-submitfilter"}
    for name, path in files.items():
        path.write_text(section(rendered, name))
        path.chmod(0o644 if name == "starter_conf" else 0o500 if name in ("prologue", "epilogue") else 0o755)
    config = section(rendered, "mom_config").splitlines()
    assert config == [f"$job_starter {libexec}/torque-starter", "$job_starter_run_privileged true"]
    mom = Mom(home, config[0].split()[1], str(files["submitfilter"]), out)
    yield mom, policy, site_dir
    shutil.rmtree(root)


@pytest.fixture
def mom(torque, home):
    m, _policy, site = torque
    yield m
    assert not [p for p in os.listdir(site.run_dir) if p.startswith("torque-")], "a pin was left behind"


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
    try:
        for code, state in ((1, "aborted"), (2, "requeued"), (0, "completed")):
            prologue.write_text(f"#!/bin/sh\nexit {code}\n")
            r = mom.run(mom.qsub(test_user, "#!/bin/sh\necho ran\n"))
            assert r.state == state and (("ran" in r.stdout) == (state == "completed")), (code, r)
        prologue.chmod(0o522)
        assert not root_script_ok(prologue)
        assert mom.run(mom.qsub(test_user, "#!/bin/sh\necho ran\n")).state == "requeued"
    finally:
        prologue.write_bytes(saved)
        prologue.chmod(0o500)
    for p in os.listdir(site.run_dir):                  # jobs that ran above without a prologue
        if p.startswith("torque-"):
            subprocess.run([envsched_cmd(), "--policy", str(torque[1]), "release", "--key", p, "--quiet"], check=True)


def test_starter_guards(torque, mom, test_user):
    job = mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=deb12,LD_PRELOAD=/nonexistent/evil.so"])
    r = mom.run(job)
    # the root starter's first stage is static: no loader honoured the job's LD_PRELOAD as root
    assert r.exit_status == 0 and "evil.so" not in r.stderr, r
    env = mom.job_env(job)
    env.update(USER="root", LOGNAME="root")             # a forged owner: HOME is still the user's
    p = subprocess.run([mom.starter, "/bin/sh", "-c", "id -u"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert p.returncode == 73 and p.stdout == "" and "not pbs_mom's environment" in p.stderr, p
    p = subprocess.run(["setpriv", f"--reuid={test_user.pw_uid}", f"--regid={test_user.pw_gid}", "--clear-groups",
                        mom.starter, "/bin/true"], env=mom.job_env(job), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert p.returncode == 73 and "job_starter_run_privileged" in p.stderr, p
