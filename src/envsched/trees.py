"""Checks that an environment's tree or image can be trusted and used.

Run before every entry (fail closed) and by `envsched check`. A tree must be a directory
owned by root and not writable by group or others, and so must each top-level directory the
view takes from it; an image file the same. `problems()` lists every issue (for check);
`require_usable()` raises on the first (for entry).
"""
from __future__ import annotations

import os
import stat

from .errors import EnvironmentBroken

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Sequence

    from .policy.model import Environment


def _owner_mode_problem(path: str, st: os.stat_result) -> List[str]:
    out = []
    if st.st_uid != 0:
        out.append(f"{path}: owned by uid {st.st_uid}, not root")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not stat.S_ISLNK(st.st_mode):
        out.append(f"{path}: writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")
    return out


def problems(env: Environment, deep: bool = False, identity_files: Sequence[str] = ()) -> List[str]:
    """Every reason the environment cannot be used, one line each (empty = usable)."""
    try:
        st = os.stat(env.path)
    except OSError as e:
        return [f"{env.path}: {e.strerror}"]
    out = _owner_mode_problem(env.path, st)
    if env.kind == "image" and stat.S_ISREG(st.st_mode):
        return out
    if not stat.S_ISDIR(st.st_mode):
        return out + [f"{env.path}: not a directory" + (" or image file" if env.kind == "image" else "")]
    found = 0
    for name in env.dirs:
        path = os.path.join(env.path, name)
        try:
            lst = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            out.append(f"{path}: {e.strerror}")
            continue
        found += 1
        if stat.S_ISLNK(lst.st_mode):
            continue
        if not stat.S_ISDIR(lst.st_mode):
            out.append(f"{path}: not a directory")
            continue
        out += _owner_mode_problem(path, lst)
    if found == 0:
        out.append(f"{env.path}: none of the environment's directories exist ({', '.join(env.dirs)})")
    if deep:
        out += _deep_checks(env, identity_files)
    return out


def _deep_checks(env: Environment, identity_files: Sequence[str]) -> List[str]:
    """What `envsched check` adds: the view would actually work."""
    out = []
    root = env.path
    for want in ("bin/sh", "etc/os-release"):
        path = os.path.join(root, want)
        if not os.path.lexists(path):
            out.append(f"{path}: missing (the environment needs a shell and an os-release)")
    for host_path in identity_files:
        top = host_path.strip("/").split("/", 1)[0]
        if top not in env.dirs or not os.path.exists(host_path):
            continue                      # the view's copy comes from the host or nowhere
        p = os.path.join(root, host_path.lstrip("/"))
        if os.path.islink(p):
            out.append(f"{p}: is a symbolic link; the host's {host_path} cannot be bound over it")
        elif not os.path.exists(p):
            out.append(f"{p}: missing; the host's {host_path} cannot be bound (create an empty file)")
    return out


def require_usable(env: Environment) -> None:
    found = problems(env)
    if found:
        raise EnvironmentBroken(f"environment {env.name} is not usable: {found[0]}",
                                detail="; ".join(found))
