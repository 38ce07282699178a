"""Re-executing a command once with the libraries a DRMAA library needs preloaded.

Debian's libdrmaa (Grid Engine) pulls in libjemalloc, which cannot be loaded once the process
runs ("cannot allocate memory in static TLS block"): it must be in LD_PRELOAD at startup. A
marker variable, holding the caller's own LD_PRELOAD, makes sure this happens at most once and
lets the re-executed process give its children the caller's LD_PRELOAD back.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List, Mapping, Optional, Sequence

MARKER = "ENVSCHED_SUBMIT_REEXEC"


def preloaded(environ: Mapping[str, str]) -> List[str]:
    """LD_PRELOAD's entries (separated by blanks or colons, as ld.so reads it)."""
    return environ.get("LD_PRELOAD", "").replace(":", " ").split()


def reexec_env(libs: Sequence[str], environ: Mapping[str, str]) -> Optional[Dict[str, str]]:
    """The environment to re-execute with, or None when there is nothing to do: every library is
    already preloaded or absent on this host, or this process is the re-executed one."""
    if MARKER in environ:
        return None
    have = preloaded(environ)
    missing = [lib for lib in libs if lib not in have and os.path.exists(lib)]
    if not missing:
        return None
    env = dict(environ)
    env["LD_PRELOAD"] = " ".join(missing + have)
    env[MARKER] = environ.get("LD_PRELOAD", "")
    return env


def restore_env() -> None:
    """In the re-executed process: children (a client JSV...) get the caller's LD_PRELOAD back."""
    if MARKER not in os.environ:
        return
    original = os.environ.pop(MARKER)
    if original:
        os.environ["LD_PRELOAD"] = original
    else:
        os.environ.pop("LD_PRELOAD", None)


def command_line() -> List[str]:
    """This process's command line, to run again with the same interpreter and flags."""
    orig = getattr(sys, "orig_argv", None)            # Python >= 3.10
    if orig:
        return [sys.executable] + list(orig[1:])
    return [sys.executable, "-m", "envsched.cli.chos"] + sys.argv[1:]


def ensure_preloaded(libs: Sequence[str]) -> None:
    """Re-execute this command (never returns) when `libs` are not preloaded yet; else return,
    first restoring the caller's LD_PRELOAD if this is the re-executed process."""
    env = reexec_env(libs, os.environ)
    if env is None:
        restore_env()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, command_line(), env)
    except OSError:
        return          # loading the library then fails with the message saying what to set
