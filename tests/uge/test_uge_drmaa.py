"""`chos submit` (envsched.submit, DRMAA) against the throwaway Grid Engine site, as an ordinary user.

DRMAA submits with `-w e`: qmaster verifies the job before the server JSV runs, and no queue offers
`chos`, so the request must leave the resource list in a client JSV first. The site fixture
(`uge_jsv` = `uge_site`, configured from `envsched site-config render --scheduler uge`) has what a
site needs: `-jsv <launcher>` in $SGE_ROOT/$SGE_CELL/common/sge_request (client side, run by qsub and
libdrmaa alike as the submitting user) and the same launcher, with --accept-request-var, as jsv_url
(the server keeps and re-validates the ENVSCHED_REQUEST the client JSV recorded). Jobs in all.q run
in their environment (prolog, epilog, set-user-ID starter): the scripts live in the user's home,
which every view shares.

`chos submit` runs without LD_PRELOAD: it re-executes itself with libjemalloc preloaded.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List

import pytest

pytestmark = pytest.mark.uge

REPO = Path(__file__).resolve().parents[2]
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
SHOW = ('#!/bin/sh\n. /etc/os-release\necho "req=${ENVSCHED_REQUEST-unset} chos=${CHOS-unset} os=$VERSION_ID '
        'user=$(id -un) args=[$1][$2]"\nexit 3\n')


@dataclass
class DrmaaSite:
    cluster: Any                 # conftest.UgeCluster
    log: Path                    # the JSV protocol log
    made: List[Path] = field(default_factory=list)


def checked_site(uge_jsv) -> Iterator[DrmaaSite]:
    """The site as configured by the session fixture: only checked here, never changed; the scripts
    made are removed afterwards. Each module's `drmaa_site` fixture yields from this."""
    c = uge_jsv.cluster
    sge_request = c.common / "sge_request"
    assert sge_request.exists() and f"-jsv {uge_jsv.wrapper}" in sge_request.read_text(), \
        "the cell's sge_request needs the client-side JSV (DRMAA verifies with -w e)"
    jsv_url = c.qconf("-sconf", "global").stdout
    assert re.search(rf"^jsv_url\s+{re.escape(str(uge_jsv.wrapper))}$", jsv_url, re.M), jsv_url
    assert "--accept-request-var" in uge_jsv.wrapper.read_text()
    site = DrmaaSite(c, uge_jsv.log)
    yield site
    for p in site.made:
        p.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def drmaa_site(uge_jsv) -> Iterator[DrmaaSite]:
    yield from checked_site(uge_jsv)


def script(site: DrmaaSite, text: str, user, mode: int = 0o755) -> Path:
    """A job script in the user's home (visible in every view), owned by the user."""
    p = Path(user.pw_dir) / f"drmaa-{uuid.uuid4().hex[:10]}.sh"
    p.write_text(text)
    os.chown(p, user.pw_uid, user.pw_gid)
    p.chmod(mode)
    site.made.append(p)
    return p


def out_file(site: DrmaaSite) -> Path:
    return site.cluster.dir / "out" / f"drmaa-{uuid.uuid4().hex[:10]}.out"


def chos_submit(site: DrmaaSite, *args: str, user, timeout: float = 120) -> subprocess.CompletedProcess:
    """`chos submit ARGS` as the user (setpriv), in their home, with the cluster's client environment."""
    return site.cluster.run([sys.executable, "-m", "envsched.cli.chos", "submit", *args], user=user.pw_name,
                            env={"PYTHONPATH": str(REPO / "src")}, timeout=timeout)


def python_as(site: DrmaaSite, code: str, user, preload: bool) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO / "src")}
    if preload:
        env["LD_PRELOAD"] = JEMALLOC
    return site.cluster.run([sys.executable, "-c", code], user=user.pw_name, env=env, timeout=120)


def test_exit_status_and_request_reach_the_user(drmaa_site, uge_user):
    c, user = drmaa_site.cluster, uge_user.pw_name
    log_start = drmaa_site.log.stat().st_size
    out = out_file(drmaa_site)
    p = chos_submit(drmaa_site, "--env", "deb13", "--output", str(out), str(script(drmaa_site, SHOW, uge_user)),
                    "one", "two", user=uge_user)
    job = p.stdout.strip()
    assert re.fullmatch(r"\d+", job), (p.returncode, p.stdout, p.stderr)
    assert p.stderr == f"envsched: job {job} finished: exit status 3\n"
    assert p.returncode == 3
    # the request reached the execution side and the job ran in deb13
    assert out.read_text() == f"req=deb13 chos=deb13 os=13 user={user} args=[one][two]\n"
    acct = c.wait(job)
    assert (acct.exit_status, acct["owner"], acct["qname"]) == (3, user, "all.q")
    exchange = drmaa_site.log.read_bytes()[log_start:].decode(errors="replace")
    assert ">>> PARAM CONTEXT client" in exchange and ">>> PARAM l_hard chos=deb13" in exchange


def test_disallowed_environment_refused_at_submit(drmaa_site, uge_user):
    c = drmaa_site.cluster
    out = out_file(drmaa_site)
    p = chos_submit(drmaa_site, "--env", "sl5", "--output", str(out), str(script(drmaa_site, SHOW, uge_user)),
                    user=uge_user)
    assert p.returncode == 77, (p.stdout, p.stderr)
    # the JSV's one line, as qsub would print it after "Unable to run job: "
    assert re.fullmatch(r"envsched: environment 'sl5' \(option\) refused: restricted to other users or groups; "
                        r"allowed for you: deb12, deb13[^\n]*\n", p.stderr), p.stderr
    assert p.stdout == ""                               # no job id: the job never existed
    assert c.run(["qstat", "-u", uge_user.pw_name]).stdout == "" and not out.exists()


def test_unknown_environment_refused(drmaa_site, uge_user):
    p = chos_submit(drmaa_site, "--env", "nosuch", str(script(drmaa_site, SHOW, uge_user)), user=uge_user)
    assert p.returncode == 77 and p.stderr.startswith("envsched: environment 'nosuch' (option) refused: "), \
        p.stderr
    assert p.stdout == "" and p.stderr.count("\n") == 1


def test_no_wait_returns_the_job_id(drmaa_site, uge_user):
    c = drmaa_site.cluster
    out = out_file(drmaa_site)
    p = chos_submit(drmaa_site, "--env", "deb12", "--no-wait", "--name", "nowait", "--queue", "all.q",
                    "--output", str(out), str(script(drmaa_site, SHOW, uge_user)), user=uge_user)
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    acct = c.wait(p.stdout.strip())
    assert (acct.exit_status, acct["jobname"], acct["qname"]) == (3, "nowait", "all.q")
    assert out.read_text().startswith("req=deb12 chos=deb12 os=12 ")


def test_killed_by_signal(drmaa_site, uge_user):
    p = chos_submit(drmaa_site, "--env", "deb13", "--output", "/dev/null",
                    str(script(drmaa_site, "#!/bin/sh\nkill -KILL $$\n", uge_user)), user=uge_user)
    assert p.returncode == 137, p.stderr
    assert p.stderr == f"envsched: job {p.stdout.strip()} finished: killed by signal 9 (SIGKILL), exit status 137\n"
    drmaa_site.cluster.wait(p.stdout.strip())           # gone from qstat: the epilog has released the view


def test_deleted_before_it_ran_is_aborted(drmaa_site, uge_user):
    """qdel while the job is held (`-h` in the user's ~/.sge_request, which libdrmaa reads too): DRMAA
    reports it aborted, chos exits 75."""
    c = drmaa_site.cluster
    user_request = Path(uge_user.pw_dir) / ".sge_request"
    user_request.write_text("-h\n")
    drmaa_site.made.append(user_request)
    cmd = [sys.executable, "-m", "envsched.cli.chos", "submit", "--env", "deb13", "--output", "/dev/null",
           str(script(drmaa_site, SHOW, uge_user))]
    env = {**c.env, "HOME": uge_user.pw_dir, "USER": uge_user.pw_name, "LOGNAME": uge_user.pw_name,
           "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(["setpriv", f"--reuid={uge_user.pw_uid}", f"--regid={uge_user.pw_gid}",
                             "--init-groups", "--"] + cmd, cwd=uge_user.pw_dir, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        job = proc.stdout.readline().strip()
        user_request.unlink()
        if not re.fullmatch(r"\d+", job):
            _, err = proc.communicate(timeout=60)
            raise AssertionError(f"no job id ({proc.returncode}): {job!r} {err!r}")
        assert c.job_state(job) == "hqw"
        assert c.run(["qdel", job]).returncode == 0
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 75, err
    assert err == (f"envsched: job {job} aborted: it never ran (deleted, or it could not be started); "
                   f"if it was started, qacct -j {job} shows why\n")


def test_not_executable_refused_before_submitting(drmaa_site, uge_user):
    path = script(drmaa_site, SHOW, uge_user, mode=0o644)
    p = chos_submit(drmaa_site, "--env", "deb13", str(path), user=uge_user)
    assert (p.returncode, p.stdout) == (64, "")
    assert p.stderr == (f"envsched: submit: script '{path}' is not executable (the scheduler runs it directly: "
                        f"chmod +x it)\n")


def test_python_api(drmaa_site, uge_user):
    out = out_file(drmaa_site)
    code = (f"from envsched.submit import submit\n"
            f"r = submit({str(script(drmaa_site, SHOW, uge_user))!r}, ['x'], 'deb13', output={str(out)!r}, "
            f"timeout=60)\nprint(r.exit_status, r.exit_code, r.exited, r.aborted, r.signal)\n")
    # a second job from the same process (libdrmaa repeats the client JSV) runs in its own environment
    out2 = out_file(drmaa_site)
    code += (f"r = submit({str(script(drmaa_site, SHOW, uge_user))!r}, [], 'deb12', output={str(out2)!r}, "
             f"timeout=60)\nprint(r.exit_status, r.exit_code, r.exited, r.aborted, r.signal)\n")
    p = python_as(drmaa_site, code, uge_user, preload=True)
    assert (p.returncode, p.stdout) == (0, "3 3 True False None\n" * 2), p.stderr
    assert out.read_text().startswith("req=deb13 chos=deb13 os=13 ")
    assert out2.read_text().startswith("req=deb12 chos=deb12 os=12 ")
    p = python_as(drmaa_site, "from envsched.submit import submit, SubmitError\ntry:\n"
                  "    submit('/bin/true', [], 'deb13')\nexcept SubmitError as e:\n    print(e.code, e)\n",
                  uge_user, preload=False)
    assert p.stdout.startswith("76 submit: loading the DRMAA library "), (p.stdout, p.stderr)
    assert f"set LD_PRELOAD={JEMALLOC} in the environment before Python starts" in p.stdout
