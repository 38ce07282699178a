"""What is submitted (SubmitRequest, checked by make_request) and what came of it (SubmitResult)."""
from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from ..errors import UsageError
from ..exitcodes import ExitCode
from ..names import NAME_RULE, is_valid_name, show

# Only characters that need no quoting in a native specification and that every scheduler accepts.
JOB_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}\Z")
JOB_NAME_RULE = "1-64 characters from A-Z a-z 0-9 _ . + -, starting with a letter, digit or _"
QUEUE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@*,+-]{0,255}\Z")
QUEUE_RULE = "characters from A-Z a-z 0-9 _ . @ * , + -, starting with a letter, digit or _"


@dataclass(frozen=True)
class SubmitRequest:
    """A checked job: absolute paths, valid names."""
    script: str                      # absolute path of an executable file (DRMAA's remoteCommand)
    args: Tuple[str, ...]            # passed verbatim (DRMAA keeps blanks and quotes)
    env_name: str                    # the environment to run in
    job_name: str
    working_dir: str                 # absolute; the job's cwd
    queue: Optional[str] = None
    output: Optional[str] = None     # absolute path for stdout and stderr (joined); None: scheduler default


@dataclass(frozen=True)
class SubmitResult:
    """A submitted job and, once waited for, how it ended (DRMAA's JobInfo)."""
    job_id: str
    scheduler: str
    env_name: str
    finished: bool = False           # False: submitted with wait=False
    exited: bool = False             # ran and exited: exit_status is its status
    exit_status: Optional[int] = None
    signal: Optional[int] = None     # ran and was killed by this signal
    signal_name: Optional[str] = None
    core_dumped: bool = False
    aborted: bool = False            # never ran (deleted while pending, or failed to start)

    @property
    def exit_code(self) -> int:
        """What a shell would report: the exit status, 128+signal, else an envsched code."""
        if not self.finished:
            return int(ExitCode.OK)
        if self.exited and self.exit_status is not None:
            return self.exit_status
        if self.signal is not None:
            return 128 + self.signal
        if self.aborted:
            return int(ExitCode.JOB_ABORTED)
        return int(ExitCode.SCHEDULER_FAILED)

    def describe(self) -> str:
        """One line: `job 12 finished: exit status 3`."""
        if not self.finished:
            return f"job {self.job_id} submitted"
        if self.exited:
            return f"job {self.job_id} finished: exit status {self.exit_status}"
        if self.signal is not None:
            core = ", core dumped" if self.core_dumped else ""
            return (f"job {self.job_id} finished: killed by signal {self.signal} ({self.signal_name}){core}, "
                    f"exit status {self.exit_code}")
        if self.aborted:
            return f"job {self.job_id} aborted: it never ran (deleted, or it could not be started)"
        return f"job {self.job_id} ended without an exit status"


def signal_number(name: str) -> Optional[int]:
    """'SIGKILL' -> 9; None for an unknown name."""
    try:
        return int(signal.Signals[name])
    except KeyError:
        return None


def default_job_name(script: str) -> str:
    """The script's base name made fit for JOB_NAME_RE (a blank or quote breaks some schedulers)."""
    base = re.sub(r"[^A-Za-z0-9_.+-]", "_", os.path.basename(script))[:64]
    if not JOB_NAME_RE.match(base):
        base = ("job_" + base)[:64]              # ".hidden", "-x", ""
    return base


def make_request(script: str, args: Sequence[str], env_name: str, *, queue: Optional[str] = None,
                 job_name: Optional[str] = None, working_dir: Optional[str] = None,
                 output: Optional[str] = None) -> SubmitRequest:
    """Check what the caller asked for; UsageError (one line) naming the value and the rule."""
    if not is_valid_name(env_name):
        raise UsageError(f"submit: {show(env_name)} is not a valid environment name ({NAME_RULE})")
    if queue is not None and not QUEUE_RE.match(queue):
        raise UsageError(f"submit: queue {show(queue)} is not valid ({QUEUE_RULE})")
    if job_name is not None and not JOB_NAME_RE.match(job_name):
        raise UsageError(f"submit: job name {show(job_name)} is not valid ({JOB_NAME_RULE})")
    for a in args:
        if not isinstance(a, str) or "\0" in a:
            raise UsageError(f"submit: argument {show(a)} is not a string without NUL bytes")
    wd = os.path.abspath(working_dir if working_dir is not None else os.getcwd())
    if not os.path.isdir(wd):
        raise UsageError(f"submit: working directory {show(wd, 80)} is not a directory")
    if not script or "\0" in script:
        raise UsageError(f"submit: script {show(script)} is not a path")
    path = os.path.join(wd, script)                  # unchanged when script is absolute
    path = os.path.normpath(path)
    if not os.path.isfile(path):
        why = "does not exist" if not os.path.lexists(path) else "is not a regular file"
        raise UsageError(f"submit: script {show(path, 80)} {why}")
    if not os.access(path, os.X_OK):
        raise UsageError(f"submit: script {show(path, 80)} is not executable (the scheduler runs it "
                         f"directly: chmod +x it)")
    if output is not None:
        if not output or "\0" in output or "\n" in output:
            raise UsageError(f"submit: output {show(output)} is not a path")
        output = os.path.normpath(os.path.join(wd, output))
    return SubmitRequest(script=path, args=tuple(args), env_name=env_name,
                         job_name=job_name or default_job_name(path), working_dir=wd, queue=queue,
                         output=output)
