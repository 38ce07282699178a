"""The generic part of portable submission: load DRMAA, one session, a job template, wait, report.

The scheduler-specific part is a Scheduler (submit/scheduler.py), one per scheduler package in
envsched/schedulers/ (schedulers/uge/submit.py): library defaults, preloads,
native specification, how a policy refusal looks.
"""
from __future__ import annotations

import math
import os
import re
import time
from types import ModuleType, TracebackType
from typing import Any, Optional, Type

from ..names import show
from .errors import DrmaaUnavailable, SubmissionFailed, SubmissionRefused, SubmitError, WaitFailed
from .model import SubmitRequest, SubmitResult, signal_number
from .scheduler import Scheduler

CODE_PREFIX = re.compile(r"^code \d+: ")
#: DRMAA_ERRNO_NO_RUSAGE: the job ended without usage data, i.e. it never ran (measured on Grid Engine:
#: deleted while pending); the drmaa package raises it as a plain Exception("code 24: ...")
NO_RUSAGE = re.compile(r"^code 24: ")
WAIT_SLICE = 2          # seconds per DRMAA wait call


def drmaa_message(e: BaseException) -> str:
    """A DRMAA exception's text without the library's `code 17: ` prefix, on one line."""
    return " ".join(CODE_PREFIX.sub("", str(e).strip()).split()) or type(e).__name__


def load_drmaa(scheduler: Scheduler) -> ModuleType:
    """Import the `drmaa` package with the scheduler's library defaults filled into os.environ
    (only where unset: the C library reads them from there)."""
    for key, value in scheduler.library_defaults().items():
        os.environ.setdefault(key, value)
    lib = os.environ.get("DRMAA_LIBRARY_PATH", "")
    try:
        import drmaa  # type: ignore[import-untyped]
    except ImportError as e:
        raise DrmaaUnavailable("submit: the Python package drmaa is not installed "
                               "(pip install 'envsched[drmaa]')", detail=repr(e)) from e
    except OSError as e:
        if "static TLS" in str(e):
            need = ":".join(scheduler.preload()) or "the library it names"
            raise DrmaaUnavailable(f"submit: loading the DRMAA library {lib} failed ({e}): set "
                                   f"LD_PRELOAD={need} in the environment before Python starts "
                                   f"(chos submit does this itself)", detail=repr(e)) from e
        raise DrmaaUnavailable(f"submit: cannot load the DRMAA library {lib} ({e}): install it or set "
                               f"DRMAA_LIBRARY_PATH", detail=repr(e)) from e
    except RuntimeError as e:    # the package found no library at all
        raise DrmaaUnavailable(f"submit: no DRMAA library ({e})", detail=repr(e)) from e
    return drmaa


class DrmaaSession:
    """`with DrmaaSession(scheduler) as s: job = s.run(request); s.wait(job)`: one DRMAA session;
    jobs keep running after it is closed. A process may open several, one after the other, and
    run several jobs in each."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.drmaa = load_drmaa(scheduler)
        self.session: Any = None

    def __enter__(self) -> "DrmaaSession":
        session = self.drmaa.Session()
        try:
            session.initialize()
        except self.drmaa.errors.DrmaaException as e:
            raise SubmitError(f"submit: cannot open a DRMAA session with {self.scheduler.name}: "
                              f"{drmaa_message(e)}", detail=repr(e)) from e
        self.session = session
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], value: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        try:
            self.session.exit()
        except self.drmaa.errors.DrmaaException:
            pass                                  # closing never hides what happened inside
        self.session = None

    def run(self, request: SubmitRequest) -> str:
        """Submit; the job id. SubmissionRefused when the site policy says no."""
        jt = self.session.createJobTemplate()
        try:
            jt.remoteCommand = request.script
            jt.args = list(request.args)
            jt.workingDirectory = request.working_dir
            jt.nativeSpecification = " ".join(self.scheduler.native_specification(request))
            if request.output:
                jt.outputPath = ":" + request.output      # DRMAA: [host]:path
                jt.joinFiles = True
            return str(self.session.runJob(jt))
        except self.drmaa.errors.DrmaaException as e:
            text = drmaa_message(e)
            refusal = self.scheduler.refusal(text)
            if refusal:
                raise SubmissionRefused(refusal, detail=repr(e)) from e
            raise SubmissionFailed(f"submit: {self.scheduler.name} did not accept {show(request.script, 80)} "
                                   f"in {request.env_name}: {text}", detail=repr(e)) from e
        finally:
            self.session.deleteJobTemplate(jt)

    def wait(self, job_id: str, env_name: str, timeout: Optional[float] = None) -> SubmitResult:
        """Block until the job has ended (or `timeout` seconds: WaitFailed); how it ended. Waits in
        slices of WAIT_SLICE seconds, so that Ctrl-C (KeyboardInterrupt) is noticed between them."""
        d = self.drmaa
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WAIT_SLICE if deadline is None else math.ceil(deadline - time.monotonic())
            try:
                info = self.session.wait(job_id, max(0, min(WAIT_SLICE, left)))
                break
            except d.errors.ExitTimeoutException as e:
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitFailed(f"submit: job {job_id} still not finished after {timeout} s",
                                     detail=repr(e)) from e
            except d.errors.DrmaaException as e:
                raise WaitFailed(f"submit: waiting for job {job_id} failed: {drmaa_message(e)}",
                                 detail=repr(e)) from e
            except Exception as e:  # noqa: BLE001 - codes the package has no class for come as Exception
                if NO_RUSAGE.match(str(e)):
                    return SubmitResult(job_id=str(job_id), scheduler=self.scheduler.name, env_name=env_name,
                                        finished=True, aborted=True)
                raise WaitFailed(f"submit: waiting for job {job_id} failed: {drmaa_message(e)}",
                                 detail=repr(e)) from e
        return result_of(info, self.scheduler.name, env_name)


def result_of(info: Any, scheduler: str, env_name: str) -> SubmitResult:
    """DRMAA's JobInfo as a SubmitResult (the signal as a number: 'SIGKILL' -> 9)."""
    sig_name = (info.terminatedSignal or None) if info.hasSignal else None
    sig = signal_number(sig_name) if sig_name else None
    if info.hasSignal and sig is None:
        try:
            sig = int(float(info.resourceUsage.get("signal", "0"))) or None
        except (AttributeError, TypeError, ValueError):
            sig = None
    return SubmitResult(job_id=str(info.jobId), scheduler=scheduler, env_name=env_name, finished=True,
                        exited=bool(info.hasExited),
                        exit_status=int(info.exitStatus) if info.hasExited else None,
                        signal=sig, signal_name=sig_name, core_dumped=bool(info.hasCoreDump),
                        aborted=bool(info.wasAborted))
