"""Errors of portable submission: one user-safe line each, the cause kept as `detail`."""
from __future__ import annotations

from ..errors import EnvschedError
from ..exitcodes import ExitCode


class SubmitError(EnvschedError):
    """The batch system (DRMAA library, qmaster) failed or is absent."""
    code = ExitCode.SCHEDULER_FAILED


class DrmaaUnavailable(SubmitError):
    """The DRMAA Python package or the scheduler's C library cannot be loaded."""


class SubmissionRefused(SubmitError):
    """The site policy (the scheduler's envsched JSV/filter) refused the request at submission."""
    code = ExitCode.REFUSED


class SubmissionFailed(SubmitError):
    """The scheduler did not accept the job for another reason."""


class WaitFailed(SubmitError):
    """The job was submitted but its end could not be observed."""
