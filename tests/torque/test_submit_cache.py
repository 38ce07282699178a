"""Warm submissions without envsched's Python (#13) on Torque and OpenPBS, through their contract
harnesses.

Torque: the rendered submit filter runs `torque-pelog submit-filter` (C, qsubfilter.c) in front of
the Python filter; a submission whose answer is in the user's ~/.cache/envsched/submit (written by
the Python filter's `validate --submit-cache`), every input of it unchanged, is stamped by C alone.
That no Python ran is shown by a copy of the rendered filter whose Python command names an
interpreter that does not exist: a hit passes, anything that goes to Python fails with the C
filter's one line. What it prints is compared byte for byte with what the Python filter prints.

OpenPBS: the queuejob hook asks `pbs-prepare submit` (C) for root's cached answer (run_dir/.submit)
before importing envsched; Python's import trace (-X importtime) shows envsched imported or not.

Every input change (policy edit, ~/.chos, a group removed, an environment disabled, a new version
stamped) is honoured on the very next submission; a forged entry never reaches a decision.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import installed  # noqa: E402
from test_openpbs import DRIVER, HOOKS, config, job, of_envsched, restricted  # noqa: E402
from test_openpbs import pbs_site  # noqa: E402,F401  (fixture)
from test_torque_mom import PAYLOAD, lines, mom, torque  # noqa: E402,F401  (fixtures)
from test_torque_pin_submit import ENV, QUEUEJOB_DRIVER, SHOW, Versions, pin_trees, seen  # noqa: E402,F401
from testlib import TEST_USER  # noqa: E402

pytestmark = [pytest.mark.torque, pytest.mark.ns]

NO_PYTHON = "/nonexistent/python3"
CACHE = Path(".cache/envsched/submit")


# ------------------------------------------------------------------------------ Torque helpers
class Filter:
    """The rendered submit filter, its copy without Python, and the Python filter's own command."""

    def __init__(self, path: str):
        self.path = Path(path)
        text = self.path.read_text()
        self.no_python = self.path.with_name("torque-submitfilter-nopython")
        self.no_python.write_text(text.replace("/usr/bin/python3", NO_PYTHON))
        os.chown(self.no_python, 0, 0)
        self.no_python.chmod(0o755)
        words = shlex.split([ln for ln in text.splitlines() if ln.startswith("exec ")][0])
        assert words[2] == "submit-filter" and words[3] == "/usr/bin/python3" and words[-1] == "$@", words
        self.python = words[3:-1]                       # ends with its "--"

    def run(self, user, script: str, args: Sequence[str] = (), env: Optional[Dict[str, str]] = None,
            which: str = "filter") -> subprocess.CompletedProcess:
        """As qsub runs it [AG-SF]: as the user, qsub's arguments, the script on stdin."""
        argv = {"filter": [str(self.path)], "c": [str(self.no_python)], "python": self.python}[which]
        base = {"PATH": "/usr/bin:/bin", "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}
        base.update(env or {})
        return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--",
                               *argv, *args], input=script.encode() if isinstance(script, str) else script,
                              env=base, cwd=user.pw_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)


def went_to_python(p: subprocess.CompletedProcess) -> bool:
    return p.returncode == 1 and f"cannot run: {NO_PYTHON}" in p.stderr.decode()


def warm(p: subprocess.CompletedProcess) -> bool:
    return not went_to_python(p)


@pytest.fixture
def filt(torque, mom, home, test_user):
    f = Filter(mom.submit_filter)
    shutil.rmtree(home / ".cache", ignore_errors=True)
    yield f
    shutil.rmtree(home / ".cache", ignore_errors=True)
    f.no_python.unlink()


def entries(home: Path) -> List[Path]:
    d = home / CACHE
    return sorted(d.iterdir()) if d.exists() else []


# ------------------------------------------------------------------------------ Torque
def test_torque_warm_submission_without_python(torque, mom, filt, test_user, home):
    """The first submission goes to Python, which keeps the answer; the next, with the same request,
    is stamped by C alone, byte for byte as Python stamps it, and the job runs in the environment."""
    cold = filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb13"], which="c")
    assert went_to_python(cold), cold                   # nothing kept yet
    first = filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb13"])
    assert first.returncode == 0, first.stderr
    assert len(entries(home)) == 1 and entries(home)[0].stat().st_uid == test_user.pw_uid
    again = filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb13"], which="c")
    assert (again.returncode, again.stdout, again.stderr) == (0, first.stdout, b""), again
    assert again.stdout.decode().splitlines()[:2] == ["#!/bin/sh", "#ENVSCHED chos=deb13"]
    # the warm submission's job, through the harness
    filter_path, mom.submit_filter = mom.submit_filter, str(filt.no_python)
    try:
        job = mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=deb13"])
    finally:
        mom.submit_filter = filter_path
    assert job.script == first.stdout.decode()
    r = mom.run(job)
    assert (r.state, r.exit_status) == ("completed", 0) and "os=debian 13 (mini)" in r.stdout, r


CASES = [
    # (script, qsub args, submitter's environment)
    (PAYLOAD, ["-v", "CHOS=deb13"], {}),
    ("echo no shebang\n", ["-vCHOS=deb12"], {}),
    ("#!/bin/sh", ["-v", "A=1,CHOS=deb13,B"], {"B": "x"}),
    ("#!/bin/bash\n#PBS -N x\n#PBS -v CHOS=deb12\n\necho hi\n", [], {}),
    ("#!/bin/sh\n#PBS -v CHOS=deb12\n#PBS -v CHOS\necho hi\n", [], {"CHOS": "deb13"}),
    ("#!/bin/sh\n#ENVSCHED chos=deb12\n#ENVSCHED pin=deb12@sha256:00\n#PBS -v CHOS=deb13\ntrue\n#ENVSCHED chos=x\n",
     [], {}),
    ("#!/bin/sh\n  \t\n# a comment\n#PBS   -v   CHOS=deb13 -v\necho héllo wörld\n", ["-V"], {"CHOS": "deb12"}),
    ("#!/bin/sh\necho one\n#PBS -v CHOS=deb12\n", ["-v", " CHOS =deb13"], {}),
    ("\n\n#!/bin/sh\n", ["-v"], {}),
    ("", ["-V", "-v", "X=1"], {"CHOS": "deb13"}),
    ("#!/bin/sh\n#PBS -v CHOS=nope\n", [], {}),                  # refused: the same line from C
]


@pytest.mark.parametrize("script,args,env", CASES)
def test_torque_c_filter_prints_what_python_prints(torque, mom, filt, test_user, home, script, args, env):
    """Differential: the Python filter's output (which also keeps its answer), then the C filter's
    for the same submission, without Python: identical stdout, stderr and exit status."""
    py = filt.run(test_user, script, args, env, which="python")
    c = filt.run(test_user, script, args, env, which="c")
    assert warm(c), (script, args, c.stderr)
    assert (c.returncode, c.stdout, c.stderr) == (py.returncode, py.stdout, py.stderr), (script, args)
    if "nope" in script:
        assert c.returncode == 1 and c.stderr.decode().startswith("envsched: ") and not c.stdout


def random_submissions(seed: int, count: int) -> list:
    """Submissions made of the pieces qsub and the filter care about, in random order and number."""
    import random
    rng = random.Random(seed)
    lines = ["#PBS -v CHOS=deb13", "#PBS -v CHOS=deb12,X=1", "#PBS -v CHOS", "#PBS -N name", "#PBS  -v  A,CHOS=deb12",
             "#PBS -v", "#ENVSCHED chos=deb12", "#ENVSCHED pin=deb13@sha256:ab", "# comment", "", "  ", "\t",
             "echo run", " echo indented", "#PBS -v CHOS=nope", "true # CHOS=deb13", "#!/bin/bash"]
    args = [["-v", "CHOS=deb13"], ["-vCHOS=deb12"], ["-V"], ["-v", "CHOS"], ["-v", "A=1"], ["-N", "x"], ["-v"]]
    out = []
    for _ in range(count):
        body = [rng.choice(lines) for _ in range(rng.randint(0, 7))]
        if rng.random() < 0.6:
            body.insert(0, "#!/bin/sh")
        script = "\n".join(body) + ("\n" if rng.random() < 0.8 else "")
        out.append((script, [a for _ in range(rng.randint(0, 3)) for a in rng.choice(args)],
                    {"CHOS": rng.choice(["deb12", "deb13", ""])} if rng.random() < 0.5 else {}))
    return out


@pytest.mark.parametrize("script,args,env", random_submissions(13, 24))
def test_torque_c_filter_prints_what_python_prints_random(torque, mom, filt, test_user, home, script, args, env):
    py = filt.run(test_user, script, args, env, which="python")
    c = filt.run(test_user, script, args, env, which="c")
    assert warm(c), (script, args, env, c.stderr)
    assert (c.returncode, c.stdout, c.stderr) == (py.returncode, py.stdout, py.stderr), (script, args, env)


@pytest.mark.parametrize("script,args,env", [
    ("#!/bin/sh\n#PBS -v CHOS=deb13\r\n#PBS -v CHOS=deb12\n", [], {}),       # splitlines() splits at \r
    ("#!/bin/sh\n# r\u00e9sum\u00e9\n#PBS -v CHOS=deb12\n", [], {}),         # not plain ASCII before a command
    ("#!/bin/sh\n#PBS -v CHOS=deb12\n", ["-v", "CHOS=d\u00e9b"], {}),
    (b"#!/bin/sh\n#PBS -v CHOS=deb12\necho \xff\n", [], {}),                  # not UTF-8
    ("#!/bin/sh\n\x1f\n#PBS -v CHOS=deb12\n", [], {}),                       # a blank line to Python's strip()
])
def test_torque_what_c_cannot_read_as_python_goes_to_python(torque, mom, filt, test_user, home, script, args, env):
    py = filt.run(test_user, script, args, env, which="python")
    assert py.returncode in (0, 1)
    assert went_to_python(filt.run(test_user, script, args, env, which="c"))
    both = filt.run(test_user, script, args, env)                           # the rendered filter: Python
    assert (both.returncode, both.stdout) == (py.returncode, py.stdout)


def test_torque_every_input_change_is_honoured_next(torque, mom, filt, test_user, home):
    """~/.chos (the job names nothing), a policy edit, an environment disabled: each goes to Python
    on the very next submission, whose answer is then kept."""
    _m, policy, _site = torque
    original = policy.read_text()
    (home / ".chos").write_text("deb13\n")
    os.chown(home / ".chos", test_user.pw_uid, test_user.pw_gid)
    try:
        assert filt.run(test_user, PAYLOAD).returncode == 0
        assert warm(filt.run(test_user, PAYLOAD, which="c"))
        # ~/.chos changed: Python, then warm again
        (home / ".chos").write_text("deb12\n")
        assert went_to_python(filt.run(test_user, PAYLOAD, which="c"))
        assert filt.run(test_user, PAYLOAD).returncode == 0
        assert warm(filt.run(test_user, PAYLOAD, which="c"))
        # a named request is kept apart; the policy edited (same text, rewritten): every answer goes
        assert filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb13"]).returncode == 0
        assert warm(filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb13"], which="c"))
        policy.write_text(original)
        assert went_to_python(filt.run(test_user, PAYLOAD, which="c"))
        assert went_to_python(filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb13"], which="c"))
        # deb13 disabled: refused at once by Python, and that refusal is what C gives next
        policy.write_text(original.replace("[environments.deb13]\n", "[environments.deb13]\nenabled = false\n"))
        no = filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb13"])
        assert no.returncode == 1 and b"disabled by the site" in no.stderr and not no.stdout, no
        again = filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb13"], which="c")
        assert (again.returncode, again.stdout, again.stderr) == (1, b"", no.stderr)
        # enabled again: Python, and accepted
        policy.write_text(original)
        assert went_to_python(filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb13"], which="c"))
        assert filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb13"]).returncode == 0
    finally:
        policy.write_text(original)


@pytest.fixture
def group():
    name = f"estq{os.getpid() % 100000}"
    subprocess.run(["groupadd", name], check=True)
    subprocess.run(["usermod", "-aG", name, TEST_USER], check=True)
    yield name
    subprocess.run(["groupdel", name], check=True)


def test_torque_a_group_removed_is_honoured_next(torque, mom, filt, test_user, home, site_dir, group):
    _m, policy, _site = torque
    original = policy.read_text()
    policy.write_text(original + f'\n[environments.grouped]\npath = "{site_dir.envs["deb13"]}"\n'
                                 f'allow_groups = ["{group}"]\n')
    try:
        assert filt.run(test_user, PAYLOAD, ["-v", "CHOS=grouped"]).returncode == 0
        assert warm(filt.run(test_user, PAYLOAD, ["-v", "CHOS=grouped"], which="c"))
        subprocess.run(["gpasswd", "-d", TEST_USER, group], check=True, stdout=subprocess.DEVNULL)
        assert went_to_python(filt.run(test_user, PAYLOAD, ["-v", "CHOS=grouped"], which="c"))
        no = filt.run(test_user, PAYLOAD, ["-v", "CHOS=grouped"])
        assert no.returncode == 1 and b"'grouped'" in no.stderr, no
    finally:
        policy.write_text(original)


def test_torque_pin_at_submit_from_the_cache(torque, mom, filt, test_user, home, pin_trees):
    """The warm answer carries the version current when Python answered; a new stamp of it (no
    policy edit) goes to Python on the next submission, which pins the new version."""
    v = Versions(torque[1], pin_trees)
    script = "#!/bin/sh\n" + SHOW + "\n"
    try:
        d1 = v.switch("v1")
        first = filt.run(test_user, script, ["-v", f"CHOS={ENV}"])
        assert f"#ENVSCHED pin={ENV}@{d1}\n".encode() in first.stdout, first
        again = filt.run(test_user, script, ["-v", f"CHOS={ENV}"], which="c")
        assert (again.returncode, again.stdout) == (0, first.stdout), again
        # the job submitted warm runs v1 even after v2 is stamped
        filter_path, mom.submit_filter = mom.submit_filter, str(filt.no_python)
        try:
            job = mom.qsub(test_user, script, ["-v", f"CHOS={ENV}"])
        finally:
            mom.submit_filter = filter_path
        p = subprocess.run([installed.envsched(), "--policy", str(v.policy), "env", "stamp", ENV, "--version", "v1b"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.returncode == 0, p.stderr
        assert went_to_python(filt.run(test_user, script, ["-v", f"CHOS={ENV}"], which="c"))   # the stamps changed
        d2 = v.switch("v2")
        assert f"#ENVSCHED pin={ENV}@{d2}\n".encode() in filt.run(test_user, script, ["-v", f"CHOS={ENV}"]).stdout
        assert f"#ENVSCHED pin={ENV}@{d2}\n".encode() in filt.run(test_user, script, ["-v", f"CHOS={ENV}"],
                                                                 which="c").stdout
        r = mom.run(job)
        assert (r.state, r.exit_status) == ("completed", 0), r
        assert (seen(r.stdout)["mark"], seen(r.stdout)["digest"]) == ("v1", d1), r
    finally:
        v.restore()


def test_torque_forged_entry_never_reaches_a_decision(torque, mom, filt, test_user, home):
    """The cache is the user's own: an entry edited to accept a refused request only stamps what the
    user could write themselves; the prologue refuses the job. An entry moved to another request's
    name is a miss (its inputs line)."""
    _m, policy, site = torque
    original = policy.read_text()
    policy.write_text(original.replace("[environments.deb13]\n", "[environments.deb13]\nenabled = false\n"))
    try:
        assert filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb13"]).returncode == 1
        (entry,) = entries(home)
        text = entry.read_text()
        forged = "\n".join(ln for ln in text.splitlines() if not ln.startswith("err\t")).replace("exit\t77", "exit\t0")
        entry.write_text(forged + "\n")
        filter_path, mom.submit_filter = mom.submit_filter, str(filt.no_python)
        try:
            job = mom.qsub(test_user, PAYLOAD, ["-v", "CHOS=deb13"])        # "accepted" by the forged entry
        finally:
            mom.submit_filter = filter_path
        assert "#ENVSCHED chos=deb13\n" in job.script
        r = mom.run(job)
        assert r.state == "aborted" and "os=" not in r.stdout and "disabled by the site" in r.stderr, r
        # the entry under another request's name: a miss
        assert filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb12"]).returncode == 0
        deb12 = [p for p in entries(home) if "\tchos=deb12\t" in p.read_text().splitlines()[1]][0]
        shutil.copy(entry, deb12)
        assert went_to_python(filt.run(test_user, PAYLOAD, ["-v", "CHOS=deb12"], which="c"))
    finally:
        policy.write_text(original)


# ------------------------------------------------------------------------------ OpenPBS
def queuejob(conf: Path, j: dict, requestor: str = TEST_USER) -> tuple:
    """The queuejob hook on the stand-in (test_torque_pin_submit's driver: the job's request after
    the hook too), with Python's import trace: (result, whether anything of envsched was imported)."""
    spec = {"hook": str(HOOKS / "envsched_queuejob.py"), "config": str(conf), "job": j, "requestor": requestor}
    p = subprocess.run([installed.hook_python(), "-I", "-X", "importtime", "-c", QUEUEJOB_DRIVER, str(DRIVER)],
                       input=json.dumps(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                       cwd="/", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    assert p.returncode == 0, p.stderr
    modules = [line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")]
    return json.loads(p.stdout), bool(of_envsched(modules))


@pytest.fixture
def submit_dir(site_dir):
    d = site_dir.run_dir / ".submit"
    shutil.rmtree(d, ignore_errors=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_openpbs_warm_submission_without_envsched(site_dir, pbs_site, test_user, submit_dir):
    """The first submission imports envsched and keeps its answer in root's run_dir/.submit; the
    next ones (accepted, refused) import nothing of envsched and give the same answer."""
    conf = config(pbs_site, restricted(site_dir))
    for j, rejected in ((job("", chos="deb12"), False), (job("", variables={"CHOS": "deb13"}), False),
                        (job("", chos="deb13r"), True)):
        first, imported = queuejob(conf, j)
        assert imported and first["rejected"] == rejected, first
        second, imported = queuejob(conf, j)
        assert not imported, "warm: envsched imported"
        assert (second["rejected"], second["reject_msg"]) == (first["rejected"], first["reject_msg"])
    assert "allowed for you: deb12, deb13" in second["reject_msg"]
    st = submit_dir.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o700)
    assert all(p.stat().st_uid == 0 and p.stat().st_mode & 0o777 == 0o600 for p in submit_dir.iterdir())
    # a name the policy does not know is never kept (the cache stays bounded)
    for _ in range(2):
        r, imported = queuejob(conf, job("", chos="no-such-env"))
        assert r["rejected"] and imported


def test_openpbs_every_input_change_is_honoured_next(site_dir, pbs_site, test_user, submit_dir, group):
    policy = site_dir.policy(name="openpbs-submit.toml", body=f'[environments.grouped]\npath = '
                                                               f'"{site_dir.envs["deb13"]}"\n'
                                                               f'allow_groups = ["{group}"]\n')
    conf = config(pbs_site, policy)
    original = policy.read_text()
    try:
        for request in ("grouped", "deb13"):
            assert not queuejob(conf, job("", chos=request))[0]["rejected"]
            assert not queuejob(conf, job("", chos=request))[1]
        # a group removed: grouped goes to Python and is refused; deb13 stays warm
        subprocess.run(["gpasswd", "-d", TEST_USER, group], check=True, stdout=subprocess.DEVNULL)
        r, imported = queuejob(conf, job("", chos="grouped"))
        assert imported and r["rejected"] and "'grouped'" in r["reject_msg"], r
        # an environment disabled (a policy edit): next submission in Python, refused
        policy.write_text(original.replace("[environments.deb13]\n", "[environments.deb13]\nenabled = false\n"))
        r, imported = queuejob(conf, job("", chos="deb13"))
        assert imported and r["rejected"] and "disabled by the site" in r["reject_msg"], r
        r, imported = queuejob(conf, job("", chos="deb13"))
        assert not imported and r["rejected"] and "disabled by the site" in r["reject_msg"], r
        policy.write_text(original)
        r, imported = queuejob(conf, job("", chos="deb13"))
        assert imported and not r["rejected"], r
        # another requestor never gets this user's answer
        r, imported = queuejob(conf, job("", chos="deb13"), requestor="nobody")
        assert imported, r
    finally:
        policy.write_text(original)


def test_openpbs_pin_at_submit_from_the_cache(site_dir, pbs_site, test_user, submit_dir, pin_trees):
    policy = site_dir.policy(name="pin-openpbs-submit.toml")
    v = Versions(policy, pin_trees)
    conf = config(pbs_site, policy)
    try:
        d1 = v.switch("v1")
        for how in ("resource", "variable"):
            j = job("", chos=ENV if how == "resource" else None, variables={"CHOS": ENV} if how == "variable" else None)
            want = {"chos": f"{ENV}@{d1}"} if how == "resource" else {"CHOS": f"{ENV}@{d1}"}
            key = "Resource_List" if how == "resource" else "Variable_List"
            for warm_run in (False, True):
                r, imported = queuejob(conf, j)
                assert imported != warm_run and not r["rejected"] and r["job"][key] == want, r
        # a new stamp, the policy untouched: Python again, the new version
        p = subprocess.run([installed.envsched(), "--policy", str(policy), "env", "stamp", ENV, "--version", "v1b"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.returncode == 0, p.stderr
        r, imported = queuejob(conf, job("", chos=ENV))
        assert imported and r["job"]["Resource_List"]["chos"].startswith(f"{ENV}@sha256:"), r
        d2 = v.switch("v2")
        for warm_run in (False, True):
            r, imported = queuejob(conf, job("", chos=ENV))
            assert imported != warm_run and r["job"]["Resource_List"] == {"chos": f"{ENV}@{d2}"}, r
    finally:
        v.restore()


def test_openpbs_forged_cache_is_not_used(site_dir, pbs_site, test_user, submit_dir):
    """Only root's own entries in root's own directory are answers: an entry that is not root's, or
    a directory others may write, is a miss (envsched decides); the user's home is never read."""
    conf = config(pbs_site, restricted(site_dir))
    j = job("", chos="deb13r")
    assert queuejob(conf, j)[0]["rejected"]
    (entry,) = list(submit_dir.iterdir())
    forged = entry.read_text().replace("exit\t77", "exit\t0")
    forged = "\n".join(ln for ln in forged.splitlines() if not ln.startswith("err\t")) + "\n"
    entry.write_text(forged)
    os.chown(entry, pwd_uid(TEST_USER), 0)
    r, imported = queuejob(conf, j)
    assert imported and r["rejected"], r                            # not root's: a miss
    (entry,) = list(submit_dir.iterdir())
    assert entry.stat().st_uid == 0                                 # written again by the hook
    submit_dir.chmod(0o777)
    try:
        r, imported = queuejob(conf, j)
        assert imported and r["rejected"], r
    finally:
        submit_dir.chmod(0o700)
    # pbs-prepare not root's: not run (Python decides)
    prepare = pbs_site / "pbs-prepare"
    os.chown(prepare, pwd_uid(TEST_USER), 0)
    try:
        r, imported = queuejob(conf, j)
        assert imported and r["rejected"], r
    finally:
        os.chown(prepare, 0, 0)
        prepare.chmod(0o755)
    assert not queuejob(conf, j)[1]


def pwd_uid(name: str) -> int:
    import pwd
    return pwd.getpwnam(name).pw_uid


def test_openpbs_hook_file_imports_nothing_of_envsched_at_top():
    text = (HOOKS / "envsched_queuejob.py").read_text()
    top = [ln for ln in text.splitlines() if ln.startswith(("import ", "from "))]
    assert not [ln for ln in top if "envsched" in ln], top
