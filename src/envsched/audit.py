"""The admin log: one key=value line per decision, refusal or failure.

Always to syslog (daemon facility, ident "envsched"); also appended to `site.log_file` when
the policy names one. Users see a separate one-line message on stderr; this log carries the
detail an admin needs (job, user, environment, the file or key at fault).
"""
from __future__ import annotations

import os
import syslog
import time
from typing import Optional

from .errors import one_line

_log_file: Optional[str] = None
_opened = False


def configure(log_file: Optional[str]) -> None:
    global _log_file
    _log_file = log_file or None


def _quote(value: object) -> str:
    text = one_line(str(value))
    if text == "" or any(c in text for c in " \"'="):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def log(event: str, level: int = syslog.LOG_INFO, **fields: object) -> None:
    global _opened
    line = "event=" + event + "".join(f" {k}={_quote(v)}" for k, v in fields.items() if v is not None)
    if not _opened:
        syslog.openlog("envsched", syslog.LOG_PID, syslog.LOG_DAEMON)
        _opened = True
    syslog.syslog(level, line)
    if _log_file:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            fd = os.open(_log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
            try:
                os.write(fd, f"{stamp} envsched[{os.getpid()}]: {line}\n".encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # syslog has it; a full disk must not stop a job start
