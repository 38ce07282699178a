"""A real, throwaway Slurm cluster for end-to-end tests (one slurmctld, two slurmd on this host, a private
munged), started by tests/cluster/slurm/start.sh and stopped by stop.sh at the end of the session.

Fixture `slurm_cluster` (session scope) yields a `SlurmCluster`:

    c.dir                 Path of the cluster (root-owned, 0755, outside /tmp: /var/lib/envsched-slurm-test-*)
    c.conf                c.dir / "slurm.conf"
    c.plugstack           c.dir / "plugstack.conf" (empty at start)
    c.env                 environment for client commands: minimal PATH, LANG, SLURM_CONF
    c.nodes               ["node1", "node2"]; c.legacy_node == "node2" (partition `legacy`); `debug` is default
    c.ready_seconds       time start.sh took to get all nodes idle
    c.sbatch(script_text, *args, user=None, cwd=None, env=None) -> job id (str)
    c.wait(job_id, timeout=60) -> Job        (polls `scontrol show job -o` until a terminal JobState)
    c.job(job_id) -> Job                      (one `scontrol show job -o`, no waiting)
    c.srun(*args, user=None, cwd=None, env=None, timeout=60, stdin=None) -> CompletedProcess (text)
    c.run(argv, user=None, ...) -> CompletedProcess  any client command (squeue, scontrol, sinfo, salloc...)
    c.write_plugstack(text, restart_slurmd=False)
    c.restart_slurmd()
    c.logs(lines=40) -> str                   tails of the daemon logs, for failure messages

Fixtures `site` (session scope: the envsched plugin installed on that cluster, spanksite.Site) and `home`
(the test user's home without ~/.chos) serve the plugin tests, test_spank.py and test_spank_forged.py.

`user=` runs the client as that user through `setpriv --reuid/--regid/--init-groups` with HOME/USER/
LOGNAME set and SLURM_CONF preserved; the default cwd is then the user's home (root: c.dir/"work").

The virtual multi-node cluster (#15): fixture `vcluster` (session scope, started only when a test
asks for it) is a second throwaway cluster, `start.sh DIR 4 --vnet`: four nodes vnode1..vnode4, each
slurmd in its own tests/cluster/vnet node (own network, UTS, mount and PID namespace, own hostname,
address 10.213.K.(10+i) on a private bridge, own /run), slurmctld reached at the bridge's host address.
`vcluster.vnet` is its tests/vnetlib.VNet (root(node), mounts(node), kill(node), ...);
`vcluster.reboot(node)` is a node's reboot after a failure (a fresh vnet node of the same name and
address, a new slurmd). `vsite` (spanksite.VSite) is the envsched plugin installed there as `site` is
on the host cluster; each node has its own run_dir (the same path, in its own /run), read through
`vsite.node_run_dir(node)`, `vsite.node_mounts(node)`, `vsite.node_leftovers(node)`. The Slurm e2e
suite's multi-node cases run there (test_spank_multinode.py and the `v`-fixtures of the others). Its
teardown leaves the host as before: no bridge or veth (`ip link | grep esv`), no
/var/lock/envsched-vnet.d entry, no process of it.

Plugstack reloading (measured on Debian's Slurm 22.05.8):
  * srun/sbatch/salloc read plugstack.conf at every invocation (local/allocator context), so a client
    sees a rewrite immediately, and fails ("Plug-in initialization failed" / "Failed to initialize plugin
    stack", exit 1) if a `required` plugin cannot be loaded -- including when the submitting user cannot
    read the .so.
  * slurmstepd (remote context: init, user_init, task_init...) reads it at every step launch: no
    `scontrol reconfigure` or restart is needed for those callbacks.
  * slurm_spank_job_prolog/job_epilog (job_script context) and slurm_spank_init in slurmd context only run
    if plugstack.conf listed a plugin when slurmd STARTED. `scontrol reconfigure` and SIGHUP do not change
    that; restart slurmd (`write_plugstack(text, restart_slurmd=True)` / `restart_slurmd()`). Once slurmd
    runs job_prolog at all, each job reads the current plugstack.conf again.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

import installed
from spanksite import PLUGIN_DIR, Site, VSite, policy_text
from testlib import (CLEAN_PATH, SESSION_TAG, USER_SUFFIX, build_mini_trees, real_user, run_client,
                     throwaway_cluster, unmount_below)
from vnetlib import VNet

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "tests" / "cluster" / "slurm"
IS_ROOT = os.geteuid() == 0
SLURM_USER = "envsched-su" + USER_SUFFIX
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
            "DEADLINE", "PREEMPTED", "SPECIAL_EXIT", "REVOKED"}


_KEYCHARS = str.maketrans("", "", "/:_")


def parse_scontrol_oneliner(line: str) -> Dict[str, str]:
    """`scontrol show job -o` output: Key=Value pairs; a token without '=' belongs to the previous value."""
    out: Dict[str, str] = {}
    key = None
    for tok in line.strip().split(" "):
        if "=" in tok and tok.split("=", 1)[0].translate(_KEYCHARS).isalnum():
            key, val = tok.split("=", 1)
            out[key] = val
        elif key is not None:
            out[key] += " " + tok
    return out


@dataclass
class Job:
    job_id: str
    fields: Dict[str, str]

    @property
    def state(self) -> str:
        return self.fields.get("JobState", "")

    @property
    def exit_code(self) -> Tuple[int, int]:
        """(exit status, signal) from ExitCode=N:S."""
        code, _, sig = self.fields.get("ExitCode", "0:0").partition(":")
        return int(code), int(sig or 0)

    @property
    def node_list(self) -> str:
        return self.fields.get("NodeList", "")

    @property
    def std_out(self) -> str:
        return self.fields.get("StdOut", "")

    def __getitem__(self, key: str) -> str:
        return self.fields[key]


@dataclass
class SlurmCluster:
    dir: Path
    nodes: List[str]
    legacy_node: str
    ready_seconds: float
    env: Dict[str, str] = field(default_factory=dict)
    vnet: Optional[VNet] = None            # the virtual cluster's nodes (vcluster); None on the host one

    @property
    def conf(self) -> Path:
        return self.dir / "slurm.conf"

    @property
    def plugstack(self) -> Path:
        return self.dir / "plugstack.conf"

    # ---------------------------------------------------------------- running clients
    def run(self, argv: Sequence[str], user: Optional[str] = None, cwd: Optional[str] = None,
            env: Optional[Dict[str, str]] = None, timeout: float = 60,
            stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        return run_client(argv, self.env, str(self.dir / "work"), user=user, cwd=cwd, env=env,
                          timeout=timeout, stdin=stdin)

    def srun(self, *args: str, user: Optional[str] = None, cwd: Optional[str] = None,
             env: Optional[Dict[str, str]] = None, timeout: float = 60,
             stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        return self.run(["srun", *args], user=user, cwd=cwd, env=env, timeout=timeout, stdin=stdin)

    def sbatch(self, script_text: str, *args: str, user: Optional[str] = None, cwd: Optional[str] = None,
               env: Optional[Dict[str, str]] = None, timeout: float = 30) -> str:
        """Submit `script_text` (written to a 0644 file under dir/scripts) with --parsable; return the id."""
        script = self.dir / "scripts" / f"job-{uuid.uuid4().hex[:10]}.sh"
        script.write_text(script_text)
        script.chmod(0o644)
        p = self.run(["sbatch", "--parsable", *args, str(script)], user=user, cwd=cwd, env=env,
                     timeout=timeout)
        if p.returncode != 0:
            raise AssertionError(f"sbatch failed ({p.returncode}): {p.stderr.strip()}")
        return p.stdout.strip().split(";")[0]

    def scontrol(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.run(["scontrol", *args], timeout=timeout)

    # ---------------------------------------------------------------- jobs
    def job(self, job_id: str) -> Job:
        p = self.scontrol("show", "job", "-o", str(job_id))
        if p.returncode != 0:
            raise AssertionError(f"scontrol show job {job_id}: {p.stderr.strip()}")
        # one job, one line; a value may hold a line break itself (an account is any string when
        # there is no accounting), so the whole output is that line
        return Job(str(job_id), parse_scontrol_oneliner(p.stdout.strip().replace("\n", " ")))

    def wait(self, job_id: str, timeout: float = 60) -> Job:
        """Poll until the job reaches a terminal state; return its final record."""
        deadline = time.monotonic() + timeout
        while True:
            j = self.job(job_id)
            if j.state in TERMINAL:
                return j
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {j.state} after {timeout}s "
                                     f"(Reason={j.fields.get('Reason')})\n{self.logs()}")
            time.sleep(0.05)

    # ---------------------------------------------------------------- plugstack / daemons
    def write_plugstack(self, text: str, restart_slurmd: bool = False) -> None:
        """Rewrite plugstack.conf atomically (0644). Clients and slurmstepd pick it up at their next
        start; pass restart_slurmd=True when job_prolog/job_epilog or slurmd-context hooks must change."""
        tmp = self.plugstack.with_name(".plugstack.conf.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        os.replace(tmp, self.plugstack)
        if restart_slurmd:
            self.restart_slurmd()

    def restart_slurmd(self, nodes: Sequence[str] = ()) -> None:
        """Restart the slurmd of `nodes` (all if empty); returns once every node is idle."""
        p = subprocess.run([str(CLUSTER / "restart-slurmd.sh"), str(self.dir), *nodes], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=90)
        if p.returncode != 0:
            raise AssertionError(f"restart-slurmd.sh failed:\n{p.stdout}")

    def reboot(self, node: str) -> None:
        """The virtual cluster: NODE reboots (killed first if it still runs): a fresh vnet node with the
        same name and address and an empty /run, and a new slurmd, registered and idle."""
        assert self.vnet is not None, "reboot() is for the virtual cluster (vcluster)"
        self.vnet.restart(node)
        spread_pids(self, node)
        self.restart_slurmd([node])

    def logs(self, lines: int = 40) -> str:
        out = []
        for f in sorted((self.dir / "log").glob("*")):
            try:
                tail = f.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if tail:
                out.append(f"---- {f}\n" + "\n".join(tail))
        return "\n".join(out)


@pytest.fixture(scope="session")
def slurm_cluster():
    if not IS_ROOT:
        pytest.skip("needs root (CI runs as root)")
    with throwaway_cluster(CLUSTER, "slurm", ("scripts", "work"), ("2",), "ENVSCHED_KEEP_SLURM") as (root, ready):
        yield SlurmCluster(dir=root, nodes=["node1", "node2"], legacy_node="node2", ready_seconds=ready,
                           env={"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "SLURM_CONF": str(root / "slurm.conf")})


VNODES = ["vnode1", "vnode2", "vnode3", "vnode4"]
PID_SPREAD = 6000


def spread_pids(cluster: SlurmCluster, node: str) -> None:
    """The virtual nodes' PID namespaces each count from their own start (node i: from i * 6000), so
    that a PID a test records (a task's $$, in a file shared by the nodes) names one process of the
    whole cluster, as the host's cluster did; each node has its own PIDs all the same."""
    start = (cluster.nodes.index(node) + 1) * PID_SPREAD
    r = cluster.vnet.run(node, ["sh", "-c", f"echo {start} > /proc/sys/kernel/ns_last_pid"])
    assert r.returncode == 0, r.stderr


def _vnet_host_state(root: Path, subnet: str) -> List[str]:
    """What of the virtual cluster in `root` the host still has: links, lock entries, processes."""
    left = []
    links = subprocess.run(["ip", "-o", "link", "show"], stdout=subprocess.PIPE, text=True).stdout
    left += [f"link {ln.split(': ')[1].split('@')[0]}" for ln in links.splitlines()
             if subnet and ln.split(": ")[1].split("@")[0] in
             [f"esvb{subnet}"] + [f"esv{subnet}n{i}" for i in range(1, len(VNODES) + 1)]]
    if subnet and Path(f"/var/lock/envsched-vnet.d/{subnet}").exists():
        left.append(f"lock /var/lock/envsched-vnet.d/{subnet}")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().decode(errors="replace")
        except OSError:
            continue
        if f"{root}/vnet" in argv or f"SLURM_CONF={root}/slurm.conf" in env.split("\0"):
            left.append(f"process {entry} {argv.replace(chr(0), ' ').strip()[:120]}")
    return left


@pytest.fixture(scope="session")
def vcluster():
    """The virtual multi-node cluster: 4 Slurm nodes, each in its own vnet node (module docstring).
    Started only when a test asks for it (about 2 s); its teardown checks the host is clean."""
    if not IS_ROOT:
        pytest.skip("needs root (CI runs as root)")
    subnet = ""
    root = None
    with throwaway_cluster(CLUSTER, "vslurm", ("scripts", "work"), (str(len(VNODES)), "--vnet"),
                           "ENVSCHED_KEEP_SLURM") as (root, ready):
        subnet = (root / "vnet" / "subnet").read_text().strip()
        c = SlurmCluster(dir=root, nodes=list(VNODES), legacy_node=VNODES[-1], ready_seconds=ready,
                         env={"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "SLURM_CONF": str(root / "slurm.conf")},
                         vnet=VNet(root))
        for node in c.nodes:
            spread_pids(c, node)
        yield c
    left = _vnet_host_state(root, subnet)
    assert not left, f"the virtual cluster left on the host: {left}"


@pytest.fixture(scope="session")
def slurm_user() -> pwd.struct_passwd:
    """An ordinary user with a home directory for jobs (created if missing, removed if we created it)."""
    if not IS_ROOT:
        pytest.skip("needs root to create a user")
    with real_user(SLURM_USER) as pw:
        yield pw


@pytest.fixture
def views_released(request):
    """After the test, also a failed one: the job epilogs have released every view and removed every
    job record (before the host mount table is compared), on `site` and on `vsite` (every node), those
    of the two the test uses. Modules that submit jobs use it:
    pytestmark = [..., pytest.mark.usefixtures("views_released")]."""
    sites = [request.getfixturevalue(name) for name in ("site", "vsite") if name in request.fixturenames]
    yield
    for s in sites:
        s.settle()


@pytest.fixture(scope="session")
def site(slurm_cluster, slurm_user):
    """The envsched plugin on the cluster: trees deb12/deb13, the policy (spanksite.policy_text), a
    run dir, plugstack.conf with the plugin (slurmd restarted: job prolog and epilog), the host-tools
    wrappers. At the end: the queue drained, every view released, plugstack.conf emptied."""
    run_dir = Path(f"/run/envsched-slurmtest-{SESSION_TAG}")
    policy, trees = _install_plugin(slurm_cluster, run_dir)
    site = Site(slurm_cluster, run_dir, policy, trees)
    yield site
    # no job may still start (and pin) once the run dir is gone: drain the queue first
    _drain(slurm_cluster)
    try:
        site.settle()
    finally:                                  # a failed settle must not leave mounts behind
        slurm_cluster.write_plugstack("")
        if run_dir.exists():
            unmount_below(str(run_dir))       # image holders (run_dir/.images), shared views left
            shutil.rmtree(run_dir)


def _install_plugin(cluster: SlurmCluster, run_dir: Path) -> Tuple[Path, Dict[str, Path]]:
    """Trees, policy, plugstack.conf with the plugin (slurmd restarted), host-tools; (policy, trees)."""
    if not installed.INSTALLED:
        subprocess.run(["make", "-s", "-C", str(PLUGIN_DIR)], check=True)
    root = cluster.dir
    trees = build_mini_trees(root / "os")
    policy = root / "policy.toml"
    policy.write_text(policy_text(root, run_dir, trees))
    policy.chmod(0o644)
    resolver = Path(installed.envsched())
    cluster.write_plugstack(
        f"required {PLUGIN_DIR}/envsched_spank.so policy={policy} resolver={resolver} run_dir={run_dir} "
        f"log_file={root}/envsched.log bind={root}/spool bind={root}/munge host_tools={root}/tools\n",
        restart_slurmd=True)
    # the host's Slurm clients, usable from inside views (after plugstack.conf: it is derived from it)
    subprocess.run([str(resolver), "--policy", str(policy), "site-config", "host-tools", "--scheduler", "slurm",
                    "--slurm-conf", str(cluster.conf), str(root / "tools")], check=True,
                   stdout=subprocess.DEVNULL)
    return policy, trees


def _drain(cluster: SlurmCluster) -> None:
    cluster.run(["scancel", "--full", "--quiet", "--state=PENDING,RUNNING", "--partition=debug,legacy"])
    deadline = time.monotonic() + 60
    while cluster.run(["squeue", "-h"]).stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.3)


@pytest.fixture(scope="session")
def vsite(vcluster, slurm_user):
    """The envsched plugin on the virtual cluster, as `site` on the host one: the same policy (its own
    copy, trees under vcluster.dir), run_dir /run/envsched-vslurm-TAG on each node (its own /run).
    At the end: the queue drained, every node's views released, plugstack.conf emptied, each node's
    run_dir unmounted and removed inside it."""
    run_dir = Path(f"/run/envsched-vslurm-{SESSION_TAG}")
    policy, trees = _install_plugin(vcluster, run_dir)
    site = VSite(vcluster, run_dir, policy, trees)
    yield site
    _drain(vcluster)
    try:
        site.settle()
    finally:
        vcluster.write_plugstack("")
        for node in site.live_nodes():
            for m in sorted(site.node_mounts(node), key=len, reverse=True):
                vcluster.vnet.run(node, ["umount", "-l", m])
            vcluster.vnet.run(node, ["rm", "-rf", str(run_dir)])


@pytest.fixture
def home(slurm_user):
    """The test user's home, without ~/.chos before and after the test."""
    h = Path(slurm_user.pw_dir)
    subprocess.run(["rm", "-f", str(h / ".chos")], check=True)
    yield h
    subprocess.run(["rm", "-f", str(h / ".chos")], check=True)
