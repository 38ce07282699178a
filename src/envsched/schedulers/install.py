"""`envsched site-config install`: write an adapter's InstallTargets in place.

For every target: the file's new text (a whole file, or the existing file with envsched's
marked block replaced), a unified diff against what is there, then, once confirmed, a backup
`FILE.envsched-bak.<YYYYmmdd-HHMMSS>` of the old file (same owner and mode) and an atomic
replacement: a temporary file in the same directory, written, owned root:root, given the
target's mode, fsynced and renamed over the file, then the directory fsynced. A file whose text
would not change is left alone (no backup, no write). Missing directories are not created: they
belong to the scheduler's or the plugin's own installation; a directory that is not root's, or is
writable by group or others (or any directory above it), is refused.
"""
from __future__ import annotations

import difflib
import os
import stat
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from .base import InstallTarget, SiteConfigError
from .trust import trusted_walk

BEGIN = "# >>> envsched: written by `envsched site-config install --scheduler {scheduler}`; install again rather than editing"
END = "# <<< envsched"
BACKUP_SUFFIX = ".envsched-bak."


@dataclass(frozen=True)
class Change:
    target: InstallTarget
    old: Optional[str]          # None: the file does not exist
    new: str
    old_meta: Optional[Tuple[int, int, int]] = None     # (uid, gid, mode) of the existing file
    owner: Tuple[int, int] = (0, 0)

    @property
    def changed(self) -> bool:
        return self.old != self.new or self.meta_note() != ""

    def meta_note(self) -> str:
        """What changes in the file's owner or mode, "" if nothing."""
        if self.old_meta is None:
            return ""
        uid, gid, mode = self.old_meta
        notes = []
        if (uid, gid) != self.owner:
            notes.append(f"owner {uid}:{gid} -> {self.owner[0]}:{self.owner[1]}")
        if mode != self.target.mode:
            notes.append(f"mode {mode:04o} -> {self.target.mode:04o}")
        return ", ".join(notes)

    def diff(self) -> str:
        path = self.target.path
        lines = difflib.unified_diff((self.old or "").splitlines(keepends=True), self.new.splitlines(keepends=True),
                                     fromfile=path if self.old is not None else "/dev/null", tofile=path)
        text = "".join(ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n" for ln in lines)
        note = self.meta_note()
        if note:
            text += f"{path}: {note}\n"
        return text


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SiteConfigError(f"{path}: cannot be read: {e.strerror}") from None


def with_block(old: Optional[str], target: InstallTarget, scheduler: str) -> str:
    """`old` with envsched's block set to target.text (removed when the text is empty) and the
    target's legacy lines outside the block removed."""
    lines = (old or "").splitlines()
    begin = BEGIN.format(scheduler=scheduler)
    out: List[str] = []
    where: Optional[int] = None
    inside = False
    for line in lines:
        if inside:
            if line.strip() == END:
                inside = False
            continue
        if line.startswith("# >>> envsched"):
            inside = True
            where = len(out) if where is None else where
            continue
        if target.legacy is not None and target.legacy(line):
            where = len(out) if where is None else where
            continue
        out.append(line)
    if inside:
        raise SiteConfigError(f"{target.path}: envsched's block has no end line ({END!r}): fix the file by hand")
    if target.text.strip():
        block = [begin] + target.text.rstrip("\n").splitlines() + [END]
        if where is None or target.at_end:
            out += block
        else:
            out[where:where] = block
    return "\n".join(out) + "\n" if out else ""


def plan(targets: Sequence[InstallTarget], scheduler: str, owner: Tuple[int, int] = (0, 0),
         trusted_dirs: bool = True) -> List[Change]:
    """What each target's file becomes; `trusted_dirs` (the command's case): only into directories
    root trusts."""
    changes = []
    for t in targets:
        parent = os.path.dirname(t.path) or "/"
        if not os.path.isdir(parent):
            raise SiteConfigError(f"{t.path} ({t.what}): its directory {parent} does not exist: install the "
                                  "plugin and the scheduler first")
        if trusted_dirs:
            why = trusted_walk(parent, want_dir=True)[1]
            if why:
                raise SiteConfigError(f"{t.path} ({t.what}): not written: its directory is not trusted ({why}); "
                                      "others could replace root's file there")
        old = _read(t.path)
        new = t.text if t.kind == "file" else with_block(old, t, scheduler)
        meta = None
        if old is not None:
            st = os.stat(t.path)
            meta = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
        changes.append(Change(t, old, new, meta, owner))
    return changes


def backup_path(path: str, now: Optional[float] = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    candidate = f"{path}{BACKUP_SUFFIX}{stamp}"
    n = 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}{BACKUP_SUFFIX}{stamp}.{n}"
    return candidate


def _write_atomic(path: str, data: bytes, mode: int, owner: Tuple[int, int]) -> None:
    directory = os.path.dirname(path) or "/"
    tmp = os.path.join(directory, f".{os.path.basename(path)}.envsched-tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, *owner)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def apply(changes: Sequence[Change], say: Callable[[str], None] = print,
          now: Optional[float] = None) -> List[str]:
    """Write every changed file (backup first); returns the backups made."""
    backups = []
    for c in changes:
        if not c.changed:
            continue
        path = c.target.path
        if c.old is not None:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                raise SiteConfigError(f"{path}: not a regular file; not replaced")
            bak = backup_path(path, now)
            with open(path, "rb") as f:
                _write_atomic(bak, f.read(), stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid))
            backups.append(bak)
            say(f"{path}: backup {bak}")
        _write_atomic(path, c.new.encode("utf-8", "surrogateescape"), c.target.mode, c.owner)
        say(f"{path}: written ({c.target.what}, mode {c.target.mode:04o})")
    return backups
