"""Entering: what every process does once it stands in the view, then exec.

Form (1), enter-and-exec: build the view in this process, then `finish_and_exec`.
Form (2), join: setns into a pinned view (pin.py), then `finish_and_exec`.
"""
from __future__ import annotations

import errno
import os
import stat

from . import isolation, linux
from .errors import EnvschedError, SetupError
from .exitcodes import ExitCode
from .identity import UserInfo, drop_privileges
from .plan import Plan, with_identity
from .view import build_view

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, MutableMapping, NoReturn, Optional, Sequence


def apply_env_ops(plan: Plan, environ: MutableMapping[str, str]) -> None:
    for op in plan.process_ops:
        if op["op"] != "env":
            continue
        name, value, action = op["name"], op["value"], op["action"]
        old = environ.get(name, "")
        if action == "set":
            environ[name] = value
        elif action == "prepend":
            environ[name] = value + (":" + old if old else "")
        elif action == "append":
            environ[name] = (old + ":" if old else "") + value
        elif action == "unset":
            environ.pop(name, None)


def chdir_first(candidates: Sequence[str]) -> str:
    """chdir to the first candidate that exists in the view (caller's cwd, $HOME, /)."""
    for path in candidates:
        if path and path.startswith("/"):
            try:
                os.chdir(path)
                return path
            except OSError:
                continue
    raise SetupError("no usable working directory in the view")


def chdir_candidates(plan: Plan, cwd: Optional[str]) -> List[str]:
    planned: List[str] = next((op["candidates"] for op in plan.process_ops if op["op"] == "chdir"), ["/"])
    return ([cwd] if cwd else []) + planned


# the launcher cannot be executed: the environment is broken (69) when its program is missing, not
# executable or not a program, else 126 (plugins/common/es_launch.c: es_launch_exit_code)
LAUNCHER_BROKEN = (errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR, errno.ELOOP, errno.EPERM)


def find_program(name: str, environ: Mapping[str, str]) -> str:
    """`name` as execvp would find it, for a launcher that expects a path (es_launch_resolve): a name
    with a '/' as it is; a bare name in environ's PATH (in the view, as the user; execvp's default
    without one), the first that exists, is not a directory and is executable; not found: the name
    (the launcher says so)."""
    if not name or "/" in name:
        return name
    for d in environ.get("PATH", os.defpath).split(":"):
        path = f"{d}/{name}"
        try:
            if d and not stat.S_ISDIR(os.stat(path).st_mode) and os.access(path, os.X_OK):
                return path
        except OSError:
            continue
    return name


def launched_argv(plan: Plan, argv: Sequence[str], environ: Mapping[str, str]) -> List[str]:
    """argv to exec: the environment's launcher (plan.launcher, its program an absolute path in the
    view) and then the payload's program, found in the view, and arguments; argv itself without one."""
    if not plan.launcher:
        return list(argv)
    return list(plan.launcher) + [find_program(argv[0], environ)] + list(argv[1:])


def finish_and_exec(plan: Plan, user: UserInfo, argv: Sequence[str], cwd: Optional[str] = None,
                    environ: Optional[Dict[str, str]] = None) -> NoReturn:
    """In the view: drop to the user, chdir, apply env ops, no_new_privs, exec. Never returns."""
    env = dict(os.environ if environ is None else environ)
    if os.getuid() != user.uid:                          # root starting a job for a user
        env.update({"HOME": user.home, "USER": user.name, "LOGNAME": user.name})
    drop_privileges(user)
    # chdir after dropping: the user's own permissions decide which directory is usable
    chdir_first(chdir_candidates(plan, cwd))
    apply_env_ops(plan, env)
    linux.set_no_new_privs()
    argv = launched_argv(plan, argv, env)              # the environment's launcher first, if any
    try:
        os.execvpe(argv[0], list(argv), env)
    except OSError as e:
        if plan.launcher:                                # the site's launcher, not the user's command
            raise EnvschedError(f"cannot execute the launcher {argv[0]}: {e.strerror}",
                                code=ExitCode.ENV_BROKEN if e.errno in LAUNCHER_BROKEN else ExitCode.EXEC_FAILED
                                ) from None
        if isinstance(e, FileNotFoundError):
            raise EnvschedError(f"{argv[0]}: command not found in environment {plan.environment}",
                                code=ExitCode.NOT_FOUND) from None
        raise EnvschedError(f"{argv[0]}: cannot execute in environment {plan.environment}: {e.strerror}",
                            code=ExitCode.EXEC_FAILED) from None


def enter_and_exec(plan: Plan, user: UserInfo, argv: Sequence[str], cwd: Optional[str] = None,
                   unprivileged: bool = False) -> NoReturn:
    cwd = cwd or _getcwd()
    environ = None
    if plan.kind == "user-image":
        # a user's own image is found, mounted and entered as the user (userimage.py)
        if os.geteuid() == 0:
            environ = dict(os.environ, HOME=user.home, USER=user.name, LOGNAME=user.name)
            become_user(user)
        unprivileged = True
        from .userimage import find_user_image
        plan = with_identity(plan, *find_user_image(plan))
    if plan.mount_ops:
        build_view(plan, unprivileged=unprivileged)
    if plan.namespaces:                                  # the job's own pid, ipc, uts (isolation.py)
        isolation.enter_in_process(plan.namespaces)
    finish_and_exec(plan, user, argv, cwd, environ)


def become_user(user: UserInfo) -> None:
    """Root becomes the user for good before touching anything of theirs; the admin log's file
    is closed first (the process becomes the user's to trace: /proc/self is theirs again)."""
    from . import audit
    audit.close()
    drop_privileges(user)
    linux.set_dumpable()


def _getcwd() -> Optional[str]:
    try:
        return os.getcwd()
    except OSError:
        return None
