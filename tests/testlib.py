"""Helpers shared by the test suites (fixtures live in the conftest.py files)."""
from __future__ import annotations

import contextlib
import pwd
import subprocess
from typing import Iterator, List

TEST_USER = "envsched-tu"


def mount_table() -> List[str]:
    """The host mount table, without the per-mount ids that a remount may renumber."""
    with open("/proc/self/mountinfo") as f:
        return sorted(" ".join(line.split()[2:]) for line in f)


@contextlib.contextmanager
def real_user(name: str) -> Iterator[pwd.struct_passwd]:
    """An ordinary user with a home directory: created if missing, removed again if we made it."""
    created = False
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name], check=True)
        created = True
        pw = pwd.getpwnam(name)
    try:
        yield pw
    finally:
        if created:
            subprocess.run(["userdel", "--remove", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
