"""The C shims' trust rules, in Python, for `envsched doctor`.

trusted_walk/trusted_program follow plugins/common/es_run.c (es_trusted_program): the path is
resolved component by component as the kernel does; "/" and every directory crossed must be
root's and not writable by group or others; a symbolic link must be root's and is followed (its
target judged the same way); the file itself must be root's, not writable by group or others, and
a regular file; a "#!" interpreter is judged the same way (and `#!/usr/bin/env NAME`'s NAME, looked
up in the clean PATH the shims give the resolver). setuid_problem adds what a set-user-ID program
needs to work at all (the bit, root's, not on a nosuid mount).
"""
from __future__ import annotations

import os
import stat
from typing import Optional, Tuple

CLEAN_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")       # es_run.c: ES_CLEAN_PATH
MAX_LINKS = 40
MAX_INTERP = 4
SHEBANG_MAX = 256


def _untrusted(st: os.stat_result) -> bool:
    return st.st_uid != 0 or bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def trusted_walk(path: str, want_dir: bool = False) -> Tuple[Optional[str], Optional[str]]:
    """(the resolved path, None) or (None, why it is not trusted)."""
    if not path.startswith("/"):
        return None, f"{path}: not an absolute path"
    try:
        if _untrusted(os.lstat("/")):
            return None, "/: must be owned by root and not writable by group or others"
    except OSError as e:
        return None, f"/: {e.strerror}"
    rest = [p for p in path.split("/") if p]
    cur = ""
    links = 0
    st_mode = stat.S_IFDIR
    while rest:
        comp = rest.pop(0)
        if comp == ".":
            continue
        if comp == "..":
            cur = cur.rsplit("/", 1)[0] if "/" in cur else ""
            continue
        nxt = f"{cur}/{comp}"
        try:
            st = os.lstat(nxt)
        except OSError as e:
            return None, f"{nxt}: {e.strerror}"
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid != 0:
                return None, f"{nxt}: a symbolic link not owned by root"
            links += 1
            if links > MAX_LINKS:
                return None, f"{path}: too many levels of symbolic links"
            target = os.readlink(nxt)
            rest = [p for p in target.split("/") if p] + rest
            if target.startswith("/"):
                cur = ""
            st_mode = stat.S_IFDIR
            continue
        if _untrusted(st):
            return None, f"{nxt}: must be owned by root and not writable by group or others"
        if rest and not stat.S_ISDIR(st.st_mode):
            return None, f"{nxt}: Not a directory"
        cur = nxt
        st_mode = st.st_mode
    cur = cur or "/"
    if want_dir and not stat.S_ISDIR(st_mode):
        return None, f"{cur}: not a directory"
    if not want_dir and not stat.S_ISREG(st_mode):
        return None, f"{cur}: not a regular file"
    return cur, None


def _shebang(real: str) -> Tuple[Optional[str], str, Optional[str]]:
    """(interpreter or None for a binary, its argument, error)."""
    try:
        with open(real, "rb") as f:
            head = f.read(SHEBANG_MAX)
    except OSError as e:
        return None, "", f"{real}: {e.strerror}"
    if not head.startswith(b"#!"):
        return None, "", None
    if b"\n" not in head:
        return None, "", f'{real}: its "#!" line is longer than {SHEBANG_MAX} bytes'
    line = head.split(b"\n", 1)[0][2:].decode("utf-8", "replace").strip(" \t\r")
    if not line:
        return None, "", f'{real}: no usable interpreter on its "#!" line'
    interp, _, arg = line.replace("\t", " ").partition(" ")
    return interp, arg.strip(" \t\r"), None


def trusted_program(path: str, _depth: int = 0) -> Optional[str]:
    """None when root may run `path` (es_run.c's rule), else why not."""
    real, why = trusted_walk(path)
    if real is None:
        return why
    interp, arg, err = _shebang(real)
    if err:
        return err
    if interp is None:
        return None
    if _depth >= MAX_INTERP:
        return f"{path}: interpreters nested deeper than {MAX_INTERP}"
    if not interp.startswith("/"):
        return f"{path}: its interpreter {interp} is not an absolute path"
    why = trusted_program(interp, _depth + 1)
    if why:
        return f"its interpreter {interp}: {why}"
    if os.path.basename(interp) != "env":
        return None
    if not arg or arg.startswith("-") or " " in arg or "\t" in arg:
        return f'{path}: "#!{interp} {arg}" cannot be judged: name the interpreter by its absolute path'
    if "/" in arg:
        if not arg.startswith("/"):
            return f"{path}: its interpreter {arg} is not an absolute path"
        found = arg
    else:
        found = next((os.path.join(d, arg) for d in CLEAN_PATH if os.access(os.path.join(d, arg), os.X_OK)), "")
        if not found:
            return f"{path}: its interpreter {arg} is not in {':'.join(CLEAN_PATH)}"
    why = trusted_program(found, _depth + 1)
    return f"its interpreter {found}: {why}" if why else None


def trusted_file(path: str) -> Optional[str]:
    """None when `path` is a regular file root trusts (es_trust.c: root's, not writable by
    group or others, nor is any directory above it), else why not."""
    return trusted_walk(path)[1]


def setuid_problem(path: str) -> Optional[str]:
    """None when `path` works as a set-user-ID root program, else why it does not."""
    real, why = trusted_walk(path)
    if real is None:
        return why
    st = os.stat(real)
    if not st.st_mode & stat.S_ISUID:
        return f"{real} is not set-user-ID (mode {stat.S_IMODE(st.st_mode):04o})"
    if not st.st_mode & stat.S_IXOTH:
        return f"{real} is not executable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    try:
        if os.statvfs(real).f_flag & os.ST_NOSUID:
            return f"{real} is on a file system mounted nosuid: its set-user-ID bit has no effect"
    except OSError as e:
        return f"{real}: {e.strerror}"
    return None
