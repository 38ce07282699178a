"""A client for one throwaway Grid Engine cluster (tests/cluster/uge/start.sh): UgeCluster runs qsub,
qrsh, qstat, qconf... against its private cell and parses qacct; see conftest.py for the fixtures."""
from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set

from testlib import CLEAN_PATH, run_client

REPO = Path(__file__).resolve().parents[2]


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

    @classmethod
    def started_in(cls, root: Path, ready: float) -> "UgeCluster":
        """The cluster start.sh started in `root` (its cluster.conf: host, ports)."""
        conf = read_conf(root / "cluster.conf")
        env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "SGE_ROOT": str(root / "root"), "SGE_CELL": "default",
               "SGE_QMASTER_PORT": conf["QPORT"], "SGE_EXECD_PORT": conf["EPORT"]}
        return cls(dir=root, host=conf["HOST"], ready_seconds=ready, qmaster_port=int(conf["QPORT"]),
                   execd_port=int(conf["EPORT"]), env=env)

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


def read_conf(path: Path) -> Dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out
