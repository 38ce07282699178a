"""The one switch between the checkout and the installed packages, for the end-to-end suites.

Unset (`make test`): the resolver runs from this checkout (`python -m envsched.cli.TOOL` with
src/ on PYTHONPATH, or the venv's `envsched`) and the shims are built from plugins/.

ENVSCHED_TEST_INSTALLED=1 (`make test-installed`, which installs the Debian packages first): the
same suites use what the packages installed instead: /usr/bin/envsched and /usr/bin/chos (the
package in /usr/lib/python3/dist-packages, nothing on PYTHONPATH, no --src for the hooks), the
shims from /usr/libexec/envsched, the SPANK plugin from /usr/lib/envsched and the PAM module from
PAM's directory. The starters and the joiner read their configuration beside themselves, so the
suites copy them (set-user-ID root, as installed) into each test site's directory, exactly as
they copy the checkout's builds: side-by-side runs keep their own configuration.

Not switched: tests that run the resolver's modules with code of their own (`python -c` with a
forced code path, `python -m envsched.cli.chos submit` under a test user with PYTHONPATH, the
render helpers the suites import); they keep testing the checkout.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parent.parent
INSTALLED = os.environ.get("ENVSCHED_TEST_INSTALLED") == "1"
LIBEXEC = Path("/usr/libexec/envsched")                 # packaging/debian/rules
SPANK_DIR = Path("/usr/lib/envsched")


def _pam_dir() -> Path:
    arch = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True).stdout.strip()
    return Path(f"/lib/{arch or 'x86_64-linux-gnu'}/security")


if INSTALLED and not Path("/usr/bin/envsched").exists():
    raise RuntimeError("ENVSCHED_TEST_INSTALLED=1 but /usr/bin/envsched is missing: install the packages "
                       "(make test-installed does)")


def envsched() -> str:
    """The `envsched` command the schedulers' hooks are configured with."""
    return "/usr/bin/envsched" if INSTALLED else str(Path(sys.executable).parent / "envsched")


def tool_command(tool: str) -> List[str]:
    """argv of `envsched` or `chos`, to which the caller appends the arguments."""
    return [f"/usr/bin/{tool}"] if INSTALLED else [sys.executable, "-m", f"envsched.cli.{tool}"]


def src() -> Optional[str]:
    """What the hooks put first on sys.path (`--src`, the hook config's `src`): none when installed."""
    return None if INSTALLED else str(REPO / "src")


def hook_python() -> str:
    """The interpreter that stands for PBS's own Python (it must import envsched)."""
    return "/usr/bin/python3" if INSTALLED else sys.executable


def shim(checkout: Path, installed: str) -> Path:
    """A shim's file: the checkout's build output (built here first, by its directory's Makefile),
    or, installed, the packaged file `installed` (a name in /usr/libexec/envsched, or a path)."""
    if INSTALLED:
        path = Path(installed) if installed.startswith("/") else LIBEXEC / installed
        if installed == "pam_envsched.so":
            path = _pam_dir() / installed
        if installed == "envsched_spank.so":
            path = SPANK_DIR / installed
        assert path.exists(), f"{path}: not installed"
        return path
    if checkout.suffix != ".py":
        subprocess.run(["make", "-s", "-C", str(checkout.parent)], check=True, stdout=subprocess.DEVNULL)
    return checkout
