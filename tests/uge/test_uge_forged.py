"""The job's user forges what the Grid Engine components read as root or set-user-ID, and gets
nothing from it.

What each component reads, and where it must come from (docs/admin.md, "Grid Engine: what the
parts trust"):

  JSV (qmaster, sgeadmin)   USER, CONTEXT, CLIENT from qmaster; -l chos, ENVSCHED_REQUEST, CHOS
                            (the request: the user's, checked); a value with a line break is refused
  prolog (root@)            the job from its parent, a root sge_shepherd held by a pidfd, whose cwd is
                            the job's spool directory; owner, queue, job id from execd's `config`;
                            the request from execd's `environment`
  starter (set-user-ID)     the job from its parent (same); the queue and script/binary from `config`,
                            read as root; the request from its environment (checked for the real uid)
  epilog (root@)            the job from its parent (same)

The queue is the policy's partition: a policy that allows an environment only in legacy.q is the
test that a job in all.q cannot claim legacy.q. Grid Engine writes the job's own values (arguments,
-M, -o, ...) unescaped into `config`, and its shepherd obeys the last line of a key: a value with
a line break is refused by the JSV at submission and, without the JSV, by the prolog and the
starter. Runs a real cluster (uge_site), a stand-in shepherd (helpers/fake_shepherd.c: root-made,
so that any spool contents can be fed to the real starter and prolog) and a pid-namespace test of
the pidfd handle (helpers/proc_reuse.c)."""
from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from test_uge_chos import PROBE, gc_until_released, seen
from ugesite import envsched_cmd, render_section

pytestmark = pytest.mark.uge

HELPERS = Path(__file__).resolve().parent / "helpers"
COMMON = Path(__file__).resolve().parents[2] / "plugins" / "common"
LINE_BREAK = "Unable to run job: envsched: a value of the job's (an argument, -N, -M, -o, -wd, ...) holds a line break"


@contextlib.contextmanager
def queue_only_environment(site):
    """`qonly` (the deb13 tree), allowed only in the interactive queue legacy.q."""
    original = site.policy.read_text()
    site.policy.write_text(original + f'\n[environments.qonly]\npath = "{site.trees["deb13"]}"\n'
                                      'allow_partitions = ["legacy.q"]\n')
    try:
        yield
    finally:
        site.policy.write_text(original)


def pins_but_views(site):
    """The pins under run_dir without the shared views they bind (run_dir/.views, #13)."""
    return [p for p in site.pins() if not p.startswith(".views/")]


def log_since(site, mark: int) -> str:
    return site.admin_log.read_text()[mark:]


def log_mark(site) -> int:
    return len(site.admin_log.read_text()) if site.admin_log.exists() else 0


# ---------------------------------------------------------------- the queue
def test_forged_queue_variable_gets_no_other_queues_environment(uge_site, uge_user):
    """qonly runs in legacy.q; a job in all.q that sets QUEUE=legacy.q (with the request as -l chos
    or as the variable) is refused by the prolog and the starter, which take the queue from execd's
    config, and its payload never runs."""
    c = uge_site.cluster
    with queue_only_environment(uge_site):
        p = c.qrsh("-q", "legacy.q", "-l", "chos=qonly", ". /etc/os-release; echo os=$VERSION_ID chos=$CHOS",
                   user=uge_user.pw_name)
        assert "os=13 chos=qonly" in p.stdout, (p.stdout, p.stderr)
        gc_until_released(uge_site)
        for request in (["-l", "chos=qonly"], ["-v", "ENVSCHED_REQUEST=qonly"]):
            mark = log_mark(uge_site)
            job = c.qsub(PROBE, "-q", "all.q", *request, "-v", "QUEUE=legacy.q", user=uge_user.pw_name)
            acct = c.wait(job)
            out = c.output(job)
            assert acct.exit_status == 77 and acct["qname"] == "all.q", (acct.fields, out)
            assert "os=" not in out, out                                   # the payload never ran
            assert re.search(r"^envsched: environment 'qonly' \(option\) refused: not allowed in partition "
                             r"'all.q'", out, re.M), out
            refused = [ln for ln in log_since(uge_site, mark).splitlines()
                       if f"event=refused job={job}.1 " in ln]
            assert len(refused) == 2, refused                              # the prolog, then the starter
            assert all("partition 'all.q'" in ln for ln in refused), refused


def test_forged_job_variables_do_not_name_the_job(uge_site, uge_user):
    """JOB_ID, SGE_TASK_ID, SGE_JOB_SPOOL_DIR and QUEUE given with -v: Grid Engine sets its own over
    them, and envsched reads none of them anyway. The prolog prepares the real job's pin (its
    inputs name the owner's uid and the queue from execd's config), the other job's key is never
    touched, and the job runs in deb13."""
    c = uge_site.cluster
    mark = log_mark(uge_site)
    other = c.qsub("#!/bin/sh\ntrue\n", "-h", user=uge_user.pw_name)       # a real job id of the user's
    flag = Path(uge_user.pw_dir) / f"go-{uuid.uuid4().hex[:8]}"     # seen in the view
    script = PROBE + f'echo "job=$JOB_ID task=$SGE_TASK_ID queue=$QUEUE"\nwhile [ ! -e {flag} ]; do sleep 0.1; done\n'
    try:
        job = c.qsub(script, "-l", "chos=deb13", "-v",
                     f"JOB_ID={other},SGE_TASK_ID=3,SGE_JOB_SPOOL_DIR={c.dir}/work,QUEUE=legacy.q",
                     user=uge_user.pw_name)
        key = f"uge-{job}.1"
        deadline = time.monotonic() + 30
        inputs_file = uge_site.run_dir / key / "inputs"            # written last (pin.py write_memo)
        while not inputs_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        inputs = inputs_file.read_text()
        assert inputs.startswith(f"uid={uge_user.pw_uid}\t") and "\tqueue=all.q\t" in inputs, inputs
        assert not [k for k in uge_site.pins() if k.startswith(f"uge-{other}.")]
        flag.touch()
        acct = c.wait(job)
    finally:
        flag.touch()
        c.run(["qdel", other])
    flag.unlink()
    out = c.output(job)
    assert acct.exit_status == 0, (acct.fields, out)
    assert seen(out)["os"] == "13", out
    assert f"job={job} task=undefined queue=all.q" in out, out
    assert "step=prolog" not in log_since(uge_site, mark)


# ---------------------------------------------------------------- line breaks in the job's values
@pytest.mark.parametrize("args", [
    ["/bin/echo", "a\nqueue=legacy.q"],                                   # after queue= in config
    ["/bin/echo", "a\njob_owner=root"],                                   # 8.1.9 ran this as root
    ["-M", "a@b\nqueue=legacy.q", "/bin/true"],                          # before queue= in config
    ["/bin/echo", "a\nBEGIN\nstarter_method=NONE"],                      # a forged BEGIN for the JSV
    ["/bin/echo", "a\nPARAM USER root"],                                 # a forged JSV parameter
], ids=["argument", "owner", "mail", "begin", "param"])
def test_forged_config_line_is_refused_at_submission(uge_jsv, uge_user, args):
    """Both JSVs (client and, with -clear, the server's alone) refuse a job value with a line
    break before Grid Engine writes it into the job's config."""
    for clear in ([], ["-clear"]):
        p = uge_jsv.cluster.run(["qsub", *clear, "-terse", "-o", "/dev/null", "-j", "y", "-b", "y", "-N", "lb",
                                 *args], user=uge_user.pw_name)
        assert p.returncode != 0 and LINE_BREAK in p.stderr, (clear, p.stdout, p.stderr)
        assert not p.stdout.strip(), p.stdout


@contextlib.contextmanager
def without_server_jsv(c):
    """jsv_url none for a while (what a site without envsched's JSV has): only root can do this."""
    current = c.qconf("-sconf", "global").stdout
    url = next(line.split(None, 1)[1] for line in current.splitlines() if line.startswith("jsv_url"))
    c.set_global_conf(jsv_url="none")
    try:
        yield
    finally:
        c.set_global_conf(jsv_url=url.strip())


@pytest.mark.parametrize("key,value", [("job_owner", "root"), ("queue", "legacy.q")])
def test_forged_config_line_without_jsv_is_refused_at_start(uge_site, uge_user, key, value):
    """Without the JSV the line reaches config; Grid Engine's shepherd obeys it (job_owner=root runs
    the starter as root), but the prolog prepares nothing and the starter refuses the job, so the
    payload never runs."""
    c = uge_site.cluster
    mark = log_mark(uge_site)
    with without_server_jsv(c):
        p = c.run(["qsub", "-clear", "-terse", "-o", str(c.dir / "out"), "-j", "y", "-b", "y", "-N", "lb",
                   "/bin/echo", f"PAYLOAD\n{key}={value}"], user=uge_user.pw_name)
        assert p.returncode == 0, p.stderr
        job = p.stdout.strip().split(".")[0]
        c._default_output.add(job)
        acct = c.wait(job)
    out = c.output(job)
    assert "PAYLOAD" not in out, out
    assert acct.exit_status == 73, (acct.fields, out)
    assert re.search(rf"^envsched: the job's configuration \S+/active_jobs/{job}\.1/config sets '{key}' twice: "
                     r"a value of the job's \(an argument, -M, -o, \.\.\.\) holds a line break", out, re.M), out
    log = log_since(uge_site, mark)
    assert re.search(rf"event=failed step=prolog job={job} reason=\"the job's configuration .* sets '{key}' "
                     r"twice", log), log


# ---------------------------------------------------------------- the starter by hand
def run_as(user, argv, env, cwd="/"):
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--",
                           *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
                          timeout=60)


def test_forged_environment_for_the_starter_by_hand(uge_site, uge_user):
    """The starter run by hand with the whole job environment of the user's running job (its id,
    spool directory, queue, request) is not started by Grid Engine: refused, nothing joined."""
    c = uge_site.cluster
    flag = Path(uge_user.pw_dir) / f"go-{uuid.uuid4().hex[:8]}"     # seen in the view
    job = c.qsub(f"#!/bin/sh\necho started\nwhile [ ! -e {flag} ]; do sleep 0.1; done\n", "-l", "chos=deb13",
                 user=uge_user.pw_name)
    try:
        deadline = time.monotonic() + 30
        while f"uge-{job}.1" not in uge_site.pins() and time.monotonic() < deadline:
            time.sleep(0.1)
        spool = next((c.dir / "spool" / "execd").glob(f"*/active_jobs/{job}.1"))
        env = {"PATH": "/usr/bin:/bin", "JOB_ID": job, "SGE_TASK_ID": "undefined", "QUEUE": "legacy.q",
               "SGE_JOB_SPOOL_DIR": str(spool), "ENVSCHED_REQUEST": "deb13", "CHOS": "deb13",
               "SGE_STARTER_SHELL_PATH": "/bin/sh"}
        p = run_as(uge_user, [str(uge_site.libexec / "uge-starter"), "/bin/sh", "-c", "echo PAYLOAD"], env)
        assert p.returncode == 73, p
        assert p.stderr.startswith("envsched: not started by Grid Engine (parent "), p.stderr
        assert "PAYLOAD" not in p.stdout
    finally:
        flag.touch()
    c.wait(job)
    flag.unlink()


def test_forged_parent_gone_for_the_starter(uge_site, uge_user):
    """A starter whose parent has exited (it now belongs to a reaper) is refused."""
    script = '"$0" /bin/sh -c "echo PAYLOAD" & exit 0'
    p = run_as(uge_user, ["/bin/sh", "-c", script, str(uge_site.libexec / "uge-starter")],
               {"PATH": "/usr/bin:/bin", "JOB_ID": "1"})
    assert "envsched: not started by Grid Engine (parent " in p.stderr, p.stderr
    assert "PAYLOAD" not in p.stdout


@pytest.fixture(scope="module")
def helpers(tmp_path_factory):
    """helpers/*.c built: sge_shepherd (the stand-in) and proc_reuse, in a root-owned 0755 directory."""
    d = Path(f"/var/lib/envsched-uge-helpers-{uuid.uuid4().hex[:8]}")
    d.mkdir(mode=0o755)
    try:
        for out, srcs in (("sge_shepherd", [HELPERS / "fake_shepherd.c"]),
                          ("proc_reuse", [HELPERS / "proc_reuse.c", COMMON / "es_proc.c"])):
            subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", f"-I{COMMON}", "-o",
                            str(d / out), *map(str, srcs)], check=True)
        yield d
    finally:
        shutil.rmtree(d)


# ---------------------------------------------------------------- the pidfd handle
def test_forged_parent_pid_reuse_is_detected(helpers):
    """In a pid namespace a parent is killed and its pid handed to a new process on purpose: a
    check by pid alone reads the newcomer, es_proc's handle (pidfd + /proc dirfd) does not."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    p = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", str(helpers / "proc_reuse")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "reused=1 alive=0 link=-1 status=-1 same_parent=0" in p.stdout, p.stdout


# ---------------------------------------------------------------- spool contents, fed by a stand-in shepherd
GOOD_CONFIG = ("add_grp_id=20001\nstdout_path=/dev/null\nhandle_as_binary=1\nno_shell=1\nshell_path=/bin/sh\n"
               "job_owner={owner}\ncwd=/\nmail_list={owner}@host\nqueue={queue}\nhost=host\njob_name=forged\n"
               "job_id={job}\nja_task_id=0\naccount=sge\nnjob_args=1\njob_arg1=x\nqueue_tmpdir=/tmp\n"
               "admin_user=sgeadmin\n")


class Spool:
    """A job directory .../active_jobs/<job>.1 of the Grid Engine admin user's, and the stand-in
    shepherd that runs the real starter or prolog in it."""

    def __init__(self, site, helpers: Path, user: pwd.struct_passwd):
        self.site, self.helpers, self.user = site, helpers, user
        self.admin = pwd.getpwnam("sgeadmin")
        self.job = str(900000 + int(uuid.uuid4().hex[:5], 16) % 99999)
        self.root = site.cluster.dir / f"fake-spool-{uuid.uuid4().hex[:6]}"
        self.dir = self.root / "active_jobs" / f"{self.job}.1"
        self.dir.mkdir(parents=True)
        for d in (self.root, self.root / "active_jobs", self.dir):
            os.chown(d, self.admin.pw_uid, self.admin.pw_gid)
            d.chmod(0o755)
        self.config = self.dir / "config"
        self.write(GOOD_CONFIG.format(owner=user.pw_name, queue="all.q", job=self.job))
        (self.dir / "environment").write_text(f"JOB_ID={self.job}\nQUEUE=all.q\n")
        os.chown(self.dir / "environment", self.admin.pw_uid, self.admin.pw_gid)

    def write(self, text, owner=None, mode=0o644):
        if self.config.is_symlink():
            self.config.unlink()
        self.config.write_bytes(text.encode() if isinstance(text, str) else text)
        pw = owner or self.admin
        os.chown(self.config, pw.pw_uid, pw.pw_gid)
        self.config.chmod(mode)

    def shepherd(self, run_as_root: bool, argv, env=None):
        uid, gid = (0, 0) if run_as_root else (self.user.pw_uid, self.user.pw_gid)
        e = {"PATH": "/usr/bin:/bin", "JOB_ID": self.job, "SGE_TASK_ID": "undefined", "QUEUE": "all.q",
             "SGE_JOB_SPOOL_DIR": str(self.dir)}
        e.update(env or {})
        return subprocess.run([str(self.helpers / "sge_shepherd"), str(self.dir), str(self.admin.pw_uid), str(uid),
                               str(gid), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=e, timeout=120)

    def starter(self, env=None):
        return self.shepherd(False, [str(self.site.libexec / "uge-starter"), "/bin/sh", "-c",
                                     ". /etc/os-release; echo PAYLOAD os=$VERSION_ID chos=$CHOS"], env)

    def prolog(self, env=None):
        line = next(ln for ln in render_section(self.site.rendered, "queue") if ln.startswith("prolog "))
        return self.shepherd(True, line.split(None, 1)[1].split("@", 1)[1].split(), env)

    def release(self):
        """Pins whose owner, the stand-in shepherd, is gone: collected."""
        subprocess.run([envsched_cmd(), "--policy", str(self.site.policy), "gc"], stdout=subprocess.DEVNULL)


@pytest.fixture
def spool(uge_site, helpers, uge_user):
    s = Spool(uge_site, helpers, uge_user)
    yield s
    s.release()
    shutil.rmtree(s.root)


def too_big(s):
    s.write(GOOD_CONFIG.format(owner=s.user.pw_name, queue="all.q", job=s.job) + "x" * (1 << 20) + "\n")


def chunked(s):
    """No line break at all: an argument of 99999 - len('job_arg1=') bytes, then queue=...: the
    shepherd's fgets(buf[100000]) reads the rest as a line of its own."""
    s.write(GOOD_CONFIG.format(owner=s.user.pw_name, queue="all.q", job=s.job).replace(
        "job_arg1=x\n", "job_arg1=" + "y" * (99999 - len("job_arg1=")) + "queue=legacy.q\n"))


def symlinked(s):
    real = s.dir / "config.real"
    real.write_text(GOOD_CONFIG.format(owner=s.user.pw_name, queue="all.q", job=s.job))
    s.config.unlink()
    s.config.symlink_to(real)


CASES = {
    "twice": (lambda s: s.write(GOOD_CONFIG.format(owner=s.user.pw_name, queue="all.q", job=s.job)
                                + "job_arg2=a\nqueue=legacy.q\n"),
              "sets 'queue' twice: a value of the job's"),
    "owner_twice": (lambda s: s.write(GOOD_CONFIG.format(owner=s.user.pw_name, queue="all.q", job=s.job)
                                      + "job_owner=root\n"),
                    "sets 'job_owner' twice"),
    "long_line": (chunked, "sets 'queue' twice"),
    "too_big": (too_big, "is larger than 1048576 bytes"),
    "symlink": (symlinked, "Too many levels of symbolic links"),
    "users_file": (lambda s: s.write(GOOD_CONFIG.format(owner=s.user.pw_name, queue="all.q", job=s.job),
                                     owner=s.user),
                   "is not a regular file of root's or Grid Engine's admin user's, or writable by others"),
    "writable": (lambda s: s.write(GOOD_CONFIG.format(owner=s.user.pw_name, queue="all.q", job=s.job), mode=0o666),
                 "is not a regular file of root's or Grid Engine's admin user's, or writable by others"),
    "other_job": (lambda s: s.write(GOOD_CONFIG.format(owner=s.user.pw_name, queue="all.q", job="4711")),
                  "does not name job"),
    "no_queue": (lambda s: s.write(GOOD_CONFIG.format(owner=s.user.pw_name, queue="all.q", job=s.job)
                                   .replace("queue=all.q\n", "")),
                 "has no usable queue="),
    "directory": (lambda s: s.dir.chmod(0o777), "not in a job directory of Grid Engine's"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forged_spool_config_is_refused(spool, case):
    """The real starter (as the user) and prolog (as root) under a stand-in shepherd whose job
    directory holds a config that is forged (a key twice, also through the shepherd's 100000-byte
    lines), too big, a symbolic link, not Grid Engine's, of another job, without a queue: the starter
    refuses with one line and exit 73, the prolog prepares nothing and logs the same reason."""
    make, reason = CASES[case]
    make(spool)
    p = spool.starter({"ENVSCHED_REQUEST": "deb13"})
    assert p.returncode == 73, (p.stdout, p.stderr)
    assert "PAYLOAD" not in p.stdout
    assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("envsched: ") and reason in p.stderr, p.stderr
    mark = log_mark(spool.site)
    p = spool.prolog()
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert spool.site.pins() == []
    log = log_since(spool.site, mark)
    assert "event=failed step=prolog" in log and reason in log, log


def test_forged_queue_variable_under_stand_in_shepherd(spool):
    """With execd's config saying all.q, QUEUE=legacy.q in the starter's and the prolog's
    environment gets no qonly: the prolog refuses the mismatch, the starter decides for all.q (77).
    With config saying legacy.q, qonly is prepared and the job runs in it."""
    with queue_only_environment(spool.site):
        mark = log_mark(spool.site)
        p = spool.prolog({"QUEUE": "legacy.q"})
        assert p.returncode == 0 and spool.site.pins() == [], (p.stdout, p.stderr)
        assert "QUEUE='legacy.q' in the environment, but the job's configuration says 'all.q'" in \
            log_since(spool.site, mark)
        p = spool.starter({"ENVSCHED_REQUEST": "qonly", "QUEUE": "legacy.q"})
        assert p.returncode == 77 and "PAYLOAD" not in p.stdout, (p.stdout, p.stderr)
        assert re.match(r"envsched: environment 'qonly' \(option\) refused: not allowed in partition 'all.q'",
                        p.stderr), p.stderr
        spool.write(GOOD_CONFIG.format(owner=spool.user.pw_name, queue="legacy.q", job=spool.job))
        p = spool.starter({"ENVSCHED_REQUEST": "qonly", "QUEUE": "all.q"})
        assert p.returncode == 0 and "PAYLOAD os=13 chos=qonly" in p.stdout, (p.stdout, p.stderr)
        spool.release()


def test_forged_request_in_environment_file(spool):
    """The prolog reads execd's `environment` as the shepherd does: a variable set twice with
    different values (only a line break in a name can do that) prepares nothing; a good one
    prepares the pin for the owner, queue and request of the spool files."""
    env = spool.dir / "environment"
    env.write_text(f"JOB_ID={spool.job}\nQUEUE=all.q\nX=1\nENVSCHED_REQUEST=deb13\nENVSCHED_REQUEST=sl5\n")
    mark = log_mark(spool.site)
    assert spool.prolog().returncode == 0 and spool.site.pins() == []
    assert f"environment {spool.dir}/environment sets 'ENVSCHED_REQUEST' twice" in log_since(spool.site, mark)
    env.write_text(f"JOB_ID={spool.job}\nQUEUE=all.q\nX=a\\nENVSCHED_REQUEST=sl5\nENVSCHED_REQUEST=deb13\n")
    assert spool.prolog().returncode == 0
    key = f"uge-{spool.job}.1"
    assert pins_but_views(spool.site) == [key]
    # the C prolog read it (the resolver's inputs: es_prepare_inputs)
    assert (spool.site.run_dir / key / "inputs").read_text().startswith(
        f"uid={spool.user.pw_uid}\trequest=deb13\tchos=\tqueue=all.q\taccount=\tconfig="), \
        (spool.site.run_dir / key / "inputs").read_text()
    p = spool.starter()
    assert p.returncode == 0 and "PAYLOAD os=13 chos=deb13" in p.stdout, (p.stdout, p.stderr)
    spool.release()


@pytest.mark.parametrize("kind", ["c", "python"])
def test_forged_job_id_line_is_refused_by_epilog(spool, kind):
    """The epilog (the rendered C one, or `envsched_uge.py epilog`) releases the pin its shepherd's
    job directory names, and only when execd's config agrees: a second job_id= line (a line break
    in a value) leaves the pin to `envsched gc`."""
    if kind == "c":
        line = next(ln for ln in render_section(spool.site.rendered, "queue") if ln.startswith("epilog "))
        epilog = line.split(None, 1)[1].split("@", 1)[1].split()
    else:
        src = Path(__file__).resolve().parents[2] / "src"
        epilog = ["/usr/bin/python3", "-I", str(spool.site.libexec / "envsched_uge.py"), "epilog", "--policy",
                  str(spool.site.policy), "--src", str(src)]
    assert spool.prolog().returncode == 0
    key = f"uge-{spool.job}.1"
    assert pins_but_views(spool.site) == [key]
    good = spool.config.read_text()
    spool.write(good + "job_arg2=a\njob_id=4711\n")
    mark = log_mark(spool.site)
    assert spool.shepherd(True, epilog).returncode == 0
    assert pins_but_views(spool.site) == [key]
    if kind == "python":
        assert "event=failed step=epilog" in log_since(spool.site, mark) and "sets 'job_id' twice" in \
            log_since(spool.site, mark)
    spool.write(good)
    assert spool.shepherd(True, epilog).returncode == 0
    assert spool.site.pins() == []
    assert f"event=released key={key}\n" in log_since(spool.site, mark)


def test_forged_spool_dir_and_job_id_under_stand_in_shepherd(spool):
    """SGE_JOB_SPOOL_DIR naming a directory of the user's (with a config that says legacy.q) and
    JOB_ID naming another job: the starter never reads them (the real config says all.q: qonly is
    refused); the prolog, whose environment execd sets, refuses the mismatch and prepares nothing."""
    home = Path(spool.user.pw_dir)
    fake = home / f"spool-{uuid.uuid4().hex[:6]}" / "active_jobs" / f"{spool.job}.1"
    fake.mkdir(parents=True)
    (fake / "config").write_text(GOOD_CONFIG.format(owner=spool.user.pw_name, queue="legacy.q", job=spool.job))
    for p in [fake.parents[1], fake.parent, fake, fake / "config"]:
        os.chown(p, spool.user.pw_uid, spool.user.pw_gid)
    try:
        with queue_only_environment(spool.site):
            p = spool.starter({"ENVSCHED_REQUEST": "qonly", "QUEUE": "legacy.q", "SGE_JOB_SPOOL_DIR": str(fake)})
            assert p.returncode == 77 and "PAYLOAD" not in p.stdout, (p.stdout, p.stderr)
            assert "not allowed in partition 'all.q'" in p.stderr, p.stderr
            for env, reason in (({"SGE_JOB_SPOOL_DIR": str(fake)}, f"SGE_JOB_SPOOL_DIR='{fake}' is not the job "
                                                                  f"directory {spool.dir}"),
                                ({"JOB_ID": "4711"}, f"JOB_ID='4711' in the environment, but the job's "
                                                     f"configuration says '{spool.job}'")):
                mark = log_mark(spool.site)
                assert spool.prolog(env).returncode == 0 and spool.site.pins() == []
                assert reason in log_since(spool.site, mark), log_since(spool.site, mark)
    finally:
        shutil.rmtree(fake.parents[1])
