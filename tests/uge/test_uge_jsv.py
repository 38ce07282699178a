"""envsched's JSV (plugins/uge/envsched_jsv.py) in a real Grid Engine, client side (the cell's sge_request)
and server side (jsv_url), as `envsched site-config render` configures them: `-l chos=NAME` is checked at
submission (refusals are qsub errors), recorded in ENVSCHED_REQUEST and removed from the resource list
(no queue offers `chos`: the job would pend forever otherwise). A user's own `-v ENVSCHED_REQUEST=x` is
checked exactly like `-l chos=x` (no JSV can tell it from what an earlier JSV run recorded), so it gains
nothing.
The jobs run in their environment (the plan sets CHOS)."""
from __future__ import annotations

import re
import statistics

import pytest

pytestmark = pytest.mark.uge

SHOW = "#!/bin/sh\necho \"req=${ENVSCHED_REQUEST-unset} chos=${CHOS-unset}\"\n"


def submit(site, *args, user=None):
    return site.cluster.run(["qsub", "-terse", "-o", str(site.cluster.dir / "out"), "-j", "y", *args],
                            user=user)


def test_accepted_request_runs_and_is_recorded(uge_jsv, uge_user):
    c = uge_jsv.cluster
    job = c.qsub(SHOW, "-l", "chos=deb13", user=uge_user.pw_name)
    info = c.run(["qstat", "-j", job]).stdout
    assert "chos" not in info, info                    # removed from the hard resource list
    acct = c.wait(job, timeout=60)                     # it runs: nothing asks for the unoffered complex
    assert (acct.exit_status, acct.failed) == (0, 0), acct.fields
    assert c.output(job) == "req=deb13 chos=deb13\n"


def test_request_kept_with_other_resources(uge_jsv, uge_user):
    c = uge_jsv.cluster
    job = c.qsub(SHOW, "-l", "h_rt=600,chos=deb13", "-v", "ENVSCHED_REQUEST=sl5", user=uge_user.pw_name)
    info = c.run(["qstat", "-j", job]).stdout
    assert re.search(r"hard resource_list:\s+h_rt=600\s*$", info, re.M), info
    c.wait(job)
    assert c.output(job) == "req=deb13 chos=deb13\n"    # the user's -v value is overwritten


def test_refused_option_fails_qsub(uge_jsv, uge_user):
    p = submit(uge_jsv, "-l", "chos=sl5", "-b", "y", "/bin/true", user=uge_user.pw_name)
    assert p.returncode != 0
    assert re.search(r"^Unable to run job: envsched: environment 'sl5' \(option\) refused: .*; "
                     r"allowed for you: deb12, deb13", p.stderr, re.M), p.stderr
    assert "Your job" not in p.stdout


def test_unknown_environment_fails_qsub(uge_jsv, uge_user):
    p = submit(uge_jsv, "-l", "chos=nosuch", "-b", "y", "/bin/true", user=uge_user.pw_name)
    assert p.returncode != 0 and "Unable to run job: envsched: environment 'nosuch'" in p.stderr, p.stderr


def test_root_may_use_sl5(uge_jsv):
    c = uge_jsv.cluster
    job = c.qsub(SHOW, "-h", "-l", "chos=sl5")
    info = c.run(["qstat", "-j", job]).stdout
    c.run(["qdel", job])
    # recorded in the job (qstat env_list). NOTE measured: a root job's shell does NOT see the JSV-added
    # variable although $SGE_JOB_SPOOL_DIR/environment holds it (user jobs see it; root's -v FOO=1 too)
    assert re.search(r"^env_list:.*ENVSCHED_REQUEST=sl5", info, re.M), info
    assert "chos=" not in info, info


def test_forged_request_variable_is_no_bypass(uge_jsv, uge_user):
    """-v ENVSCHED_REQUEST=sl5 is no way around the policy: both JSVs check it like -l chos=sl5
    (they keep the variable as the request: libdrmaa repeats the client JSV at every runJob, and
    the repeat must not lose what the first run recorded), with the client JSV dropped too (-clear)."""
    for extra in ([], ["-clear"]):
        p = submit(uge_jsv, *extra, "-v", "ENVSCHED_REQUEST=sl5", "-b", "y", "/bin/true", user=uge_user.pw_name)
        assert p.returncode != 0
        assert re.search(r"^Unable to run job: envsched: environment 'sl5' \(option\) refused: ", p.stderr,
                         re.M), (extra, p.stderr)
    c = uge_jsv.cluster
    job = c.qsub(SHOW, "-v", "ENVSCHED_REQUEST=deb13", user=uge_user.pw_name)     # allowed: as -l chos=deb13
    c.wait(job)
    assert c.output(job) == "req=deb13 chos=deb13\n"


def test_chos_variable_is_checked(uge_jsv, uge_user):
    c = uge_jsv.cluster
    p = submit(uge_jsv, "-v", "CHOS=sl5", "-b", "y", "/bin/true", user=uge_user.pw_name)
    assert p.returncode != 0
    assert re.search(r"^Unable to run job: envsched: environment 'sl5' \(CHOS variable\) refused: ",
                     p.stderr, re.M), p.stderr
    job = c.qsub(SHOW, "-v", "CHOS=deb13", user=uge_user.pw_name)   # allowed: left for the execution side
    c.wait(job)
    assert c.output(job) == "req=unset chos=deb13\n"     # chosen by the CHOS variable


def test_soft_request_is_refused(uge_jsv, uge_user):
    p = submit(uge_jsv, "-soft", "-l", "chos=deb13", "-b", "y", "/bin/true", user=uge_user.pw_name)
    assert p.returncode != 0 and "Unable to run job: envsched: request the environment as a hard" in p.stderr, \
        p.stderr


def test_client_side_jsv_with_w_e(uge_jsv, uge_user):
    """`-w e` verifies before the server JSV: only a client JSV can remove the request in time."""
    p = submit(uge_jsv, "-w", "e", "-l", "chos=deb13", "-b", "y", "/bin/true", user=uge_user.pw_name)
    print("server JSV only, -w e:", p.returncode, p.stderr.strip())
    p = submit(uge_jsv, "-jsv", str(uge_jsv.wrapper), "-w", "e", "-l", "chos=sl5", "-b", "y", "/bin/true",
               user=uge_user.pw_name)
    assert p.returncode != 0 and "envsched: environment 'sl5' (option) refused" in p.stderr, p.stderr
    print("client JSV refusal:", p.stderr.strip())


def test_without_client_jsv_w_e_asks_with_the_chos_variable(uge_jsv, uge_user):
    """`render --no-client-jsv` (docs/admin.md): no client JSV (-clear drops the cell's sge_request),
    so `-w e` submissions name their environment with -v CHOS=NAME: accepted and run in it, and a
    refusal comes from the server JSV at submission with the same line."""
    c = uge_jsv.cluster
    out = c.dir / "out" / f"noclient-{uge_user.pw_uid}.out"
    p = c.run(["qsub", "-terse", "-clear", "-w", "e", "-v", "CHOS=deb13", "-o", str(out), "-j", "y", "-b", "y",
               "/bin/sh", "-c", "'. /etc/os-release; echo os=$VERSION_ID chos=$CHOS'"], user=uge_user.pw_name)
    assert p.returncode == 0, p.stderr
    acct = c.wait(p.stdout.strip().splitlines()[-1].split(".")[0])
    assert acct.exit_status == 0 and out.read_text().strip().endswith("os=13 chos=deb13"), (acct.fields, out.read_text())
    out.unlink()
    p = c.run(["qsub", "-terse", "-clear", "-w", "e", "-v", "CHOS=sl5", "-b", "y", "/bin/true"], user=uge_user.pw_name)
    assert p.returncode != 0 and re.search(r"^Unable to run job: envsched: environment 'sl5' \(CHOS variable\) "
                                           r"refused: ", p.stderr, re.M), p.stderr


def test_submission_cost(uge_jsv, uge_user):
    from ugesite import _time_qsubs
    c = uge_jsv.cluster
    # the cell's sge_request adds the client JSV to every qsub: -clear leaves the server JSV alone
    with_jsv = _time_qsubs(c, 10, "-l", "chos=deb13", user=uge_user.pw_name, server_only=True)
    plain = _time_qsubs(c, 10, user=uge_user.pw_name, server_only=True)
    client = _time_qsubs(c, 10, "-l", "chos=deb13", user=uge_user.pw_name)
    med = statistics.median
    print(f"qsub median: no JSV {1000 * med(uge_jsv.baseline_qsub):.1f} ms; server JSV, no chos "
          f"{1000 * med(plain):.1f} ms; server JSV, -l chos {1000 * med(with_jsv):.1f} ms; "
          f"client+server JSV {1000 * med(client):.1f} ms")
    took = [float(m) for m in re.findall(r"verify took ([0-9.]+) ms", uge_jsv.log.read_text())]
    pids = set(re.findall(r"^(\d+) verify took", uge_jsv.log.read_text(), re.M))
    print(f"JSV verify: median {med(took):.2f} ms over {len(took)} jobs, {len(pids)} JSV processes")
    assert med(with_jsv) < med(uge_jsv.baseline_qsub) + 0.2






@pytest.mark.parametrize("client", [["qrsh"], ["qlogin"]])
def test_interactive_login_refused_unless_host(uge_jsv, uge_user, client):
    """qlogin and qrsh without a command skip starter_method in Grid Engine: refused with the
    workaround instead of silently running on the host OS."""
    c = uge_jsv.cluster
    p = c.run([*client, "-l", "chos=deb13"], user=uge_user.pw_name, timeout=30, stdin="")
    assert p.returncode != 0, (p.stdout, p.stderr)
    assert re.search(r"envsched: .* cannot start in environment 'deb13': Grid Engine runs interactive logins "
                     r"without the job starter; use `qrsh -pty y -l chos=deb13 /bin/sh -l`", p.stderr), p.stderr
    # nothing requested: the site default deb12 applies, and a login cannot enter it either
    p = c.run([*client], user=uge_user.pw_name, timeout=30, stdin="")
    assert p.returncode != 0 and "environment 'deb12'" in p.stderr, p.stderr


def test_pty_workaround_enters(uge_jsv, uge_user):
    """The documented way to an interactive shell in an environment: qrsh with a command and a
    pseudo-terminal. On our side script(1) gives qrsh a terminal, as a user at one has; its input
    stays open until qrsh is done (a closed input ends the session before any output)."""
    import subprocess
    c = uge_jsv.cluster
    qrsh = "qrsh -pty y -l chos=deb13 /bin/sh -c \"'. /etc/os-release; echo os=\\$VERSION_ID'\""
    env = dict(c.env, HOME=uge_user.pw_dir, USER=uge_user.pw_name, LOGNAME=uge_user.pw_name)
    p = subprocess.Popen(["setpriv", f"--reuid={uge_user.pw_uid}", f"--regid={uge_user.pw_gid}", "--init-groups",
                          "--", "script", "-qec", qrsh, "/dev/null"], env=env, cwd=uge_user.pw_dir,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = p.stdout.read()
        p.wait(timeout=60)
    finally:
        p.stdin.close()
        if p.poll() is None:
            p.kill()
    assert "os=13" in out, (out, p.stderr.read())
    from test_uge_chos import gc_until_released
    gc_until_released(uge_jsv)
