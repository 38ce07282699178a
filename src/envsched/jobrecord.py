"""Job records: what a root scheduler hook learned about a job from the scheduler itself.

A set-user-ID program that starts a job's tasks (the Torque starter) knows who it runs for from
the kernel (its real uid) but cannot trust anything in the task's environment: which job, its
queue, its account. The scheduler tells those to root hooks that run once per job and node
(Torque's prologue and prologue.parallel get them as arguments from pbs_mom), so such a hook
writes them down here, and the starter reads them back (plugins/torque/torque/job.c).

    run_dir/.jobs/<key>     root's, mode 0644, in a directory of root's (0700)
    uid 1001                one "name value" line each; values are single-line text
    user alice
    queue batch
    account proj

The record lives as long as the job on this node: the epilogue removes it. A directory whose
name starts with a dot is never taken for a pin (names.py: a key starts with a letter or digit).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from .errors import SetupError, UsageError
from .names import is_valid_name
from .pin import _secure_dir

RECORDS = ".jobs"
MAX_VALUE = 255


@dataclass(frozen=True)
class JobRecord:
    uid: int
    user: str
    queue: str = ""
    account: str = ""


def _path(run_dir: str, key: str) -> str:
    if not is_valid_name(key):
        raise UsageError(f"invalid job record key {key!r}")
    return os.path.join(run_dir, RECORDS, key)


def _check_value(name: str, value: str) -> str:
    if len(value) > MAX_VALUE or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise UsageError(f"job record: {name} is not one line of at most {MAX_VALUE} characters")
    return value


def write(run_dir: str, key: str, record: JobRecord) -> str:
    """Write (atomically, replacing an older one) the record of `key`; its path."""
    path = _path(run_dir, key)
    text = "".join(f"{name} {_check_value(name, str(value))}\n" for name, value in
                   (("uid", record.uid), ("user", record.user), ("queue", record.queue),
                    ("account", record.account)))
    _secure_dir(run_dir, 0o700)
    _secure_dir(os.path.join(run_dir, RECORDS), 0o700)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def read(run_dir: str, key: str) -> Optional[JobRecord]:
    """The record of `key`, None if there is none."""
    try:
        fd = os.open(_path(run_dir, key), os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise SetupError(f"{_path(run_dir, key)}: not root's alone")
        fields = dict(line.rstrip("\n").partition(" ")[::2] for line in f.read(4096).splitlines(True))
    return JobRecord(int(fields["uid"]), fields.get("user", ""), fields.get("queue", ""),
                     fields.get("account", ""))


def remove(run_dir: str, key: str) -> bool:
    """Remove the record of `key`; False if there was none."""
    try:
        os.unlink(_path(run_dir, key))
        return True
    except FileNotFoundError:
        return False
