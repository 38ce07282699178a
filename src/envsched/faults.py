"""Fault points for the tests (#13, #15): a root-only switch, never an environment variable or an
argument. `point(run_dir, NAME)` kills this process with SIGKILL when `<run_dir>/.faults` exists,
is root's alone (a regular file, mode 0600 or stricter, one link, not a symbolic link) and names
NAME on a line of its own. Read once per process; without the file a point costs one failing
open(2). The C side is plugins/common/es_fault.c (same file, same rules).

`use(run_dir)` names the run_dir of this process's pins (PinStore does), for the points of code
that has none at hand (the view builder, a child of ours): `here(NAME)`.

The points (#15; docs/security.md, "Faults"), in the order a job meets them:
  pin.py          pin-made (the pin's directory and `making`), pin-bound (the view pinned onto it),
                  meta-before (plan.json and meta.json not yet written), meta-written (written,
                  `making` not yet removed), memo-written (the pin's inputs and shim)
  view.py         (the builder child) view-ns-made (its mount namespace made), view-staged (the
                  staging root pivoted into, the view's tmpfs mounted), view-mounted-KIND after
                  each mount operation of the plan (env_dir: the tree's directories, bind: host
                  paths, remount, device, driver_file, writable, login_env, pivot_root)
  sharedviews.py  view-locked, view-built, view-bound, view-unref
  decisioncache   cache-before-write (the entry's temporary file not yet renamed), cache-written
  pin.py release  release-unmounted (the pin's namespace detached, its files still there),
                  release-detached (its shared view's reference dropped, the pin not yet removed)
  pin.py gc       gc-released (a stale pin released, the idle views not yet let go)
  C (es_cache.c)  cache-bound, cache-files; (es_release.c) release-c-unmounted, release-c-unref"""
from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, FrozenSet

FILE = ".faults"
_read: Dict[str, FrozenSet[str]] = {}


def points(run_dir: str) -> FrozenSet[str]:
    if run_dir not in _read:
        found: FrozenSet[str] = frozenset()
        try:
            fd = os.open(os.path.join(run_dir, FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o077 and st.st_nlink == 1:
                    text = os.read(fd, 4096).decode("ascii", "replace")
                    found = frozenset(line for line in text.split("\n") if line)
            finally:
                os.close(fd)
        _read[run_dir] = found
    return _read[run_dir]


def point(run_dir: str, name: str) -> None:
    if name in points(run_dir):
        os.kill(os.getpid(), 9)     # SIGKILL; no import: the view builder may have pivoted away from the stdlib


_current = [""]


def use(run_dir: str) -> None:
    _current[0] = run_dir


def here(name: str) -> None:
    if _current[0]:
        point(_current[0], name)
