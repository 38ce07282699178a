"""Real, throwaway Grid Engine clusters (Son of Grid Engine 8.1.9 from Debian, our stand-in for UGE) for
end-to-end tests: each one sge_qmaster and one sge_execd on this host, started by tests/cluster/uge/start.sh
and stopped by stop.sh at the end of the session.

  uge_cluster   bare: no envsched integration (smoke tests, the benchmark's plain jobs)
  uge_site      a second cluster with envsched installed and configured from `envsched site-config render
                --scheduler uge`, section by section (JsvSite: policy, trees, libexec, pins(), admin_log):
                all.q batch (prolog, epilog, set-user-ID starter, PE `envsched`), legacy.q interactive
                (starter only: SGE 8.1.9 fails builtin qrsh in a queue with a prolog), user.q
                unprivileged (the user-namespace starter); `uge_jsv` is the same site
  uge_vsite     the virtual cell (#15, tests/uge/vcell.py, tests/cluster/uge/vcell.sh): qmaster on a head
                node, an execd on each of two execution nodes (own hostname, address, /run and run_dir
                each), envsched installed as in uge_site; started only by the tests that ask for it
                (PE jobs across hosts, execd and host failures: test_uge_multihost.py, test_uge_faults.py)

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
import time
import uuid
from pathlib import Path

import pytest

from testlib import (SESSION_TAG, USER_SUFFIX, build_mini_trees, real_user, run_script, throwaway_cluster,
                     two_tree_policy, unmount_below)
from ugecluster import REPO, UgeCluster
from ugesite import JsvSite, _time_qsubs, envsched_cmd, install_site

CLUSTER = REPO / "tests" / "cluster" / "uge"
IS_ROOT = os.geteuid() == 0
UGE_USER = "envsched-gu" + USER_SUFFIX


@pytest.fixture(scope="session")
def uge_cluster():
    if not IS_ROOT:
        pytest.skip("needs root (CI runs as root)")
    with throwaway_cluster(CLUSTER, "uge", ("scripts", "work", "out"), (), "ENVSCHED_KEEP_UGE") as (root, ready):
        (root / "out").chmod(0o1777)   # default job output, for root and user jobs alike
        yield UgeCluster.started_in(root, ready)


@pytest.fixture(scope="session")
def uge_user() -> pwd.struct_passwd:
    """An ordinary user with a home directory for jobs (created if missing, removed if we created it)."""
    if not IS_ROOT:
        pytest.skip("needs root to create a user")
    with real_user(UGE_USER) as pw:
        yield pw


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
        c = UgeCluster.started_in(root, ready)
        baseline = _time_qsubs(c, 5, user=uge_user.pw_name)
        trees = build_mini_trees(root / "os")
        run_dir = Path(f"/run/envsched-ugetest-{SESSION_TAG}")
        policy = two_tree_policy(root, run_dir, trees, site_extra="view_hold = 0\n",
                                 environments_extra=f"""[environments.sl5]
path = "{trees['deb12']}"
allow_users = ["root"]
""")
        jdir = root / "jsv"
        jdir.mkdir(mode=0o755)
        log = jdir / "protocol.log"
        log.touch()
        log.chmod(0o666)        # written by sgeadmin (server side) and by users (client side)
        libexec, rendered = install_site(c, policy, log, [])      # the queues' tmpdir: from qconf -sq
        site = JsvSite(c, policy, libexec / "uge-jsv", log, trees, baseline, libexec=libexec,
                       rendered=rendered, run_dir=run_dir, admin_log=root / "envsched.log")
        try:
            yield site
        finally:
            subprocess.run([envsched_cmd(), "--policy", str(policy), "gc"], stdout=subprocess.DEVNULL)
            left = site.pins()
            unmount_below(str(run_dir))       # image holders (run_dir/.images), if a test left one
            shutil.rmtree(run_dir, ignore_errors=True)
            assert not left, f"pins left after the session: {left}"


@pytest.fixture(scope="session")
def uge_vsite(uge_user):
    """envsched in the virtual cell: the same install and policy as uge_site (trees, the JSV, all.q
    with prolog/epilog/starter and the PE `envsched`, legacy.q, user.q), but every queue spans the two
    execution nodes and the policy's run_dir is each node's own (its /run)."""
    if not IS_ROOT:
        pytest.skip("needs root (CI runs as root)")
    from vcell import VSite, VUgeCluster, vcell_sh
    run_script([str(CLUSTER / "install.sh")], timeout=900)
    root = Path(f"/var/lib/envsched-uge-vcell-test-{uuid.uuid4().hex[:8]}")
    root.mkdir(mode=0o755)
    for sub in ("scripts", "work", "out", "os", "conf"):
        (root / sub).mkdir(mode=0o755)
    try:
        out = vcell_sh("start", str(root))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    print(out.strip())
    ready = float(out.rsplit("ready in ", 1)[1].split("s", 1)[0])
    site = None
    try:
        (root / "out").chmod(0o1777)
        c = VUgeCluster.started_in(root, ready)
        trees = build_mini_trees(root / "os")
        run_dir = Path(f"/run/envsched-ugetest-{SESSION_TAG}-vcell")    # inside each node: its own /run
        policy = two_tree_policy(root, run_dir, trees, site_extra="view_hold = 0\n")
        jdir = root / "jsv"
        jdir.mkdir(mode=0o755)
        log = jdir / "protocol.log"
        log.touch()
        log.chmod(0o666)
        libexec, rendered = install_site(c, policy, log, [], wrap=c.wrap)
        site = VSite(c, policy, libexec / "uge-jsv", log, trees, [], libexec=libexec, rendered=rendered,
                     run_dir=run_dir, admin_log=root / "envsched.log")
        yield site
    finally:
        left = []
        if site is not None:
            try:
                site.gc()
                left = site.leftovers()
            except Exception as e:      # noqa: BLE001 (the cell still goes down)
                left = [f"gc failed: {e}"]
        vcell_sh("stop", str(root))
        if os.environ.get("ENVSCHED_KEEP_UGE") != "1":
            shutil.rmtree(root, ignore_errors=True)
        assert not left, f"left in the virtual cell after the session: {left}"


@pytest.fixture(scope="session")
def uge_jsv(uge_site):
    """The JSV tests' name for the envsched site."""
    return uge_site


@pytest.fixture(autouse=True)
def uge_pins_released(request, host_mounts_unchanged):
    """After each test on the envsched site: every pin of this site is gone before the host-mount
    guard looks (asking for the guard makes it tear down after us). The epilog releases a batch
    job's pin shortly after the job has left qstat and qacct has its record (measured: up to ~1 s)."""
    yield
    if "uge_vsite" in request.fixturenames:
        vsite_clean(request.getfixturevalue("uge_vsite"))
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


def vsite_clean(site) -> None:
    """After each test on the virtual cell: once no shepherd runs on any live node (the jobs and
    their epilogs are over), `envsched gc` on every live node, as an admin's cron would (a PE job's
    pins on its other hosts, which run no epilog for it, go with the next prepare there or with
    gc); then nothing may be left in any node's run_dir."""
    deadline = time.monotonic() + 30
    while any(site.node_procs(n) for n in site.alive()) and time.monotonic() < deadline:
        time.sleep(0.1)
    site.gc()
    left = site.leftovers()
    if left:
        raise AssertionError(f"left in the virtual cell after the test: {left}\n{site.admin_log.read_text()[-3000:]}")
