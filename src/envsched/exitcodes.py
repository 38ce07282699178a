"""Exit codes of every envsched program, defined once.

The C side mirrors these in plugins/common/envsched_exit.h (a unit test keeps the two in
step). Codes follow sysexits(3) where one fits, and stay clear of 126/127 and 128+N, which
belong to the payload (a successful entry execs the payload, so its own code and signal
reach the caller unchanged).
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    CHECK_FAILED = 1        # `envsched check`: the policy or a tree has problems (one line each)
    USAGE = 64              # EX_USAGE: bad command line
    NO_USER = 67            # EX_NOUSER: the target user does not exist
    ENV_BROKEN = 69         # EX_UNAVAILABLE: environment tree/image missing, insecure or incomplete
    INTERNAL = 70           # EX_SOFTWARE: a bug in envsched
    SETUP_FAILED = 71       # EX_OSERR: a syscall failed while building or joining the view
    NOT_PERMITTED = 73      # caller lacks the privilege for this operation (e.g. non-root exec)
    JOB_ABORTED = 75        # `chos submit`: the job ended without running (deleted, or failed to start)
    SCHEDULER_FAILED = 76   # `chos submit`: the batch system (DRMAA library, qmaster) failed or is absent
    REFUSED = 77            # EX_NOPERM: the request is refused by the site policy
    POLICY_INVALID = 78     # EX_CONFIG: the site policy cannot be read, parsed or trusted
    EXEC_FAILED = 126       # the payload could not be executed (same meaning as the shell's)
    NOT_FOUND = 127         # the payload was not found in the view (same meaning as the shell's)


def describe() -> str:
    """Table of exit codes for --help and the docs."""
    return "\n".join(f"{c.value:>4}  {c.name}" for c in ExitCode)
