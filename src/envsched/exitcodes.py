"""Exit codes of every envsched program, defined once.

The C side mirrors these in plugins/common/envsched_exit.h (a unit test keeps the two in
step). Codes follow sysexits(3) where one fits, and stay clear of 126/127 and 128+N, which
belong to the payload (a successful entry execs the payload, so its own code and signal
reach the caller unchanged).
"""
from __future__ import annotations


class _Codes(type):
    """What ExitCode needs of enum.IntEnum, without importing enum (#13: ≈ 3 ms of every
    resolver run that does not load it anyway): every class attribute in capitals becomes an
    ExitCode, an int with a `name` and a `value`; the class iterates over them in order, has a
    length and looks one up by value (`ExitCode(69)`)."""

    def __new__(mcs, name: str, bases: tuple, namespace: dict) -> type:
        cls = super().__new__(mcs, name, bases, namespace)
        members = []
        for key, value in namespace.items():
            if key.isupper() and type(value) is int:
                member = int.__new__(cls, value)
                member._name_ = key
                type.__setattr__(cls, key, member)
                members.append(member)
        type.__setattr__(cls, "_members_", tuple(members))
        type.__setattr__(cls, "_by_value_", {int(m): m for m in reversed(members)})   # a value's first name
        return cls

    def __iter__(cls):
        return iter(cls._members_)

    def __len__(cls) -> int:
        return len(cls._members_)

    def __call__(cls, value: object) -> object:
        if isinstance(value, cls):
            return value
        try:
            return cls._by_value_[value]
        except (KeyError, TypeError):
            raise ValueError(f"{value!r} is not a valid {cls.__qualname__}") from None

    def __setattr__(cls, name: str, value: object) -> None:
        if name in cls.__dict__ and isinstance(cls.__dict__[name], cls):
            raise AttributeError(f"cannot reassign member {name!r}")
        type.__setattr__(cls, name, value)


class _Code(int, metaclass=_Codes):
    """One exit code: an int (compares, hashes, formats and exits as its value)."""

    @property
    def name(self) -> str:
        return self._name_

    @property
    def value(self) -> int:
        return int(self)

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__}.{self._name_}: {int(self)}>"

    __str__ = int.__repr__                # as IntEnum's (Python 3.11): the number
    __format__ = int.__format__

    def __reduce__(self) -> tuple:
        return type(self), (int(self),)


class ExitCode(_Code):
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
