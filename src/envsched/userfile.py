"""Read the user's `~/.chos` safely.

Root never opens a user's file as root: a child process drops to the user (so root-squashed
NFS homes work and the user's own permissions apply), opens the file with O_NOFOLLOW and
O_NONBLOCK (a FIFO cannot hang us), requires a regular file owned by the user of at most
256 bytes, and sends back the first line. The parent waits with a timeout (a hung NFS
server cannot hang a job start). The content is only ever a *name*, checked by the caller.
"""
from __future__ import annotations

import os
import stat

from .records import dataclass     # dataclasses, without their import cost (#13)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    from .identity import UserInfo

MAX_BYTES = 256
MAX_REPORT_BYTES = 65536      # the child's JSON report: the path (at most PATH_MAX, escaped) and a line


@dataclass(frozen=True)
class UserFile:
    """Outcome of reading ~/.chos: `value` (first line, stripped), or `error`, or neither (absent)."""
    path: str
    value: Optional[str] = None
    error: Optional[str] = None

    @property
    def present(self) -> bool:
        return self.value is not None or self.error is not None


def _read_as_current(path: str, uid: int) -> UserFile:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return UserFile(path)
    except OSError as e:
        if e.errno == 40:  # ELOOP: the final component is a symlink
            return UserFile(path, error="is a symbolic link (not followed)")
        if e.errno == 20:  # ENOTDIR: the home directory is not a directory
            return UserFile(path)
        return UserFile(path, error=f"cannot open: {e.strerror}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return UserFile(path, error="is not a regular file")
        if st.st_uid != uid:
            return UserFile(path, error=f"is owned by uid {st.st_uid}, not by you")
        if st.st_size > MAX_BYTES:
            return UserFile(path, error=f"is larger than {MAX_BYTES} bytes")
        data = os.read(fd, MAX_BYTES + 1)
    except OSError as e:
        return UserFile(path, error=f"cannot read: {e.strerror}")
    finally:
        os.close(fd)
    return parse_user_file(path, data)


def parse_user_file(path: str, data: bytes) -> UserFile:
    """Pure: the file's bytes to its value, the first line stripped of blanks, or an error.
    The value is plain ASCII without a newline; it is only ever checked as a name by the caller."""
    if len(data) > MAX_BYTES:
        return UserFile(path, error=f"is larger than {MAX_BYTES} bytes")
    first = data.split(b"\n", 1)[0].strip(b" \t\r")
    try:
        text = first.decode("ascii")
    except UnicodeDecodeError:
        return UserFile(path, error="first line is not plain ASCII")
    return UserFile(path, value=text)


def decode_report(path: str, data: bytes) -> UserFile:
    """Pure: the reader child's report (JSON of a UserFile) to a UserFile for `path`. Anything
    but what _read_as_current can produce (a JSON object with `value` or `error`, a string of
    at most MAX_BYTES characters without a newline, or neither) is "reader failed"."""
    failed = UserFile(path, error="could not be read (reader failed)")
    if not data or len(data) > MAX_REPORT_BYTES:
        return failed
    import json
    try:
        report = json.loads(data)
    except (ValueError, RecursionError):
        return failed
    if not isinstance(report, dict) or not set(report) <= {"path", "value", "error"}:
        return failed
    value, error = report.get("value"), report.get("error")
    for field in (value, error):
        if field is not None and (not isinstance(field, str) or len(field) > MAX_BYTES or "\n" in field):
            return failed
    if value is not None and (error is not None or not value.isascii()):
        return failed
    return UserFile(path, value=value, error=error)


def read_user_file(user: UserInfo, filename: str = ".chos", timeout: float = 10.0) -> UserFile:
    """The first line of ~user/filename, read with the user's privileges, in a child waited for at
    most `timeout` seconds (site.user_file_timeout): a home that never answers (a hung NFS server,
    a stopped FUSE daemon) is a refusal that says so, never a job start or a command that hangs."""
    path = os.path.join(user.home, filename)
    root = os.geteuid() == 0
    if not root and os.geteuid() != user.uid:
        return UserFile(path, error="cannot be read for another user without root")
    import json
    import select
    import time
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become the user for good (as root), read, report, exit
        try:
            os.close(rfd)
            if root:
                os.setgroups(list(user.gids))
                os.setresgid(user.gid, user.gid, user.gid)
                os.setresuid(user.uid, user.uid, user.uid)
            result = _read_as_current(path, user.uid)
            os.write(wfd, json.dumps(result.__dict__).encode())
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(wfd)
    answered = False
    try:
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([rfd], [], [], left)[0]:
                return UserFile(path, error=f"could not be read within {timeout:g} s")
            chunk = os.read(rfd, 4096)
            if not chunk:
                answered = True
                break
            data += chunk
    finally:
        os.close(rfd)
        _reap(pid, answered)
    return decode_report(path, data)


def _reap(pid: int, answered: bool) -> None:
    """The reader reaped: at once when it answered (it is exiting), else killed and reaped within a
    second if it can be. A reader blocked on a file system that took the request and never answers
    cannot die before it does: it is left (init reaps it once we are gone) rather than hang us."""
    if answered:
        os.waitpid(pid, 0)
        return
    import signal
    import time
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return
        time.sleep(0.005)
