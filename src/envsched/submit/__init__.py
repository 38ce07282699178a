"""Portable batch submission with an environment (DRMAA), for `chos submit` and Python callers.

    from envsched.submit import submit
    r = submit("/home/me/job.sh", ["in.dat"], "deb13", queue="all.q", output="/home/me/job.out")
    print(r.job_id, r.exit_status, r.exit_code)      # exit_code: status, 128+signal, or 75 (aborted)

The scheduler's envsched integration (Grid Engine: the JSV) checks the environment at submission:
a refusal raises SubmissionRefused with the site's one line. The `drmaa` package needs the
scheduler's DRMAA library; Debian's Grid Engine one loads only with
LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 set when Python starts (DrmaaUnavailable
says so otherwise; `chos submit` re-executes itself with it). A process may submit many jobs.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from .core import DrmaaSession, load_drmaa
from .errors import DrmaaUnavailable, SubmissionFailed, SubmissionRefused, SubmitError, WaitFailed
from .model import SubmitRequest, SubmitResult, make_request
from .registry import SCHEDULERS, get_scheduler
from .scheduler import Scheduler

__all__ = ["submit", "submit_request", "make_request", "get_scheduler", "load_drmaa", "DrmaaSession",
           "SubmitRequest", "SubmitResult", "Scheduler", "SCHEDULERS", "SubmitError", "DrmaaUnavailable",
           "SubmissionFailed", "SubmissionRefused", "WaitFailed"]


def submit_request(request: SubmitRequest, scheduler: Scheduler, wait: bool = True,
                   timeout: Optional[float] = None,
                   on_submitted: Optional[Callable[[str], None]] = None) -> SubmitResult:
    """Submit a checked request; with `wait`, block until the job ends. `on_submitted(job_id)` is
    called as soon as the scheduler has accepted the job."""
    with DrmaaSession(scheduler) as session:
        job_id = session.run(request)
        if on_submitted is not None:
            on_submitted(job_id)
        if not wait:
            return SubmitResult(job_id=job_id, scheduler=scheduler.name, env_name=request.env_name)
        return session.wait(job_id, request.env_name, timeout)


def submit(script: str, args: Sequence[str] = (), env_name: str = "", scheduler: str = "uge",
           wait: bool = True, *, queue: Optional[str] = None, job_name: Optional[str] = None,
           working_dir: Optional[str] = None, output: Optional[str] = None,
           timeout: Optional[float] = None,
           on_submitted: Optional[Callable[[str], None]] = None) -> SubmitResult:
    """Run the executable `script` with `args` as a batch job in environment `env_name`.

    Raises UsageError (bad name, unknown scheduler, script not executable: nothing submitted),
    SubmissionRefused (the site policy said no: nothing queued), DrmaaUnavailable, SubmissionFailed,
    WaitFailed. A job that ran reports its exit status or signal in the result, never as an error."""
    sched = get_scheduler(scheduler)
    request = make_request(script, args, env_name, queue=queue, job_name=job_name,
                           working_dir=working_dir, output=output)
    return submit_request(request, sched, wait=wait, timeout=timeout, on_submitted=on_submitted)
