"""Errors that carry a user-safe line, the admin detail, and the exit code."""
from __future__ import annotations

from .exitcodes import ExitCode

#: ENOSPC, EDQUOT: the node's disk (run_dir) is full: the host's state, never a bug of ours (#15)
DISK_FULL = (28, 122)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


def one_line(text: str) -> str:
    """Newlines become spaces; any other non-printable character is shown escaped (\\x1b, \\u2028)."""
    text = text.replace("\n", " ")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class EnvschedError(Exception):
    """Base error. `message` is safe to show the user (one line); `detail` is for the admin log."""

    code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, detail: Optional[str] = None,
                 code: Optional[ExitCode] = None) -> None:
        super().__init__(message)
        self.message = one_line(message)
        self.detail = detail
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class UsageError(EnvschedError):
    code = ExitCode.USAGE


class PolicyError(EnvschedError):
    """The policy file is unreadable, untrusted or invalid. Message: `file[:line]: key: problem`."""
    code = ExitCode.POLICY_INVALID


class EnvironmentBroken(EnvschedError):
    """The chosen environment exists in the policy but its tree/image cannot be used."""
    code = ExitCode.ENV_BROKEN


class SetupError(EnvschedError):
    """A syscall failed while building or joining a view: names the operation and errno."""
    code = ExitCode.SETUP_FAILED


class NotPermitted(EnvschedError):
    code = ExitCode.NOT_PERMITTED


class NoSuchUser(EnvschedError):
    code = ExitCode.NO_USER
