"""What the SPANK plugin tests share (test_spank.py, test_spank_forged.py): the site the `site` fixture
(conftest.py) sets up, its policy, and helpers to run a batch job and read what its payload saw.

`VSite` is the same plugin on the virtual multi-node cluster (`vsite`, #15): each node has its own
/run and so its own run_dir; its leftovers are read inside each node (VNet.root, VNet.mounts, the
processes of its PID namespace)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, List

import installed
from testlib import namespace_inits

REPO = Path(__file__).resolve().parents[2]
# ENVSCHED_TEST_SPANK_PLUGIN_DIR: build and load the plugin from another tree (e.g. an older version,
# to see which tests it fails)
PLUGIN_DIR = Path(os.environ.get("ENVSCHED_TEST_SPANK_PLUGIN_DIR")
                  or (installed.SPANK_DIR if installed.INSTALLED else REPO / "plugins" / "slurm-spank"))
SHOW = 'head -1 /etc/os-release; echo "CHOS=$CHOS"; echo "CWD=$(pwd)"; echo "USER=$(id -un)"'
RECORDS = ".jobs"          # run_dir/.jobs/slurm-<job>: the job records the job prolog writes
HOLDERS = ".images"        # run_dir/.images/<hex>: the node's one mount of each image, kept after its jobs
VIEWS = ".views"           # run_dir/.views/<vid>: shared views (none left with view_hold = 0)
DECISIONS = ".decisions"   # run_dir/.decisions/<fnv>: the decision cache (stays: not a mount)


def policy_text(root: Path, run_dir: Path, trees: Dict[str, Path], extra_defaults: str = "",
                extra_environments: str = "", view_hold: float = 0) -> str:
    """The site's policy: default deb12, partition legacy -> deb13, `secret` for root only. Shared
    views are let go with their last job (view_hold = 0) unless a test keeps them warm."""
    return f"""
[site]
default = "deb12"
run_dir = "{run_dir}"
log_file = "{root}/envsched.log"
view_hold = {view_hold}

[defaults]
partitions = {{ legacy = "deb13" }}
{extra_defaults}
[environments.deb12]
path = "{trees['deb12']}"
[environments.deb13]
path = "{trees['deb13']}"
[environments.secret]
path = "{trees['deb13']}"
allow_users = ["root"]
{extra_environments}"""


class Site:
    def __init__(self, cluster, run_dir: Path, policy: Path, trees: dict):
        self.cluster, self.run_dir, self.policy, self.trees = cluster, run_dir, policy, trees

    def leftovers(self):
        """Pins under run_dir, and job records under run_dir/.jobs."""
        return run_dir_leftovers(self.run_dir)

    def settle(self, timeout: float = 20) -> None:
        """Wait for the job epilogs to release every view and remove every job record; fail if one
        is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.leftovers():
                # no view left: no PID namespace init either (release kills it, isolation.py)
                inits = namespace_inits(str(self.cluster.dir))
                assert not inits, f"PID namespace inits left after their views were released: {inits}"
                return
            time.sleep(0.2)
        raise AssertionError(f"views or job records left after the jobs ended: {self.leftovers()}")

    def output(self, job: str, user_home: Path) -> str:
        return (user_home / f"out-{job}.txt").read_text()

    def record_path(self, job: str) -> Path:
        return self.run_dir / RECORDS / f"slurm-{job}"


def run_dir_leftovers(run_dir: Path) -> List[str]:
    """Pins under run_dir, and job records and shared views under run_dir/.jobs and .views."""
    if not run_dir.exists():
        return []
    left = sorted(p.name for p in run_dir.iterdir() if p.name not in (RECORDS, HOLDERS, VIEWS, DECISIONS))
    for below in (RECORDS, VIEWS):
        if (run_dir / below).is_dir():
            left += sorted(f"{below}/{p.name}" for p in (run_dir / below).iterdir())
    return left


def _pid_ns(pid) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


class VSite(Site):
    """The plugin on the virtual cluster (cluster.vnet): run_dir is the same path on every node, but
    each node's is its own (its own /run). Dead nodes (killed, not yet rebooted) are skipped."""

    @property
    def vnet(self):
        return self.cluster.vnet

    def live_nodes(self) -> List[str]:
        return [n for n in self.cluster.nodes if self.vnet.alive(n)]

    def node_run_dir(self, node: str) -> Path:
        """NODE's run_dir, read from the host through its init's /proc/PID/root."""
        return self.vnet.root(node) / str(self.run_dir).lstrip("/")

    def node_mounts(self, node: str) -> List[str]:
        """Mount points inside NODE at or below run_dir (pins, image holders): none once its jobs ended."""
        rd = str(self.run_dir)
        return [m for m in self.vnet.mounts(node) if m == rd or m.startswith(rd + "/")]

    def node_processes(self, node: str) -> List[str]:
        """Processes in NODE's PID namespace other than its init and slurmd (jobs, slurmstepd, views)."""
        init = self.vnet.pid(node)
        ns = _pid_ns(init)
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == init or _pid_ns(entry) != ns:
                continue
            try:
                exe = os.readlink(f"/proc/{entry}/exe")
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().decode(errors="replace").replace("\0", " ").strip()
            except OSError:
                continue
            if exe.endswith(("/slurmd", "/slurmd-wlm")):
                continue
            out.append(f"{entry} {argv}")
        return sorted(out)

    def node_leftovers(self, node: str, processes: bool = True) -> List[str]:
        """Everything of envsched's left on NODE: run_dir entries, mounts below run_dir and (with
        `processes`) processes of its PID namespace besides init and slurmd."""
        left = [f"run_dir:{x}" for x in run_dir_leftovers(self.node_run_dir(node))]
        left += [f"mount:{m}" for m in self.node_mounts(node)]
        if processes:
            left += [f"process:{p}" for p in self.node_processes(node)]
        return left

    def leftovers(self):
        """As Site.leftovers, on every live node; also mounts below run_dir except the image holders
        (run_dir/.images: the node's one mount of each image stays after its jobs, image_hold)."""
        holders = f"{self.run_dir}/{HOLDERS}"
        return [f"{n}:{x}" for n in self.live_nodes() for x in self.node_leftovers(n, processes=False)
                if not (x == f"mount:{holders}" or x.startswith(f"mount:{holders}/"))]

    def record_path(self, job: str, node: str = "") -> Path:
        return self.node_run_dir(node or self.cluster.nodes[0]) / RECORDS / f"slurm-{job}"


def lines(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v.strip('"')
    return out


def run_batch(site, home, user, *args, script=SHOW, env=None):
    c = site.cluster
    job = c.sbatch("#!/bin/sh\n" + script + "\n", "-o", f"{home}/out-%j.txt", *args, user=user, cwd=str(home),
                   env=env)
    state = c.wait(job, timeout=60)
    site.settle()
    return job, state, site.output(job, home)


def chown_to(path: Path, pw) -> None:
    os.chown(path, pw.pw_uid, pw.pw_gid)
