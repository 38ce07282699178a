"""The admin log: one key=value line per decision, refusal or failure.

Always to syslog (daemon facility, ident "envsched"); also appended to `site.log_file` when
the policy names one. Users see a separate one-line message on stderr; this log carries the
detail an admin needs (job, user, environment, the file or key at fault).

Both are opened by `configure()`, before any view is built, so failures that happen after the
host's root has been moved aside are still logged.
"""
from __future__ import annotations

import os
import stat
import syslog

from .errors import one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

_log_fd: Optional[int] = None
_opened = False


def _open_log_file(path: str) -> Optional[int]:
    """Append-only, no symlinks; as root the file must be a root-owned file with one link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK | os.O_NOCTTY, 0o640)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or (os.geteuid() == 0 and st.st_uid != 0):
        os.close(fd)
        return None
    return fd


def configure(log_file: Optional[str]) -> None:
    global _log_fd, _opened
    if not _opened:
        syslog.openlog("envsched", syslog.LOG_PID | syslog.LOG_NDELAY, syslog.LOG_DAEMON)
        _opened = True
    if _log_fd is None and log_file:
        _log_fd = _open_log_file(log_file)


def _quote(value: object) -> str:
    text = one_line(str(value))
    if text == "" or any(c in text for c in " \"'="):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def log(event: str, level: int = syslog.LOG_INFO, **fields: object) -> None:
    configure(None)
    line = "event=" + event + "".join(f" {k}={_quote(v)}" for k, v in fields.items() if v is not None)
    syslog.syslog(level, line)
    if _log_fd is not None:
        import time
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            os.write(_log_fd, f"{stamp} envsched[{os.getpid()}]: {line}\n".encode())
        except OSError:
            pass  # syslog has it; a full disk must not stop a job start


def close() -> None:
    """Forget the log file (before a process becomes a user's: its descriptor must not stay)."""
    global _log_fd
    if _log_fd is not None:
        try:
            os.close(_log_fd)
        except OSError:
            pass
        _log_fd = None
