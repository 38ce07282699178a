"""The external programs the image pipeline runs as root, and how it runs them.

Each program is named by an absolute path and checked before every run: the file (after
symbolic links) and every directory above it must be root's and not writable by group or
others, or root would run whatever another user put there. It runs with a clean environment
(CLEAN_ENV), no inherited file descriptors, stdin from /dev/null, and its stderr captured: a
failure becomes one line naming the program and its last error line (ImportFailed).
"""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import EnvschedError
from ..exitcodes import ExitCode
from .store import ImportFailed

CLEAN_ENV: Dict[str, str] = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

SKOPEO = "/usr/bin/skopeo"
UMOCI = "/usr/bin/umoci"
MKSQUASHFS = "/usr/bin/mksquashfs"
UNSQUASHFS = "/usr/bin/unsquashfs"
TAR = "/usr/bin/tar"

#: a watcher is polled this often (seconds) while a tool runs; it may stop the tool
WATCH_INTERVAL = 0.25


class ToolProblem(EnvschedError):
    """A program the import needs is missing or not trusted (the host is misconfigured)."""
    code = ExitCode.ENV_BROKEN


def program_problem(path: str) -> Optional[str]:
    """Why root must not run `path`, or None: it must resolve to a regular file of root's, not
    writable by group or others, in directories of root's that others cannot write."""
    if not os.path.isabs(path):
        return f"{path} is not an absolute path"
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as e:
        return f"{path}: {e.strerror} (is it installed?)"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} must be a file of root's, not writable by group or others"
    d = os.path.dirname(real)
    while True:
        dst = os.stat(d)
        if dst.st_uid != 0 or dst.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{path}: directory {d} must be root's and not writable by group or others"
        if d == "/":
            return None
        d = os.path.dirname(d)


_GO_MSG = re.compile(r'level=(?:fatal|error)\s+msg="((?:[^"\\]|\\.)*)"')


#: lines that only say that an error was reported before them (GNU tar)
_GENERIC = ("Exiting with failure status due to previous errors", "Error is not recoverable: exiting now")


def last_error_line(text: str, program: str = "") -> str:
    """The line of a tool's stderr that says what went wrong: the last non-empty one that is
    not a generic epilogue, without the program's own `tar: ` prefix, with Go logging's
    `time=... level=fatal msg="..."` reduced to the message and umoci's bullets dropped."""
    lines = []
    for ln in text.splitlines():
        ln = ln.strip().lstrip("⨯•✓! \t")
        for prefix in (program, os.path.basename(program)):
            if prefix and ln.startswith(prefix + ": "):
                ln = ln[len(prefix) + 2:]
        m = _GO_MSG.search(ln)
        if m:
            ln = m.group(1).replace('\\"', '"')
        if ln:
            lines.append(ln)
    if not lines:
        return "(no error message)"
    specific = [ln for ln in lines if ln not in _GENERIC]
    line = (specific or lines)[-1]
    if line == "Skipping to next header":
        line = "a damaged member header (Skipping to next header)"
    return line[:300]


@dataclass
class Result:
    stdout: bytes
    stderr: str


def run(program: str, args: Sequence[str], *, cwd: Optional[str] = None, what: Optional[str] = None,
        watch: Optional[Callable[[], Optional[str]]] = None, timeout: Optional[float] = None,
        failure: type = ImportFailed) -> Result:
    """Run `program args` and return its output; raise `failure` with one line on a non-zero exit.

    `watch`, when given, is called every WATCH_INTERVAL seconds (at most every twice its own
    cost) while the program runs; a string it returns stops the program (SIGKILL to its process
    group) and becomes the error. The program is always reaped before this returns or raises,
    also on KeyboardInterrupt, so that the caller can remove its staging directory."""
    problem = program_problem(program)
    if problem:
        raise ToolProblem(f"cannot run {os.path.basename(program)}: {problem}")
    name = what or os.path.basename(program)
    try:
        proc = subprocess.Popen([program, *args], cwd=cwd, env=dict(CLEAN_ENV), close_fds=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as e:
        raise ToolProblem(f"cannot run {name}: {e.strerror}") from None
    stopped: Optional[str] = None
    try:
        if watch is None:
            out, err = proc.communicate(timeout=timeout)
        else:
            out, err, stopped = _communicate_watched(proc, watch, timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise failure(f"{name}: did not finish within {timeout:.0f} s") from None
    except BaseException:
        _kill(proc)
        raise
    text = err.decode("utf-8", "replace")
    if stopped:
        raise failure(stopped, detail=text[-2000:])
    if proc.returncode != 0:
        how = f"exit {proc.returncode}" if proc.returncode > 0 else f"signal {-proc.returncode}"
        raise failure(f"{name} failed ({how}): {last_error_line(text, program)}", detail=text[-4000:])
    return Result(out, text)


def _communicate_watched(proc: subprocess.Popen, watch: Callable[[], Optional[str]],
                         timeout: Optional[float]):
    """communicate() in short slices, asking `watch` in between; (stdout, stderr, stop reason)."""
    start = time.monotonic()
    interval = WATCH_INTERVAL
    while True:
        try:
            out, err = proc.communicate(timeout=interval)
            return out, err, None
        except subprocess.TimeoutExpired:
            pass
        if timeout is not None and time.monotonic() - start > timeout:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        t = time.monotonic()
        reason = watch()
        cost = time.monotonic() - t
        interval = max(WATCH_INTERVAL, 2 * cost)
        if reason:
            _kill(proc)
            out, err = proc.communicate()
            return out, err, reason


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the program's whole process group (it may have children, e.g. tar's gzip), reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.communicate(timeout=30)
    except (subprocess.TimeoutExpired, ValueError):
        proc.wait()


_ZSTD: List[bool] = []


def mksquashfs_compressor() -> str:
    """zstd when this mksquashfs was built with it (smaller and faster to read), else gzip."""
    if not _ZSTD:
        try:
            res = run(MKSQUASHFS, ["-help"], failure=ToolProblem)
            text = res.stdout.decode("utf-8", "replace") + res.stderr
        except ToolProblem as e:
            text = e.detail or ""     # mksquashfs -help exits non-zero on some versions
        _ZSTD.append(bool(re.search(r"^\s+zstd\b", text, re.M)))
    return "zstd" if _ZSTD[0] else "gzip"
