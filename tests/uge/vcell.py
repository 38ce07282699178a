"""The virtual Grid Engine cell (#15): sge_qmaster on a head node and an sge_execd on each of two
execution nodes, each node its own network, UTS, mount and PID namespace (tests/cluster/vnet/vnet.sh,
tests/vnetlib.py), started by tests/cluster/uge/vcell.sh; with envsched installed it is the
`uge_vsite` fixture (conftest.py).

    site = uge_vsite                     # VSite (a JsvSite): policy, trees, libexec, admin_log
    c = site.cluster                     # VUgeCluster: the UgeCluster API, every client on the head node
    c.head, c.exec_hosts                 # "ghead", ["gexec1", "gexec2"]
    c.net                                # the VNet: c.net.root("gexec1") / "run/...", c.net.mounts(NODE)
    c.daemon_pids("gexec1", "sge_execd") # host PIDs of this cell's daemons/shepherds on a node
    c.start_execd("gexec1")              # after an execd was killed, or the node restarted
    c.restart_node("gexec1")             # the host "rebooted": a fresh node, same name and address,
                                         # its execd started again (empty /run: no run_dir)
    site.pins()                          # ["gexec1:uge-12.1", ...]: every live node's run_dir entries
    site.pins_on("gexec2")               # one node's
    site.on("gexec1", [envsched, "gc"])  # a command as root on that node (its /proc, /run, hostname)
    site.gc()                            # `envsched gc` on every live execution node
    site.leftovers()                     # pins and mounts in each live node's run_dir, job processes
                                         # (a gid of the cell's gid_range) on it, as "NODE: what"

Why the clients run on the head node: Grid Engine resolves host names both ways (a client's address
must reverse-resolve to a host it knows), and only the nodes see the generated /etc/hosts; the host's
own /etc/hosts is never touched. The daemons' environments are clean (`env -i`), as start.sh's.

Measured (Son of Grid Engine 8.1.9, this host): ready in about 6 s from nothing (three nodes, qmaster,
two execds); the qmaster accepts an execd of an admin host (`qconf -ah`) and adds it as execution host
on its first report.
"""
from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from testlib import client_command, wait_for as _wait_for
from ugecluster import REPO, UgeCluster, read_conf
from ugesite import JsvSite
from vnetlib import VNet

VCELL = REPO / "tests" / "cluster" / "uge" / "vcell.sh"


def vcell_sh(*args: str, timeout: float = 120) -> str:
    p = subprocess.run(["bash", str(VCELL), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL,
                       env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"})
    if p.returncode != 0:
        raise RuntimeError(f"vcell.sh {' '.join(args)} failed ({p.returncode}):\n{p.stdout}")
    return p.stdout


@dataclass
class VUgeCluster(UgeCluster):
    """A UgeCluster whose clients run on the head node (as root, or as `user` through setpriv)."""
    head: str = "ghead"
    exec_hosts: List[str] = field(default_factory=list)
    net: VNet = None          # type: ignore[assignment]

    @classmethod
    def started_in(cls, root: Path, ready: float) -> "VUgeCluster":
        base = UgeCluster.started_in(root, ready)
        conf = read_conf(root / "cluster.conf")
        return cls(dir=base.dir, host=base.host, ready_seconds=ready, qmaster_port=base.qmaster_port,
                   execd_port=base.execd_port, env=base.env, head=conf["HOST"],
                   exec_hosts=conf["EXECS"].strip('"').split(), net=VNet(root))

    def run(self, argv: Sequence[str], user: Optional[str] = None, cwd: Optional[str] = None,
            env: Optional[Dict[str, str]] = None, timeout: float = 60,
            stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        cmd, e, wd = client_command(argv, self.env, str(self.dir / "work"), user, cwd, env)
        # nsenter -m starts in the node's root directory: env -C goes to the client's cwd (as root)
        return subprocess.run(self.net.argv(self.head, ["env", "-C", wd, *cmd]), env=e,
                              input=stdin if stdin is not None else "", stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)

    def wrap(self, argv: Sequence[str]) -> List[str]:
        """argv run as root on the head node (for a program that asks qconf itself: render)."""
        return self.net.argv(self.head, list(argv))

    def daemon_pids(self, node: str, *names: str) -> List[int]:
        return [int(x) for x in vcell_sh("pids", str(self.dir), node, *names).split()]

    def start_execd(self, node: str) -> None:
        vcell_sh("execd", str(self.dir), node)

    def restart_node(self, node: str) -> None:
        """A failed host comes back: a fresh node (vnet.sh restart: same name and address, empty /run),
        then its execd."""
        self.net.restart(node)
        self.start_execd(node)

    def host_up(self, node: str) -> bool:
        """qstat -f shows the host's all.q instance without a state (no "u"nknown, no "a"larm...)."""
        p = self.run(["qstat", "-f", "-q", f"all.q@{node}"], timeout=30)
        return any(ln.split()[0] == f"all.q@{node}" and len(ln.split()) == 5 and ln.split()[3] != "-NA-"
                   for ln in p.stdout.splitlines() if ln.strip())

    def wait_host_up(self, node: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.host_up(node):
            if time.monotonic() > deadline:
                raise AssertionError(f"host {node} not back after {timeout}s:\n"
                                     f"{self.run(['qstat', '-f']).stdout}\n{self.logs()}")
            time.sleep(0.2)

    def logs(self, lines: int = 40) -> str:
        out = [super().logs(lines)]
        for f in sorted((self.dir / "log").glob("*.out")):
            try:
                out.append(f"---- {f}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(out)


@dataclass
class VSite(JsvSite):
    """envsched installed in the virtual cell: the policy's run_dir is each node's own."""
    @property
    def vcluster(self) -> VUgeCluster:
        return self.cluster      # type: ignore[return-value]

    def on(self, node: str, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
        return self.vcluster.net.run(node, list(argv), timeout=timeout)

    def envsched(self, node: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        from ugesite import envsched_cmd
        return self.on(node, [envsched_cmd(), "--policy", str(self.policy), *args], timeout=timeout)

    def alive(self) -> List[str]:
        net = self.vcluster.net
        return [n for n in self.vcluster.exec_hosts if net.alive(n)]

    def pins_on(self, node: str) -> List[str]:
        rd = self.vcluster.net.root(node) / str(self.run_dir).lstrip("/")
        try:
            found = [p.name for p in rd.iterdir() if p.name not in (".images", ".decisions", ".views")]
            if (rd / ".views").is_dir():
                found += [f".views/{p.name}" for p in (rd / ".views").iterdir()]
            return sorted(found)
        except FileNotFoundError:
            return []

    def pins(self) -> List[str]:
        return sorted(f"{n}:{p}" for n in self.alive() for p in self.pins_on(n))

    def mounts_on(self, node: str) -> List[str]:
        return sorted(self.vcluster.net.mounts(node))

    def gc(self) -> None:
        for n in self.alive():
            p = self.envsched(n, "gc")
            assert p.returncode == 0, f"envsched gc on {n}: {p.returncode}: {p.stderr.strip()}"

    def leftovers(self) -> List[str]:
        """Pins in each live node's run_dir and mounts below it, as "NODE: what" (the nodes' other
        mounts are the host's, propagated: the host mount guard checks those)."""
        out = [p.replace(":", ": pin ", 1) for p in self.pins()]
        prefix = str(self.run_dir).rstrip("/") + "/"
        for n in self.alive():
            out += [f"{n}: mount {m}" for m in sorted(self.mounts_on(n)) if m.startswith(prefix) or m == prefix[:-1]]
            out += [f"{n}: process {p}" for p in self.job_procs(n)]
        return out

    def job_procs(self, node: str) -> List[str]:
        """Processes on a node holding a supplementary gid of the cell's gid_range: Grid Engine gives
        one to every job process (and kills by it), so these are jobs' processes, as "PID CMDLINE"."""
        conf = read_conf(self.cluster.dir / "cluster.conf")
        lo, hi = int(conf["GID_LO"]), int(conf["GID_HI"])
        ns = os.readlink(f"/proc/{self.vcluster.net.pid(node)}/ns/pid")
        out = []
        for e in os.listdir("/proc"):
            if not e.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{e}/ns/pid") != ns:
                    continue
                with open(f"/proc/{e}/status") as f:
                    st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
                if st.get("State", "").startswith("Z"):
                    continue
                if any(lo <= int(g) <= hi for g in st.get("Groups", "").split()):
                    with open(f"/proc/{e}/cmdline", "rb") as f:
                        argv = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    out.append(f"{e} {argv}")
            except (OSError, ValueError):
                continue
        return out

    def node_procs(self, node: str) -> List[str]:
        """Job processes of this cell still running on a node (shepherds and what runs below them)."""
        return [str(p) for p in self.vcluster.daemon_pids(node, "sge_shepherd")]


# a task: where it runs and what it sees; then it waits for the test's go (a file on the shared
# file system), so that the test can look at every host's run_dir while the job runs
TASK = ('echo "task host=$(cat /proc/sys/kernel/hostname) os=$(. /etc/os-release; echo $VERSION_ID) '
        'chos=$CHOS"; while [ ! -e {go} ]; do sleep 0.1; done')


class Go:
    """The test's go to a job's waiting tasks: a file in the user's home (shared by every host and
    seen in every view, as /home is by default)."""
    def __init__(self, user) -> None:
        self.path = Path(user.pw_dir) / f".envsched-go-{uuid.uuid4().hex[:8]}"

    def __str__(self) -> str:
        return str(self.path)

    def give(self) -> None:
        self.path.touch()

    def __enter__(self) -> "Go":
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def wait_for(cond, what: str, timeout: float = 30, site=None):
    """cond()'s first true value, polled every 0.1 s; AssertionError (with the cell's logs) after timeout."""
    return _wait_for(cond, lambda: f"timed out waiting for {what}" + (f"\n{site.cluster.logs()}" if site else ""),
                     timeout, 0.1)


def tasks_seen(out: str):
    """{host: (os, chos)} of the `task` lines of a job's output."""
    got = {}
    for line in out.splitlines():
        if line.startswith("task "):
            kv = dict(x.split("=", 1) for x in line.split()[1:])
            got[kv["host"]] = (kv["os"], kv["chos"])
    return got
