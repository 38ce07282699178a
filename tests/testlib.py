"""Helpers shared by the test suites (fixtures live in the conftest.py files)."""
from __future__ import annotations

import contextlib
import pwd
import subprocess
from typing import Dict, Iterator, List, Optional, Sequence

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


def run_client(argv: Sequence[str], base_env: Dict[str, str], root_cwd: str, user: Optional[str] = None,
               cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None, timeout: float = 60,
               stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    """A scheduler client command as root or, through setpriv, as `user` (HOME/USER/LOGNAME set,
    cwd defaulting to their home). stdin is empty unless given, so nothing waits for a terminal."""
    e = dict(base_env)
    cmd = list(argv)
    if user is not None:
        pw = pwd.getpwnam(user)
        e.update(HOME=pw.pw_dir, USER=user, LOGNAME=user)
        cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--"] + cmd
        wd = cwd or pw.pw_dir
    else:
        e.update(HOME="/root", USER="root", LOGNAME="root")
        wd = cwd or root_cwd
    e.update(env or {})
    return subprocess.run(cmd, cwd=wd, env=e, input=stdin if stdin is not None else "",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
