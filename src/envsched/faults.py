"""Fault points for the tests (#13, #15): a root-only switch, never an environment variable or an
argument. `point(run_dir, NAME)` kills this process with SIGKILL when `<run_dir>/.faults` exists,
is root's alone (a regular file, mode 0600 or stricter, one link, not a symbolic link) and names
NAME on a line of its own. Read once per process; without the file a point costs one failing
open(2). The C side is plugins/common/es_fault.c (same file, same rules)."""
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
        import signal
        os.kill(os.getpid(), signal.SIGKILL)
