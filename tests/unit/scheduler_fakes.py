"""Fakes for the scheduler commands and files the adapters read (envsched.schedulers.*): a unit test
decides what `scontrol`, `qconf`, ... print, and nothing on this host (a Slurm or Grid Engine
cluster another test started, /etc/slurm, a pbs_mom) leaks in.

    cluster = fake_cluster(monkeypatch)
    cluster.answers[("scontrol", "show", "config")] = (0, "SlurmdSpoolDir = /srv/spool\\n")
    cluster.calls                                   # every command run, in order
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from envsched import schedulers


@dataclass
class FakeCluster:
    answers: Dict[Tuple[str, ...], Tuple[Optional[int], str]] = field(default_factory=dict)
    calls: List[Tuple[str, ...]] = field(default_factory=list)

    def run(self, argv) -> Tuple[Optional[int], str]:
        argv = tuple(argv)
        self.calls.append(argv)
        return self.answers.get(argv, (None, f"no {argv[0]} on PATH"))


def fake_cluster(monkeypatch, tmp_dir: str = "/nonexistent-envsched-test") -> FakeCluster:
    cluster = FakeCluster()
    for adapter in schedulers.adapters():
        monkeypatch.setattr(adapter, "run", cluster.run)
        if hasattr(adapter, "environ"):
            monkeypatch.setattr(adapter, "environ", {})
    monkeypatch.setattr(schedulers.get("slurm"), "default_conf", f"{tmp_dir}/slurm.conf")
    monkeypatch.setattr(schedulers.get("torque"), "homes", (f"{tmp_dir}/torque",))
    monkeypatch.setattr(schedulers.get("torque"), "moms", lambda: [])
    monkeypatch.setattr(schedulers.get("pam"), "pam_dir", f"{tmp_dir}/pam.d")
    return cluster
