"""Helpers of the PAM tests (the fixtures are in conftest.py). Test modules import from here, not from
conftest: with several test directories on sys.path, `conftest` names whichever was imported first."""
from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from typing import List

import pytest

import installed
from testlib import USER_SUFFIX

REPO = Path(__file__).resolve().parents[2]
PAM_DIR = Path("/etc/pam.d")
RESOLVER = Path(installed.envsched()) if installed.INSTALLED else REPO / ".venv" / "bin" / "envsched"
PAM_USER = "envsched-pamtu" + USER_SUFFIX    # not the shared test user: other suites empty its ~/.chos concurrently


def need(*programs: str) -> None:
    for p in programs:
        if shutil.which(p) is None and not Path(p).exists():
            pytest.skip(f"{p} not installed (scripts/install-deps.sh installs it)")


def module_args(policy: Path, run_dir: Path, extra: str = "") -> str:
    return f"policy={policy} resolver={RESOLVER} run_dir={run_dir} {extra}".strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pins(run_dir: Path) -> List[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name.startswith("pam-")) if run_dir.exists() else []


def wait_no_pins(run_dir: Path, timeout: float = 10) -> List[str]:
    """close_session runs in sshd's monitor after the client has gone: wait for it."""
    deadline = time.monotonic() + timeout
    while pins(run_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pins(run_dir)
