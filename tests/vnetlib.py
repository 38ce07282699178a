"""Python side of tests/cluster/vnet/vnet.sh (the virtual multi-node cluster, #15): nodes that are
each their own network, UTS, mount and PID namespace on one host.

    net = VNet(cluster_dir)
    net.up(["vnode1", "vnode2"])        # bridge + nodes; net.head is the host's address on the bridge
    net.address("vnode1")               # "10.213.K.11"
    net.run("vnode1", ["hostname"])     # CompletedProcess (text), as root on that node
    net.argv("vnode1", [...])           # the argv that runs a command there (for Popen, daemons)
    net.root("vnode1") / "run/..."      # the node's own file system view, read from the host
    net.mounts("vnode1")                # mount points inside the node
    net.kill("vnode1")                  # node failure: everything on it dies at once
    net.restart("vnode1")               # reboot: a fresh node, same name and address, empty /run
    net.down()
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence

VNET = Path(__file__).resolve().parent / "cluster" / "vnet" / "vnet.sh"


class VNet:
    def __init__(self, cluster_dir: Path) -> None:
        self.dir = Path(cluster_dir)

    def _sh(self, *args: str, timeout: float = 60) -> str:
        r = subprocess.run(["bash", str(VNET), args[0], str(self.dir), *args[1:]], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"vnet.sh {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def up(self, names: Sequence[str]) -> None:
        self._sh("up", *names)

    def down(self) -> None:
        self._sh("down")

    def nodes(self) -> Dict[str, tuple]:
        """NAME -> (address, host PID of the node's init); a killed node keeps its line."""
        path = self.dir / "vnet" / "nodes"
        out = {}
        for line in path.read_text().splitlines() if path.exists() else []:
            name, addr, pid = line.split()
            out[name] = (addr, int(pid))
        return out

    @property
    def head(self) -> str:
        return (self.dir / "vnet" / "head").read_text().strip()

    @property
    def hosts_file(self) -> Path:
        return self.dir / "vnet" / "hosts"

    def address(self, name: str) -> str:
        return self.nodes()[name][0]

    def pid(self, name: str) -> int:
        return self.nodes()[name][1]

    def alive(self, name: str) -> bool:
        return Path(f"/proc/{self.pid(name)}").exists()

    def root(self, name: str) -> Path:
        """The node's file system as its processes see it (its own /run), readable from the host."""
        return Path(f"/proc/{self.pid(name)}/root")

    def argv(self, name: str, argv: Sequence[str]) -> List[str]:
        return ["nsenter", "-t", str(self.pid(name)), "-n", "-u", "-m", "-p", "--", *argv]

    def run(self, name: str, argv: Sequence[str], timeout: Optional[float] = 60, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.run(self.argv(name, argv), text=True, timeout=timeout, **kw)

    def mounts(self, name: str) -> List[str]:
        """Mount points inside the node (its /proc/PID/mountinfo, field 5)."""
        text = Path(f"/proc/{self.pid(name)}/mountinfo").read_text()
        return [line.split()[4] for line in text.splitlines()]

    def kill(self, name: str) -> None:
        self._sh("kill", name)

    def restart(self, name: str) -> None:
        """A fresh node of that name and address (killed first if it still runs); new init PID."""
        self._sh("restart", name)
