"""Real, throwaway Grid Engine clusters (Son of Grid Engine 8.1.9 from Debian, our stand-in for UGE) for
end-to-end tests: each one sge_qmaster and one sge_execd on this host, started by tests/cluster/uge/start.sh
and stopped by stop.sh at the end of the session.

  uge_cluster   bare: no envsched integration (smoke tests, the benchmark's plain jobs)
  uge_site      a second cluster with envsched installed and configured from `envsched site-config render
                --scheduler uge`, section by section (JsvSite: policy, trees, libexec, pins(), admin_log):
                all.q batch (prolog, epilog, set-user-ID starter, PE `envsched`), legacy.q interactive
                (starter only: SGE 8.1.9 fails builtin qrsh in a queue with a prolog), user.q
                unprivileged (the user-namespace starter); `uge_jsv` is the same site

Fixture `uge_cluster` (session scope) yields a `UgeCluster`:

    c.dir                 Path of the cluster (root-owned, 0755, outside /tmp: /var/lib/envsched-uge-test-*)
    c.root                c.dir / "root": the cluster's private SGE_ROOT (c.common: its cell's common dir)
    c.env                 environment for client commands: minimal PATH, LANG, SGE_ROOT, SGE_CELL,
                          SGE_QMASTER_PORT, SGE_EXECD_PORT
    c.host                the execution (and master) host name, `hostname`
    c.queues              ["all.q", "legacy.q"]: 2 slots each on c.host; the scheduler sorts queues by
                          seq_no, so a job without -q runs in all.q while all.q has a free slot
    c.ready_seconds       time start.sh took until qhost/qstat showed the host with load values
    c.qsub(script_text, *args, user=None, cwd=None, env=None) -> job id (str)
                          script_text is written to a 0644 file under c.dir/scripts and submitted with
                          `qsub -terse ARGS FILE`; script_text=None submits ARGS alone (e.g. "-b", "y",
                          "/bin/true"). Without -o/-e/-j in ARGS, output goes to c.dir/out (1777) with
                          -j y: read it with c.output(job_id).
    c.wait(job_id, timeout=60) -> Acct   polls qstat until the job is gone (raises on an error state such as
                          Eqw), then `qacct -j ID` until its record is there; Acct.exit_status, .failed,
                          ["qname"], ["owner"], ["hostname"]...
    c.qrsh(*args, user=None, cwd=None, env=None, timeout=60, stdin=None) -> CompletedProcess (text)
    c.run(argv, user=None, ...) -> CompletedProcess   any client command (qstat, qconf, qhost, qacct...)
    c.qconf(*args) -> CompletedProcess                as root, raises if it fails
    c.set_global_conf(**params)                       changes the global configuration (qconf -Mconf)
    c.logs(lines=40) -> str                           tails of the daemon logs, for failure messages

`user=` runs the client as that user through `setpriv --reuid/--regid/--init-groups` with HOME/USER/LOGNAME
set; the default cwd is then the user's home (root: c.dir/"work").

Measured on Debian's gridengine 8.1.9+dfsg-10+b1 (see also tests/cluster/uge/start.sh):
  * SGE_ROOT need not be /var/lib/gridengine: a private root whose bin/lib/utilbin/util are symlinks to the
    packaged ones works for the daemons and every client (qrsh runs $SGE_ROOT/utilbin/lx-amd64/qrsh_starter),
    so each cluster has its own cell and the packages' system-wide cell is never touched; with private
    ports and gid ranges several clusters can run at once.
  * The daemons write the host as "localhost" in their logs and execd spools under spool/execd/localhost
    (the hostname resolves to 127.0.0.1 -> localhost); host_aliases `<hostname> localhost` makes the
    master, qhost, qstat and qacct all say `<hostname>`.
  * Binary jobs (`qsub -b y CMD ARGS`) and qrsh commands are run as `sh -c "CMD ARGS"`: the arguments
    are joined with spaces and the remote shell expands and re-splits them ($JOB_ID works, quoting is
    lost). `qsub -b y` fails with "Unable to run job: Error reading answer list from qmaster" when the
    job name derived from CMD contains a space or a quote: pass -N.
  * qacct has the record as soon as the job has left qstat (accounting_flush_time=00:00:00); the wait
    still polls qacct for a few seconds.
  * `qconf -Mconf FILE` takes the configuration name from the file name: it must be called `global`.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import pytest

from testlib import CLEAN_PATH, UGE_TEST_RUN_DIRS, real_user, run_client, throwaway_cluster

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "tests" / "cluster" / "uge"
IS_ROOT = os.geteuid() == 0
UGE_USER = "envsched-gu"


@dataclass
class Acct:
    """One `qacct -j ID` record."""
    job_id: str
    fields: Dict[str, str]

    @property
    def exit_status(self) -> int:
        return int(self.fields["exit_status"].split()[0])

    @property
    def failed(self) -> int:
        """0, or Grid Engine's failure code (e.g. 100 for "assumedly after job")."""
        return int(self.fields["failed"].split()[0])

    def __getitem__(self, key: str) -> str:
        return self.fields[key]


def parse_qacct(text: str) -> Dict[str, str]:
    """The last record of `qacct -j` output (records are separated by lines of '=')."""
    records: List[Dict[str, str]] = [{}]
    for line in text.splitlines():
        if line.startswith("====="):
            if records[-1]:
                records.append({})
            continue
        key, _, value = line.partition(" ")
        if key:
            records[-1][key] = value.strip()
    return records[-1] if records[-1] else (records[-2] if len(records) > 1 else {})


@dataclass
class UgeCluster:
    dir: Path
    host: str
    ready_seconds: float
    qmaster_port: int
    execd_port: int
    queues: List[str] = field(default_factory=lambda: ["all.q", "legacy.q"])
    env: Dict[str, str] = field(default_factory=dict)
    _default_output: Set[str] = field(default_factory=set)

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def common(self) -> Path:
        return self.root / "default" / "common"

    # ---------------------------------------------------------------- running clients
    def run(self, argv: Sequence[str], user: Optional[str] = None, cwd: Optional[str] = None,
            env: Optional[Dict[str, str]] = None, timeout: float = 60,
            stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        return run_client(argv, self.env, str(self.dir / "work"), user=user, cwd=cwd, env=env,
                          timeout=timeout, stdin=stdin)

    def qconf(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        p = self.run(["qconf", *args], timeout=timeout)
        if p.returncode != 0:
            raise AssertionError(f"qconf {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
        return p

    def qrsh(self, *args: str, user: Optional[str] = None, cwd: Optional[str] = None,
             env: Optional[Dict[str, str]] = None, timeout: float = 60,
             stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        """Interactive job (builtin rsh method): the arguments are joined into one remote shell command."""
        return self.run(["qrsh", *args], user=user, cwd=cwd, env=env, timeout=timeout, stdin=stdin)

    def qsub(self, script_text: Optional[str], *args: str, user: Optional[str] = None,
             cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None, timeout: float = 30) -> str:
        argv = ["qsub", "-terse"]
        default_output = not any(a in ("-o", "-e", "-j") for a in args)
        if default_output:
            argv += ["-o", str(self.dir / "out"), "-j", "y"]
        argv += list(args)
        if script_text is not None:
            script = self.dir / "scripts" / f"job-{uuid.uuid4().hex[:10]}.sh"
            script.write_text(script_text)
            script.chmod(0o644)
            argv.append(str(script))
        p = self.run(argv, user=user, cwd=cwd, env=env, timeout=timeout)
        if p.returncode != 0:
            raise AssertionError(f"qsub failed ({p.returncode}): {p.stderr.strip()}")
        job_id = p.stdout.strip().splitlines()[-1].split(".")[0]
        if default_output:
            self._default_output.add(job_id)
        return job_id

    def output(self, job_id: str) -> str:
        """Joined stdout/stderr of a job submitted with the default output: c.dir/out/<name>.o<id>."""
        assert job_id in self._default_output, f"job {job_id} was not submitted with the default output"
        matches = sorted((self.dir / "out").glob(f"*.o{job_id}"))
        assert len(matches) == 1, f"output of job {job_id}: {matches}"
        return matches[0].read_text()

    # ---------------------------------------------------------------- jobs
    def job_state(self, job_id: str) -> Optional[str]:
        """The qstat state letters of a job (qw, r, t, Eqw...), or None once it has left qstat."""
        p = self.run(["qstat", "-u", "*"], timeout=30)
        if p.returncode != 0:
            raise AssertionError(f"qstat failed ({p.returncode}): {p.stderr.strip()}")
        for line in p.stdout.splitlines():
            cols = line.split()
            if len(cols) > 4 and cols[0] == str(job_id):
                return cols[4]
        return None

    def wait(self, job_id: str, timeout: float = 60) -> Acct:
        """Poll until the job has left qstat, then return its accounting record."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.job_state(job_id)
            if state is None:
                break
            if "E" in state:
                info = self.run(["qstat", "-j", str(job_id)]).stdout
                raise AssertionError(f"job {job_id} in error state {state}:\n{info}\n{self.logs()}")
            if time.monotonic() > deadline:
                info = self.run(["qstat", "-j", str(job_id)]).stdout
                raise AssertionError(f"job {job_id} still {state} after {timeout}s:\n{info}\n{self.logs()}")
            time.sleep(0.1)
        acct_deadline = time.monotonic() + 10
        while True:
            p = self.run(["qacct", "-j", str(job_id)], timeout=30)
            if p.returncode == 0 and "exit_status" in p.stdout:
                return Acct(str(job_id), parse_qacct(p.stdout))
            if time.monotonic() > acct_deadline:
                raise AssertionError(f"no accounting record for job {job_id} ({p.returncode}): "
                                     f"{p.stderr.strip()}\n{self.logs()}")
            time.sleep(0.1)

    # ---------------------------------------------------------------- configuration
    def set_global_conf(self, **params: str) -> None:
        """Set global configuration parameters (qconf -Mconf: the file must be named `global`)."""
        current = self.qconf("-sconf", "global").stdout
        lines, seen = [], set()
        for line in current.splitlines():
            key = line.split(None, 1)[0] if line.strip() else ""
            if key in params:
                lines.append(f"{key} {params[key]}")
                seen.add(key)
            else:
                lines.append(line)
        lines += [f"{k} {v}" for k, v in params.items() if k not in seen]
        d = self.dir / "conf" / f"mconf-{uuid.uuid4().hex[:8]}"
        d.mkdir()
        path = d / "global"
        path.write_text("\n".join(lines) + "\n")
        try:
            self.qconf("-Mconf", str(path))
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def logs(self, lines: int = 40) -> str:
        out = []
        files = sorted((self.dir / "log").glob("*")) + [self.dir / "spool" / "qmaster" / "messages"] \
            + sorted((self.dir / "spool" / "execd").glob("*/messages"))
        for f in files:
            try:
                tail = f.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if tail:
                out.append(f"---- {f}\n" + "\n".join(tail))
        return "\n".join(out)


def _read_conf(path: Path) -> Dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


@pytest.fixture(scope="session")
def uge_cluster():
    if not IS_ROOT:
        pytest.skip("needs root (CI runs as root)")
    with throwaway_cluster(CLUSTER, "uge", ("scripts", "work", "out"), (), "ENVSCHED_KEEP_UGE") as (root, ready):
        (root / "out").chmod(0o1777)   # default job output, for root and user jobs alike
        conf = _read_conf(root / "cluster.conf")
        env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "SGE_ROOT": str(root / "root"), "SGE_CELL": "default",
               "SGE_QMASTER_PORT": conf["QPORT"], "SGE_EXECD_PORT": conf["EPORT"]}
        yield UgeCluster(dir=root, host=conf["HOST"], ready_seconds=ready, qmaster_port=int(conf["QPORT"]),
                         execd_port=int(conf["EPORT"]), env=env)


@pytest.fixture(scope="session")
def uge_user() -> pwd.struct_passwd:
    """An ordinary user with a home directory for jobs (created if missing, removed if we created it)."""
    if not IS_ROOT:
        pytest.skip("needs root to create a user")
    with real_user(UGE_USER) as pw:
        yield pw


# ---------------------------------------------------------------------------------------------------------
# envsched in a second throwaway cluster, configured from `envsched site-config render --scheduler uge`
@dataclass
class JsvSite:
    """The envsched site: its cluster, policy, JSV launcher and execution-side install."""
    cluster: UgeCluster
    policy: Path
    wrapper: Path            # the JSV launcher (global jsv_url, the cell's sge_request, usable with -jsv)
    log: Path                # protocol exchange of every JSV process
    trees: Dict[str, Path]
    baseline_qsub: List[float]   # seconds per qsub before envsched was configured
    libexec: Path = Path("/nonexistent")    # the plugin dir: JSV, shims, set-user-ID starter + conf
    rendered: str = ""                      # the whole render output the cluster was configured from
    run_dir: Path = Path("/nonexistent")    # the policy's run_dir (pins)
    admin_log: Path = Path("/nonexistent")  # the policy's log_file

    def pins(self) -> List[str]:
        try:
            return sorted(p.name for p in self.run_dir.iterdir())
        except FileNotFoundError:
            return []


CHOS_COMPLEX = "chos chos STRING == YES NO NONE 0"
SITE_QUEUE = "all.q"             # batch: prolog + epilog + set-user-ID starter (qtype BATCH)
INTERACTIVE_QUEUE = "legacy.q"   # qrsh: starter only (SGE 8.1.9 fails builtin qrsh with a prolog)
PE = "envsched"                  # tightly integrated, in SITE_QUEUE
UNPRIVILEGED_QUEUE = "user.q"    # unprivileged mode: the user-namespace starter, no prolog


def _time_qsubs(c: UgeCluster, n: int, *args: str, user: Optional[str] = None) -> List[float]:
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        job = c.qsub(None, "-h", "-b", "y", "-N", "timing", *args, "/bin/true", user=user)
        times.append(time.monotonic() - t0)
        c.run(["qdel", job])
    return times


def render_section(rendered: str, name: str) -> List[str]:
    from envsched.siteconfig import section
    return [line for line in section(rendered, name).splitlines() if line.strip()]


def _install_site(c: UgeCluster, policy: Path, log: Path, binds: Sequence[str]) -> Tuple[Path, str]:
    """Install the shims and the starter under c.dir/libexec and configure the cluster from the
    render output, section by section, the way docs/admin.md tells an admin to."""
    libexec = c.dir / "libexec"
    libexec.mkdir(mode=0o755, exist_ok=True)
    for name in ("envsched_jsv.py", "envsched_uge.py"):
        shutil.copy(REPO / "plugins" / "uge" / name, libexec / name)
        (libexec / name).chmod(0o755)
    subprocess.run(["make", "-s", "-C", str(REPO / "plugins/uge/starter")], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.copy(REPO / "plugins/uge/starter/envsched-uge-starter", libexec / "uge-starter")
    os.chown(libexec / "uge-starter", 0, 0)
    (libexec / "uge-starter").chmod(0o4755)
    shutil.copy(REPO / "plugins/uge/starter/envsched-uge-epilog", libexec / "uge-epilog")
    (libexec / "uge-epilog").chmod(0o755)
    envsched = envsched_cmd()
    tools = c.dir / "uge-tools"
    subprocess.run([envsched, "--policy", str(policy), "site-config", "host-tools", "--scheduler", "uge",
                    "--sge-root", str(c.root), str(tools)], check=True, stdout=subprocess.DEVNULL)
    argv = [envsched, "--policy", str(policy), "site-config", "render", "--scheduler", "uge",
            "--plugin-dir", str(libexec), "--src", str(REPO / "src"), "--resolver", envsched,
            "--spool-dir", str(c.dir / "spool" / "execd"), "--host-tools", str(tools)]
    for b in binds:
        argv += ["--bind", b]
    rendered = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True).stdout
    # files
    jsv = render_section(rendered, "jsv")
    jsv[-1] += f" --log {log}"            # test only: the protocol log, read by test_submission_cost
    (libexec / "uge-jsv").write_text("\n".join(jsv) + "\n")
    (libexec / "uge-jsv").chmod(0o755)
    (libexec / "uge-starter.conf").write_text("\n".join(render_section(rendered, "starter_conf")) + "\n")
    (libexec / "uge-starter.conf").chmod(0o644)
    (c.common / "sge_request").write_text("\n".join(render_section(rendered, "sge_request")) + "\n")
    (c.common / "sge_request").chmod(0o644)
    # the complex, the global JSV, the queues
    complexes = c.qconf("-sc").stdout
    if not any(line.split()[:1] == ["chos"] for line in complexes.splitlines()):
        d = c.dir / "conf" / f"complex-{uuid.uuid4().hex[:8]}"
        d.write_text(complexes.rstrip("\n") + "\n" + "\n".join(render_section(rendered, "complex")) + "\n")
        try:
            c.qconf("-Mc", str(d))
        finally:
            d.unlink()
    (key, value), = [line.split(None, 1) for line in render_section(rendered, "global")]
    c.set_global_conf(**{key: value})
    for queue, section in ((SITE_QUEUE, "queue"), (INTERACTIVE_QUEUE, "interactive_queue")):
        for line in render_section(rendered, section):
            attr, value = line.split(None, 1)
            c.qconf("-mattr", "queue", attr, value, queue)
    c.qconf("-mattr", "queue", "qtype", "BATCH", SITE_QUEUE)
    c.qconf("-mattr", "queue", "qtype", "INTERACTIVE", INTERACTIVE_QUEUE)
    # a tightly integrated parallel environment: slave tasks start with `qrsh -inherit`
    pe = c.dir / "conf" / "pe-envsched"
    pe.write_text("pe_name envsched\nslots 99\nuser_lists NONE\nxuser_lists NONE\nstart_proc_args NONE\n"
                  "stop_proc_args NONE\nallocation_rule $round_robin\ncontrol_slaves TRUE\n"
                  "job_is_first_task FALSE\nurgency_slots min\naccounting_summary FALSE\nqsort_args NONE\n")
    c.qconf("-Ap", str(pe))
    c.qconf("-mattr", "queue", "pe_list", PE, SITE_QUEUE)
    c.qconf("-mattr", "queue", "slots", "4", SITE_QUEUE)
    _add_unprivileged_queue(c, argv, libexec)
    return libexec, rendered


def _add_unprivileged_queue(c: UgeCluster, render_argv: List[str], libexec: Path) -> None:
    """user.q (last by seq_no: only for -q user.q while all.q has room): unprivileged mode, its
    starter and queue lines from `render --unprivileged`."""
    rendered = subprocess.run(render_argv + ["--unprivileged"], check=True, stdout=subprocess.PIPE,
                              text=True).stdout
    (libexec / "uge-user-starter").write_text("\n".join(render_section(rendered, "user_starter")) + "\n")
    (libexec / "uge-user-starter").chmod(0o755)
    template = (c.dir / "conf" / SITE_QUEUE).read_text()      # as start.sh made it, before envsched
    lines = []
    for line in template.splitlines():
        key = line.split(None, 1)[0] if line.strip() else ""
        if key in ("qname", "seq_no", "prolog", "epilog", "starter_method", "pe_list", "slots"):
            continue
        lines.append(line)
    lines += [f"qname {UNPRIVILEGED_QUEUE}", "seq_no 50", "prolog NONE", "epilog NONE", "pe_list NONE",
              "slots 2"] + render_section(rendered, "queue")
    path = c.dir / "conf" / UNPRIVILEGED_QUEUE
    path.write_text("\n".join(lines) + "\n")
    c.qconf("-Aq", str(path))


@pytest.fixture(scope="session")
def uge_site(uge_user):
    """A second cluster with envsched installed and configured from the render output: the `chos`
    complex, two mini trees, a policy (deb12 default, deb13, sl5 for root only, `local` the host),
    the JSV server- and client-side, all.q with prolog/epilog/starter, legacy.q for qrsh."""
    if not IS_ROOT:
        pytest.skip("needs root (CI runs as root)")
    with throwaway_cluster(CLUSTER, "uge-site", ("scripts", "work", "out", "os"), (), "ENVSCHED_KEEP_UGE") \
            as (root, ready):
        (root / "out").chmod(0o1777)
        conf = _read_conf(root / "cluster.conf")
        env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "SGE_ROOT": str(root / "root"), "SGE_CELL": "default",
               "SGE_QMASTER_PORT": conf["QPORT"], "SGE_EXECD_PORT": conf["EPORT"]}
        c = UgeCluster(dir=root, host=conf["HOST"], ready_seconds=ready, qmaster_port=int(conf["QPORT"]),
                       execd_port=int(conf["EPORT"]), env=env)
        baseline = _time_qsubs(c, 5, user=uge_user.pw_name)
        trees = {}
        for name, version in (("deb12", "12"), ("deb13", "13")):
            trees[name] = root / "os" / name
            subprocess.run([str(REPO / "tests/envs/build-mini-env.sh"), str(trees[name]), "debian", version,
                            f"Debian {version} (mini)"], check=True, stdout=subprocess.DEVNULL)
        run_dir = Path(f"{UGE_TEST_RUN_DIRS}{root.name}")
        policy = root / "policy.toml"
        policy.write_text(f"""
[site]
default = "deb12"
run_dir = "{run_dir}"
log_file = "{root}/envsched.log"

[environments.deb12]
path = "{trees['deb12']}"
[environments.deb13]
path = "{trees['deb13']}"
[environments.sl5]
path = "{trees['deb12']}"
allow_users = ["root"]
""")
        policy.chmod(0o644)
        jdir = root / "jsv"
        jdir.mkdir(mode=0o755)
        log = jdir / "protocol.log"
        log.touch()
        log.chmod(0o666)        # written by sgeadmin (server side) and by users (client side)
        libexec, rendered = _install_site(c, policy, log, [str(root / "tmp")])
        site = JsvSite(c, policy, libexec / "uge-jsv", log, trees, baseline, libexec=libexec,
                       rendered=rendered, run_dir=run_dir, admin_log=root / "envsched.log")
        try:
            yield site
        finally:
            subprocess.run([envsched_cmd(), "--policy", str(policy), "gc"], stdout=subprocess.DEVNULL)
            left = site.pins()
            shutil.rmtree(run_dir, ignore_errors=True)
            assert not left, f"pins left after the session: {left}"


def envsched_cmd() -> str:
    return str(Path(sys.executable).parent / "envsched")


@pytest.fixture(scope="session")
def uge_jsv(uge_site):
    """The JSV tests' name for the envsched site."""
    return uge_site


@pytest.fixture(autouse=True)
def uge_pins_released(request):
    """After each test on the envsched site: every pin of this site is gone (the host-mount guard
    leaves UGE_TEST_RUN_DIRS to us, so that concurrent test runs do not fail each other). The
    epilog releases a batch job's pin shortly after the job has left qstat and qacct has its
    record (measured: up to ~1 s)."""
    yield
    if "uge_site" not in request.fixturenames:
        return
    site = request.getfixturevalue("uge_site")
    deadline = time.monotonic() + 15
    while site.pins() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = site.pins()
    if left:
        subprocess.run([envsched_cmd(), "--policy", str(site.policy), "gc"], stdout=subprocess.DEVNULL)
        raise AssertionError(f"pins left after the test: {left}\n{site.admin_log.read_text()[-3000:]}")
