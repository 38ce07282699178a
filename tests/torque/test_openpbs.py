"""OpenPBS hooks (plugins/torque/openpbs/) against the stand-in `pbs` module, end to end.

OpenPBS is not installable here: each hook runs the way pbs_python runs it (pbs_standin/driver.py
execs the hook source with the stand-in `pbs` importable), and the launch the execjob_launch hook
produced (progname, argv, env) is then run as PBS's mom would: as the job user (groups, gid, uid),
in the user's home (PBS starts jobs there), with argv[0] from e.argv. The payload reports what it
saw. The set-user-ID joiner and pbs-prepare (which the hooks run: the decision cache, else the
resolver; the release) are built from plugins/torque/openpbs/joiner and installed root-owned.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import installed
from testlib import TEST_USER, launch_records, launcher_tree

pytestmark = pytest.mark.torque

REPO = Path(__file__).resolve().parents[2]
HOOKS = installed.LIBEXEC if installed.INSTALLED else REPO / "plugins" / "torque" / "openpbs"
DRIVER = Path(__file__).resolve().parent / "pbs_standin" / "driver.py"
PAYLOAD = "head -1 /etc/os-release; echo CHOS=$CHOS; id -u; pwd"


@pytest.fixture(scope="module")
def pbs_site(site_dir):
    """The joiner installed set-user-ID root beside its configuration, pbs-prepare (root's, 0755)
    beside it, and the hook config file."""
    d = site_dir.root / "openpbs"
    d.mkdir(mode=0o755, exist_ok=True)
    joiner = d / "pbs-join"
    shutil.copy(installed.shim(REPO / "plugins/torque/openpbs/joiner/envsched-pbs-join", "pbs-join"), joiner)
    os.chown(joiner, 0, 0)
    joiner.chmod(0o4755)
    prepare = d / "pbs-prepare"
    shutil.copy(installed.shim(REPO / "plugins/torque/openpbs/joiner/envsched-pbs-prepare", "pbs-prepare"), prepare)
    os.chown(prepare, 0, 0)
    prepare.chmod(0o755)
    (d / "pbs-join.conf").write_text(f"run_dir={site_dir.run_dir}\n")
    (d / "pbs-join.conf").chmod(0o644)
    yield d


def prepare_conf(pbs_site: Path, policy: Path, resolver: Optional[str] = None, **settings: str) -> Path:
    """pbs-prepare.conf, as site-config render writes it (section prepare_conf), for `policy`."""
    run_dir = (pbs_site / "pbs-join.conf").read_text().strip().split("=", 1)[1]
    text = (f"policy={policy}\nresolver={resolver or installed.envsched()}\nrun_dir={run_dir}\n"
            f"log_file={pbs_site.parent / 'envsched.log'}\n" + "".join(f"{k}={v}\n" for k, v in settings.items()))
    path = pbs_site / "pbs-prepare.conf"
    path.write_text(text)
    path.chmod(0o644)
    return path


def config(pbs_site: Path, policy: Path, **extra: Any) -> Path:
    conf = {"policy": str(policy), "src": installed.src(), "joiner": str(pbs_site / "pbs-join"),
            "binds": [], "on_refusal": "exit"}
    conf.update(extra)
    path = pbs_site / "envsched.json"
    path.write_text(json.dumps(conf))
    path.chmod(0o644)
    prepare_conf(pbs_site, policy)
    return path


def run_hook(hook: str, type_: str, conf: Path, job: Dict[str, Any], **event: Any) -> Dict[str, Any]:
    spec = {"hook": str(HOOKS / hook), "type": type_, "config": str(conf), "job": job, **event}
    p = subprocess.run([installed.hook_python(), "-I", str(DRIVER)], input=json.dumps(spec), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120, cwd="/",
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert "exception" not in result, result["exception"]
    return result


def job(job_id: str, chos: Optional[str] = None, variables: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    return {"id": job_id, "euser": TEST_USER, "Job_Owner": f"{TEST_USER}@login", "queue": "workq",
            "Resource_List": {"chos": chos} if chos is not None else {}, "Variable_List": variables or {}}


def job_env(home: Path, variables: Optional[Dict[str, str]] = None, job_id: str = "1.srv") -> Dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "USER": TEST_USER, "LOGNAME": TEST_USER,
           "PBS_JOBID": job_id, "PBS_O_WORKDIR": str(home), "LD_LIBRARY_PATH": "/opt/lib"}
    env.update(variables or {})
    return env


def launch(result: Dict[str, Any], home: Path) -> subprocess.CompletedProcess:
    """What the mom does with the hook's output: exec progname with argv as the job user."""
    pw = pwd.getpwnam(TEST_USER)

    def drop() -> None:
        os.initgroups(TEST_USER, pw.pw_gid)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)

    argv: List[str] = result["argv"]
    return subprocess.run(argv, executable=result["progname"], env=result["env"], cwd=str(home),
                          preexec_fn=drop, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=60)


def start(conf: Path, home: Path, j: Dict[str, Any], variables: Optional[Dict[str, str]] = None,
          command: Optional[List[str]] = None) -> Dict[str, Any]:
    prog = command or ["/bin/sh", "-c", PAYLOAD]
    return run_hook("envsched_launch.py", "execjob_launch", conf, j, progname=prog[0], argv=prog,
                    env=job_env(home, variables, j["id"]))


def end(conf: Path, j: Dict[str, Any]) -> Dict[str, Any]:
    return run_hook("envsched_end.py", "execjob_end", conf, j)


def lines(text: str) -> List[str]:
    return [line for line in text.splitlines() if line]


def restricted(site_dir) -> Path:
    """A policy with deb13r, which the test user may not use."""
    return site_dir.policy(body=f'[environments.deb13r]\npath = "{site_dir.envs["deb13"]}"\n'
                                'allow_users = ["nobody-else"]\n')


def decided(site_dir, job_id: str) -> int:
    log = site_dir.root / "envsched.log"
    return sum(1 for line in log.read_text().splitlines()
               if "event=decided" in line and f"job={job_id} " in line + " ") if log.exists() else 0


@pytest.mark.parametrize("how,expected", [
    ({"chos": "deb13"}, "debian 13"),                               # qsub -l chos=deb13
    ({"variables": {"CHOS": "deb13"}}, "debian 13"),                # qsub -v CHOS=deb13
    ({}, "debian 12"),                                              # the site default
])
def test_job_runs_in_requested_environment(site_dir, pbs_site, test_user, home, how, expected):
    conf = config(pbs_site, site_dir.policy())
    j = job("10.srv", chos=how.get("chos"), variables=how.get("variables"))
    try:
        r = start(conf, home, j, how.get("variables"))
        assert not r["rejected"], r
        assert r["progname"] == str(pbs_site / "pbs-join")
        assert r["argv"][:3] == [str(pbs_site / "pbs-join"), "openpbs-10.srv", "/bin/sh"]
        p = launch(r, home)
        assert p.returncode == 0, p.stderr
        name = expected.replace(" ", "")
        assert p.stdout.splitlines() == [f'PRETTY_NAME="{expected} (mini)"', f"CHOS={name.replace('debian', 'deb')}",
                                         str(test_user.pw_uid), str(home)]
    finally:
        end(conf, j)
    assert not (site_dir.run_dir / "openpbs-10.srv").exists()


def test_user_file_chooses(site_dir, pbs_site, test_user, home):
    conf = config(pbs_site, site_dir.policy())
    (home / ".chos").write_text("deb13\n")
    os.chown(home / ".chos", test_user.pw_uid, test_user.pw_gid)
    j = job("11.srv")
    try:
        p = launch(start(conf, home, j), home)
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[:2] == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13"]
    finally:
        end(conf, j)


def test_exit_code_and_restored_environment(site_dir, pbs_site, home):
    """The job's exit status is the payload's; LD_LIBRARY_PATH (dropped by glibc for the
    set-user-ID joiner) reaches the job."""
    conf = config(pbs_site, site_dir.policy())
    j = job("12.srv", chos="deb13")
    try:
        r = start(conf, home, j, command=["/bin/sh", "-c", 'echo "$LD_LIBRARY_PATH"; exit 3'])
        p = launch(r, home)
        assert p.returncode == 3, p.stderr
        assert p.stdout.strip() == "/opt/lib"
    finally:
        end(conf, j)


def test_two_tasks_share_one_view_and_one_decision(site_dir, pbs_site, home):
    conf = config(pbs_site, site_dir.policy())
    j = job("13.srv", chos="deb13")
    probe = ["/bin/sh", "-c", "readlink /proc/self/ns/mnt"]
    try:
        first = launch(start(conf, home, j, command=probe), home)
        second = launch(start(conf, home, j, command=probe), home)      # a TM task on the same host
        assert first.returncode == second.returncode == 0, first.stderr + second.stderr
        assert first.stdout == second.stdout != os.readlink("/proc/self/ns/mnt") + "\n"
        assert decided(site_dir, "13.srv") == 1                         # the resolver ran once
    finally:
        end(conf, j)
    assert not (site_dir.run_dir / "openpbs-13.srv").exists()


def test_host_os_needs_no_joiner(site_dir, pbs_site, home):
    conf = config(pbs_site, site_dir.policy(site="allow_local = true"))
    j = job("14.srv", chos="local")
    try:
        r = start(conf, home, j)
        assert r["progname"] == "/bin/sh" and r["argv"] == ["/bin/sh", "-c", PAYLOAD]
        p = launch(r, home)
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[1] == "CHOS=local"
    finally:
        end(conf, j)
    assert not (site_dir.run_dir / "openpbs-14.srv").exists()


def test_refused_at_start_reaches_stderr_with_exit_77(site_dir, pbs_site, home):
    """The policy changed after submit: the job's error file gets the one line, exit 77."""
    conf = config(pbs_site, restricted(site_dir))
    j = job("15.srv", chos="deb13r")
    try:
        r = start(conf, home, j)
        assert not r["rejected"]
        p = launch(r, home)
        assert p.returncode == 77
        assert p.stdout == ""
        assert p.stderr.startswith("envsched: environment 'deb13r' (option) refused: ")
        assert len(p.stderr.splitlines()) == 1
    finally:
        end(conf, j)
    assert not (site_dir.run_dir / "openpbs-15.srv").exists()


def test_refused_at_start_with_reject(site_dir, pbs_site, home):
    conf = config(pbs_site, site_dir.policy(), on_refusal="reject")
    r = start(conf, home, job("16.srv", chos="sl5"))
    assert r["rejected"]
    assert r["reject_msg"].startswith("envsched: ") and "sl5" in r["reject_msg"]
    assert not (site_dir.run_dir / "openpbs-16.srv").exists()


def test_broken_tree_at_start_exit_69(site_dir, pbs_site, home):
    broken = site_dir.root / "os" / "broken"
    shutil.copytree(site_dir.envs["deb13"], broken, symlinks=True)
    (broken / "usr").chmod(0o777)                                   # writable by others: refused
    body = f'[environments.brk]\npath = "{broken}"\n'
    conf = config(pbs_site, site_dir.policy(body=body))
    try:
        p = launch(start(conf, home, job("17.srv", chos="brk")), home)
        assert p.returncode == 69, p.stderr
        assert p.stderr.startswith("envsched: ") and len(p.stderr.splitlines()) == 1
    finally:
        shutil.rmtree(broken)
    assert not (site_dir.run_dir / "openpbs-17.srv").exists()


def test_queuejob_refuses_at_submit(site_dir, pbs_site, test_user):
    conf = config(pbs_site, restricted(site_dir))
    bad = run_hook("envsched_queuejob.py", "queuejob", conf, job("", chos="deb13r"), requestor=TEST_USER)
    assert bad["rejected"]
    assert bad["reject_msg"].startswith("envsched: environment 'deb13r' (option) refused: ")
    assert "allowed for you: deb12, deb13" in bad["reject_msg"]
    var = run_hook("envsched_queuejob.py", "queuejob", conf, job("", variables={"CHOS": "nope"}),
                   requestor=TEST_USER)
    assert var["rejected"] and "'nope' (CHOS variable)" in var["reject_msg"]
    ok = run_hook("envsched_queuejob.py", "queuejob", conf, job("", chos="deb12"), requestor=TEST_USER)
    assert not ok["rejected"], ok


def test_joiner_refuses_another_users_pin_and_bad_keys(site_dir, pbs_site, test_user, home):
    """Run by hand, the joiner joins nothing but a pin recorded for the caller's uid."""
    conf = config(pbs_site, site_dir.policy())
    j = job("18.srv", chos="deb13")
    j["euser"] = "root"
    try:
        start(conf, home, j)
        fake = {"progname": str(pbs_site / "pbs-join"), "env": {"PATH": "/usr/bin:/bin"},
                "argv": [str(pbs_site / "pbs-join"), "openpbs-18.srv", "/bin/id", "id"]}
        p = launch(fake, home)
        assert p.returncode == 73 and "prepared for uid 0" in p.stderr
        fake["argv"][1] = "../run"
        p = launch(fake, home)
        assert p.returncode == 64 and "not a job key" in p.stderr
    finally:
        end(conf, j)


def test_rendered_configuration_drives_the_hooks(site_dir, pbs_site, home):
    """`site-config render --scheduler openpbs`: its hook_config and joiner_conf run a job."""
    from envsched import siteconfig
    from envsched.policy import load_policy
    policy = site_dir.policy()
    text = siteconfig.render("openpbs", load_policy(str(policy)), siteconfig.RenderOptions(
        policy_path=str(policy), resolver=installed.envsched(), plugin_dir=str(pbs_site), src=str(REPO / "src"),
        spool_dir="none"))
    assert 'qmgr -c "create resource chos type=string"' in siteconfig.section(text, "resource")
    assert f"run_dir={site_dir.run_dir}\n" == siteconfig.section(text, "joiner_conf")
    assert siteconfig.section(text, "prepare_conf") == (
        f"policy={policy}\nresolver={installed.envsched()}\nrun_dir={site_dir.run_dir}\n"
        f"log_file={site_dir.root / 'envsched.log'}\n")
    conf = pbs_site / "envsched-openpbs.json"
    conf.write_text(siteconfig.section(text, "hook_config"))
    assert json.loads(conf.read_text())["joiner"] == str(pbs_site / "pbs-join")
    (pbs_site / "pbs-prepare.conf").write_text(siteconfig.section(text, "prepare_conf"))
    j = job("19.srv", chos="deb13")
    try:
        p = launch(start(conf, home, j), home)
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[0] == 'PRETTY_NAME="debian 13 (mini)"'
    finally:
        end(conf, j)


def test_forged_owner_and_queue_in_the_jobs_environment(site_dir, pbs_site, test_user, home):
    """The hook takes the owner and queue from the server's job (euser, queue), never from the
    job's variables or environment: USER=root and PBS_QUEUE=gpu there change nothing."""
    policy = site_dir.policy(body=f'[environments.deb13q]\npath = "{site_dir.envs["deb13"]}"\n'
                                  'allow_partitions = ["gpu"]\n', name="openpbs-forged.toml")
    conf = config(pbs_site, policy)
    forged = {"USER": "root", "LOGNAME": "root", "HOME": "/root", "PBS_QUEUE": "gpu", "PBS_JOBID": "1.other"}
    j = job("16.srv", chos="deb13q", variables=forged)
    try:
        r = start(conf, home, j, forged)
        p = launch(r, home)
        assert (p.returncode, p.stdout) == (77, ""), p
        assert p.stderr.startswith("envsched: environment 'deb13q'"), p.stderr
    finally:
        end(conf, j)
    j = job("17.srv", chos="deb12", variables=forged)
    try:
        p = launch(start(conf, home, j, forged), home)
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[2] == str(test_user.pw_uid)       # not root
    finally:
        end(conf, j)
    assert not (site_dir.run_dir / "openpbs-16.srv").exists() and not (site_dir.run_dir / "openpbs-17.srv").exists()


def test_forged_src_directory_is_not_imported_by_root(site_dir, pbs_site, test_user, home, tmp_path):
    """A hook configuration whose `src` (put on root's sys.path) is the user's: refused, 78."""
    evil = home / "pbs-src"
    (evil / "envsched").mkdir(parents=True, exist_ok=True)
    conf = config(pbs_site, site_dir.policy(), src=str(evil))
    r = start(conf, home, job("18.srv", chos="deb12"))
    p = launch(r, home)
    assert (p.returncode, p.stdout) == (78, ""), p
    assert lines(p.stderr) == [f"envsched: {conf}: src {evil}: {home} must be root's and not writable by group or "
                               "others"], p.stderr


def test_forged_joiner_configuration(site_dir, pbs_site, home):
    """pbs-join.conf (run_dir) writable by others: the joiner joins nothing, 78 and one line."""
    conf_file = pbs_site / "pbs-join.conf"
    fake = {"progname": str(pbs_site / "pbs-join"), "env": {"PATH": "/usr/bin:/bin"},
            "argv": [str(pbs_site / "pbs-join"), "openpbs-19.srv", "/bin/id", "id"]}
    conf_file.chmod(0o666)
    try:
        p = launch(fake, home)
    finally:
        conf_file.chmod(0o644)
    assert (p.returncode, p.stdout) == (78, ""), p
    assert lines(p.stderr) == [f"envsched: joiner configuration: {conf_file}: must be owned by root and not "
                               "writable by group or others"]


def test_forged_account_in_the_jobs_environment(site_dir, pbs_site, test_user, home):
    """deb13a is for account proj1 only: the hook takes the account from the server's job
    (Account_Name, qsub -A), never from PBS_ACCOUNT in the job's variables or environment."""
    policy = site_dir.policy(body=f'[environments.deb13a]\npath = "{site_dir.envs["deb13"]}"\n'
                                  'allow_accounts = ["proj1"]\n', name="openpbs-account.toml")
    conf = config(pbs_site, policy)
    forged = {"PBS_ACCOUNT": "proj1"}
    for job_id, account, expected in (("20.srv", "other", 77), ("21.srv", None, 77), ("22.srv", "proj1", 0)):
        j = job(job_id, chos="deb13a", variables=forged)
        j["Account_Name"] = account
        try:
            p = launch(start(conf, home, j, forged), home)
        finally:
            end(conf, j)
        assert p.returncode == expected, (account, p)
        if expected:
            assert p.stdout == "" and p.stderr.startswith("envsched: environment 'deb13a'"), p.stderr
        else:
            assert p.stdout.splitlines()[:2] == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13a"], p.stdout


def test_launcher_runs_the_program_in_the_view(site_dir, pbs_site, test_user, home):
    """An environment's launcher (#12): the joiner execs launcher + PROGNAME + ARGS in the view (the
    launcher exec's the program: same pid); one that cannot be executed fails in one line, exit 69."""
    import uuid
    records = Path(f"/tmp/envsched-launch-{uuid.uuid4().hex[:8]}")
    tree = launcher_tree(site_dir.root / "os" / "launch-pbs", records)
    policy = site_dir.policy(name="policy-pbs-launcher.toml", body=f"""
[environments.mck]
path = "{tree}"
launcher = ["/opt/launch/rec", "--rec-tag=mck one"]
[environments.mck-broken]
path = "{tree}"
launcher = ["/opt/launch/broken"]
""")
    conf = config(pbs_site, policy)
    payload = 'echo "PID=$$"; for a in "$@"; do echo "ARG=$a"; done'
    try:
        j = job("30.srv", chos="mck")
        try:
            p = launch(start(conf, home, j, command=["/bin/sh", "-c", payload, "sh", "a b", ""]), home)
        finally:
            end(conf, j)
        assert p.returncode == 0, p.stderr
        (rec,) = launch_records(records)
        assert rec["view"] == "launch 12" and rec["tag"] == "mck one" and rec["uid"] == str(test_user.pw_uid)
        assert rec["args"] == ["/bin/sh", "-c", payload, "sh", "a b", ""]
        assert p.stdout.splitlines() == [f"PID={rec['pid']}", "ARG=a b", "ARG="]
        j = job("31.srv", chos="mck-broken")
        try:
            p = launch(start(conf, home, j), home)
        finally:
            end(conf, j)
        assert p.returncode == 69 and p.stdout == ""
        assert p.stderr.splitlines() == ["envsched: cannot execute the launcher /opt/launch/broken: No such file or "
                                         "directory"]
    finally:
        shutil.rmtree(records)
        shutil.rmtree(tree)


# ---- warm jobs: no Python on the job's path (#13) ------------------------------------------------


def stub_resolver(pbs_site: Path) -> tuple:
    """A resolver that writes down every run, then is the real one (root's, like the real one: the
    C side runs nothing else). (path, calls file)"""
    calls = pbs_site / "resolver-calls"
    stub = pbs_site / "resolver-stub"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\nexec {installed.envsched()} "$@"\n')
    stub.chmod(0o755)
    calls.write_text("")
    return stub, calls


def run_hook_traced(hook: str, type_: str, conf: Path, job: Dict[str, Any], **event: Any) -> tuple:
    """run_hook, with Python's import trace (-X importtime): (result, the modules the hook imported)."""
    spec = {"hook": str(HOOKS / hook), "type": type_, "config": str(conf), "job": job, **event}
    p = subprocess.run([installed.hook_python(), "-I", "-X", "importtime", str(DRIVER)], input=json.dumps(spec),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120, cwd="/",
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert "exception" not in result, result["exception"]
    modules = [line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")]
    return result, modules


def resolver_runs(calls: Path) -> List[str]:
    """The stub's records, one per run (an argument may hold a line break: a run starts with --policy)."""
    return [line for line in calls.read_text().splitlines() if line.startswith("--policy ")]


def of_envsched(modules: List[str]) -> List[str]:
    return [m for m in modules if m == "envsched" or m.startswith("envsched.")]


def admin_lines(site_dir, job_id: str, event: str) -> List[str]:
    log = site_dir.root / "envsched.log"
    return [line for line in log.read_text().splitlines()
            if f"event={event} " in line and f" job={job_id} " in line + " "] if log.exists() else []


def test_warm_job_without_python(site_dir, pbs_site, test_user, home):
    """The hooks import nothing of envsched; pbs-prepare (C) prepares the pin: the first job's
    decision by the resolver, the next ones with the same inputs from the decision cache without
    any resolver run, the release in C. A policy edit is honoured on the very next job."""
    policy = site_dir.policy(name="openpbs-warm.toml", site="view_hold = 600")
    conf = config(pbs_site, policy)
    stub, calls = stub_resolver(pbs_site)
    prepare_conf(pbs_site, policy, resolver=str(stub))
    original = policy.read_text()
    try:
        for n, job_id in enumerate(("40.srv", "41.srv", "42.srv")):
            j = job(job_id, chos="deb13")
            r, imported = run_hook_traced("envsched_launch.py", "execjob_launch", conf, j, progname="/bin/sh",
                                          argv=["/bin/sh", "-c", PAYLOAD], env=job_env(home, None, job_id))
            assert of_envsched(imported) == [] and "json" in imported, imported
            assert r["argv"][:3] == [str(pbs_site / "pbs-join"), f"openpbs-{job_id}", "/bin/sh"], r
            p = launch(r, home)
            assert p.returncode == 0, p.stderr
            assert p.stdout.splitlines()[:2] == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13"], p.stdout
            _, imported = run_hook_traced("envsched_end.py", "execjob_end", conf, j)
            assert of_envsched(imported) == [], imported
            assert not (site_dir.run_dir / f"openpbs-{job_id}").exists()
            decided = admin_lines(site_dir, job_id, "decided")
            assert len(decided) == 1, decided
            ran = resolver_runs(calls)
            if n == 0:                                  # cold: the resolver decided and prepared, once
                assert not decided[0].endswith("by=cache") and " scheduler=openpbs" in decided[0], decided
                assert len(ran) == 1 and ran[0].split()[2] == "prepare" and f"--job {job_id} " in ran[0], ran
                assert admin_lines(site_dir, job_id, "prepared"), "the resolver's prepare line"
            else:                                       # warm: no resolver, no Python at all
                assert decided[0].endswith(" scheduler=openpbs by=cache"), decided
                assert len(ran) == 1, ran
                assert admin_lines(site_dir, job_id, "prepared") == []
            released = admin_lines(site_dir, job_id, "released")     # pbs-prepare's own line (C)
            assert len(released) == 1 and released[0].endswith(f"event=released key=openpbs-{job_id} job={job_id}")
        # the policy disables deb13: the next job is the resolver's again, and refused with its line
        policy.write_text(original.replace("[environments.deb13]\n", "[environments.deb13]\nenabled = false\n"))
        j = job("43.srv", chos="deb13")
        try:
            p = launch(start(conf, home, j), home)
        finally:
            end(conf, j)
        assert (p.returncode, p.stdout) == (77, ""), p
        assert lines(p.stderr) == [lines(p.stderr)[0]] and p.stderr.startswith("envsched: environment 'deb13'") \
            and "disabled by the site" in p.stderr, p.stderr
        assert len(resolver_runs(calls)) == 2 and admin_lines(site_dir, "43.srv", "decided") == []
        # enabled again (another edit): the resolver decides once more, then the cache serves
        policy.write_text(original)
        for job_id, by_cache in (("44.srv", False), ("45.srv", True)):
            j = job(job_id, chos="deb13")
            try:
                p = launch(start(conf, home, j), home)
            finally:
                end(conf, j)
            assert p.returncode == 0, p.stderr
            assert admin_lines(site_dir, job_id, "decided")[0].endswith("by=cache") == by_cache
        assert len(resolver_runs(calls)) == 3
    finally:
        policy.write_text(original)
        subprocess.run([installed.envsched(), "--policy", str(policy), "gc", "--idle-views"],
                       stdout=subprocess.DEVNULL, check=True)


def test_warm_job_follows_the_user_file(site_dir, pbs_site, test_user, home):
    """A job that names nothing: ~/.chos (read as the user) is one of the cached decision's inputs;
    changing it is honoured on the very next job, which the resolver decides again."""
    policy = site_dir.policy(name="openpbs-warm-file.toml", site="view_hold = 600")
    conf = config(pbs_site, policy)
    stub, calls = stub_resolver(pbs_site)
    prepare_conf(pbs_site, policy, resolver=str(stub))
    user_file = home / ".chos"
    try:
        for job_id, chosen, by_cache in (("50.srv", "deb13", False), ("51.srv", "deb13", True),
                                         ("52.srv", "deb12", False), ("53.srv", "deb12", True)):
            user_file.write_text(f"{chosen}\n")
            os.chown(user_file, test_user.pw_uid, test_user.pw_gid)
            j = job(job_id)
            try:
                p = launch(start(conf, home, j), home)
            finally:
                end(conf, j)
            assert p.returncode == 0, p.stderr
            assert p.stdout.splitlines()[1] == f"CHOS={chosen}", (job_id, p.stdout)
            decided = admin_lines(site_dir, job_id, "decided")
            assert len(decided) == 1 and decided[0].endswith("by=cache") == by_cache, (job_id, decided)
        assert len(resolver_runs(calls)) == 2
    finally:
        subprocess.run([installed.envsched(), "--policy", str(policy), "gc", "--idle-views"],
                       stdout=subprocess.DEVNULL, check=True)


def test_forged_chos_in_the_jobs_environment(site_dir, pbs_site, test_user, home):
    """CHOS in the job's environment is the user's request, nothing more (the rule: e.env's CHOS,
    else Variable_List's; the `chos` resource wins over both). A forged CHOS cannot take an
    environment the policy refuses, not even with a warm decision for another request cached, and
    cannot smuggle other inputs (queue) into the cache's inputs line."""
    policy = site_dir.policy(name="openpbs-forged-chos.toml", site="view_hold = 600", body=f"""
[environments.deb13r]
path = "{site_dir.envs['deb13']}"
allow_users = ["nobody-else"]
[environments.deb13q]
path = "{site_dir.envs['deb13']}"
allow_partitions = ["gpu"]
""")
    conf = config(pbs_site, policy)
    stub, calls = stub_resolver(pbs_site)
    prepare_conf(pbs_site, policy, resolver=str(stub))

    def run(job_id: str, chos: Optional[str], env: Dict[str, str], queue: str = "workq"):
        j = job(job_id, chos=chos, variables=env)
        j["queue"] = queue
        try:
            return launch(start(conf, home, j, env), home)
        finally:
            end(conf, j)

    try:
        for job_id in ("60.srv", "61.srv"):                             # deb13 warm for this user
            assert run(job_id, None, {"CHOS": "deb13"}).returncode == 0
        assert admin_lines(site_dir, "61.srv", "decided")[0].endswith("by=cache")
        assert run("62.srv", None, {"CHOS": "deb13q"}, queue="gpu").returncode == 0     # the gpu queue's
        before = len(resolver_runs(calls))
        # the resource (the server's) wins over a CHOS in the job's environment
        p = run("63.srv", "deb12", {"CHOS": "deb13"})
        assert p.returncode == 0 and p.stdout.splitlines()[:2] == ['PRETTY_NAME="debian 12 (mini)"', "CHOS=deb12"]
        # a restricted environment: refused by the resolver, whatever is cached
        p = run("64.srv", None, {"CHOS": "deb13r"})
        assert (p.returncode, p.stdout) == (77, "") and p.stderr.startswith("envsched: environment 'deb13r'"), p
        assert len(lines(p.stderr)) == 1
        # the gpu queue's environment from workq, with the queue smuggled into CHOS: never the cache's
        for job_id, forged in (("65.srv", "deb13q"), ("66.srv", "deb13q\tqueue=gpu"), ("67.srv", "deb13q\nqueue=gpu")):
            p = run(job_id, None, {"CHOS": forged})
            assert (p.returncode, p.stdout) == (77, ""), (forged, p)
            assert len(lines(p.stderr)) == 1 and p.stderr.startswith("envsched: "), p.stderr
            assert not any(line.endswith("by=cache") for line in admin_lines(site_dir, job_id, "decided"))
        assert len(resolver_runs(calls)) == before + 5               # every one of them: the resolver's
    finally:
        subprocess.run([installed.envsched(), "--policy", str(policy), "gc", "--idle-views"],
                       stdout=subprocess.DEVNULL, check=True)


def test_forged_prepare_configuration(site_dir, pbs_site, home, test_user):
    """pbs-prepare runs as root: its configuration (pbs-prepare.conf) writable by others, or a
    `prepare` program in the hook configuration that is not root's alone, refuses the job (78, one
    line) and runs nothing of theirs; pbs-prepare itself refuses a caller that is not root."""
    conf = config(pbs_site, site_dir.policy())
    prepare = pbs_site / "pbs-prepare.conf"
    prepare.chmod(0o666)
    try:
        p = launch(start(conf, home, job("70.srv", chos="deb12")), home)
    finally:
        prepare.chmod(0o644)
    assert (p.returncode, p.stdout) == (78, ""), p
    assert lines(p.stderr) == [f"envsched: {prepare}: must be owned by root and not writable by group or others"]
    theirs = home / "pbs-prepare"
    shutil.copy(pbs_site / "pbs-prepare", theirs)
    os.chown(theirs, test_user.pw_uid, test_user.pw_gid)
    try:
        conf = config(pbs_site, site_dir.policy(), prepare=str(theirs))
        p = launch(start(conf, home, job("71.srv", chos="deb12")), home)
    finally:
        theirs.unlink()
    assert (p.returncode, p.stdout) == (78, ""), p
    assert lines(p.stderr) == [f"envsched: {conf}: prepare {theirs}: {home} must be root's and not writable by "
                               "group or others"], p.stderr
    as_user = launch({"progname": str(pbs_site / "pbs-prepare"), "env": {"PATH": "/usr/bin:/bin"},
                      "argv": [str(pbs_site / "pbs-prepare"), "end", "72.srv"]}, home)
    assert (as_user.returncode, lines(as_user.stderr)) == (
        73, ["envsched: pbs-prepare runs as root (from the OpenPBS hooks)"]), as_user
    assert not (site_dir.run_dir / "openpbs-70.srv").exists() and not (site_dir.run_dir / "openpbs-71.srv").exists()


def test_release_of_a_pin_the_resolver_releases(site_dir, pbs_site, home):
    """A pin with isolation namespaces (never shared, never cached) is released by the end hook
    through `envsched release` (pbs-prepare leaves it to the resolver), and nothing is left."""
    policy = site_dir.policy(name="openpbs-isolated.toml", body=f"""
[environments.iso]
path = "{site_dir.envs['deb13']}"
namespaces = ["ipc", "uts"]
hostname = "iso-node"
""")
    conf = config(pbs_site, policy)
    stub, calls = stub_resolver(pbs_site)
    prepare_conf(pbs_site, policy, resolver=str(stub))
    j = job("80.srv", chos="iso")
    try:
        p = launch(start(conf, home, j, command=["/bin/sh", "-c", "hostname; head -1 /etc/os-release"]), home)
    finally:
        end(conf, j)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["iso-node", 'PRETTY_NAME="debian 13 (mini)"'], p.stdout
    runs = resolver_runs(calls)
    assert [r.split()[2] for r in runs] == ["prepare", "release"], runs
    assert runs[1].endswith("release --key openpbs-80.srv --quiet"), runs
    assert not (site_dir.run_dir / "openpbs-80.srv").exists()
    log = (site_dir.root / "envsched.log").read_text().splitlines()
    assert any(line.endswith(" event=released key=openpbs-80.srv") for line in log)     # the resolver's line
