"""The decision cache (#13): a decision written down with every input it was made from, so that a
shim finding the same inputs again applies it without starting the resolver. No daemon.

Python stays the only place that decides. After `envsched prepare` decided a job's environment and
pinned its view as a shared one (sharedviews.py), it writes here what a C shim needs to tell that
a new job would get exactly the same decision, and what to apply then:

  <run_dir>/.decisions/            root, 0700
  <run_dir>/.decisions/<fnv64>     root, 0600, one entry per distinct request; <fnv64> is the
                                   FNV-1a hash of the shim's inputs line (which the entry holds in
                                   full: a collision is a miss, never another request's decision)

An entry is tab-separated lines; the C reader (plugins/common/es_cache.c) checks each before it
applies anything, and anything it does not know, cannot check or finds changed is a miss (the
resolver runs, decides anew and writes the entry again):

  envsched-decision 1
  inputs  TEXT                     the shim's inputs line: user, request, CHOS, partition, account,
                                   the shim's configuration (config=, its binds' hash)
  same    S|L PATH DEV INO MODE UID GID SIZE MTIME_NS CTIME_NS
                                   stat (S) or lstat (L) of PATH: all of it unchanged (the policy
                                   file: edited, replaced or touched is a miss)
  owner   PATH DEV INO MODE UID GID
                                   lstat: the same object with the same owner and mode (the
                                   directories above the policy, a tree's top directories)
  absent  PATH                     lstat: still nothing there (a stamp file, a tree directory)
  user    UID GID NAME HOME        the passwd entry as the node's NSS gives it now
  groups  GID:NAME,...             every group of the user, by gid (names: the policy's rules)
  userfile PATH - | absent | value V
                                   ~/.chos as read as the user: not read (the job named its
                                   environment), absent, or its first line V
  view    VID | -                  the shared view to bind (sharedviews.py), or none (host OS)
  env     NAME SOURCE DIGEST|-     for the admin log
  plan    JSON                     the job pin's plan.json
  shim    LINE                     the shim's protocol lines (shim.py) after `reused`, in order
  end

An image from the admins' store records the store's directories, NAME's version list, the
version's record and its blob: an import, a removal, `image verify` or a tampered blob is a miss.

What is never cached (the resolver decides every time): a fallback (on_error = "default"), a
user's own image, GPUs or devices (the node's devices), isolation namespaces, node hooks and
writable layers (no shared view). A policy edit is a miss for every
entry at once (its `same` line), and `envsched gc` removes the entries of other policy versions.
"""
from __future__ import annotations

import json
import os
import stat
import time

from .errors import DISK_FULL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Sequence

    from .identity import UserInfo
    from .plan import Plan
    from .resolve import Decision
    from .userfile import UserFile

DECISIONS = ".decisions"
HEADER = "envsched-decision 1"
MAX_ENTRIES = 4096          # a node keeps at most this many; gc drops the oldest beyond


def fnv1a64(text: str) -> str:
    """The entry's file name: FNV-1a (64 bit) of the inputs line, as es_cache.c computes it."""
    h = 0xcbf29ce484222325
    for byte in text.encode("utf-8", "surrogateescape"):
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _clean(*texts: str) -> bool:
    return all("\t" not in t and "\n" not in t and "\r" not in t and "\0" not in t for t in texts)


def _same(kind: str, path: str) -> str:
    st = os.stat(path) if kind == "S" else os.lstat(path)
    return "\t".join(["same", kind, path] + [str(v) for v in (st.st_dev, st.st_ino, st.st_mode, st.st_uid,
                                                             st.st_gid, st.st_size, st.st_mtime_ns,
                                                             st.st_ctime_ns)])


def _owner_or_absent(path: str) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return f"absent\t{path}"
    return "\t".join(["owner", path] + [str(v) for v in (st.st_dev, st.st_ino, st.st_mode, st.st_uid,
                                                          st.st_gid)])


def _same_or_absent(path: str) -> str:
    try:
        return _same("L", path)
    except FileNotFoundError:
        return f"absent\t{path}"


def _ancestors(path: str) -> List[str]:
    out, current = [], os.path.dirname(path)
    while True:
        out.append(current)
        if current == "/":
            return out
        current = os.path.dirname(current)


def common_lines(header: str, policy_source: str, inputs: str, user: UserInfo,
                 user_file: Optional[UserFile]) -> Optional[List[str]]:
    """The checks every entry starts with (this cache's and submitcache.py's): the inputs line, the
    policy, the user, their groups and ~/.chos as it was read (None: not read, the request named
    the environment); None when one of them cannot be written down (a tab or newline in a name,
    ~/.chos unreadable: the resolver judges those every time)."""
    policy = os.path.abspath(policy_source)
    if any(c in inputs for c in "\n\r\0"):
        return None
    texts = [policy, user.name, user.home]
    if user_file is not None:
        texts += [user_file.path, user_file.value or ""]
        if user_file.error is not None:
            return None
    if not _clean(*texts) or any(not _clean(g) or "," in g or ":" in g for g in user.groups):
        return None
    lines = [header, f"inputs\t{inputs}", _same("S", policy)]
    lines += [_owner_or_absent(p) for p in [policy] + _ancestors(policy)]
    lines.append(f"user\t{user.uid}\t{user.gid}\t{user.name}\t{user.home}")
    pairs = sorted(set(zip(user.gids, user.groups)))
    lines.append("groups\t" + ",".join(f"{gid}:{name}" for gid, name in pairs))
    if user_file is None:
        lines.append("userfile\t-\t-")
    elif user_file.value is None:
        lines.append(f"userfile\t{user_file.path}\tabsent")
    else:
        lines.append(f"userfile\t{user_file.path}\tvalue\t{user_file.value}")
    return lines


def write_whole(path: str, lines: Sequence[str], run_dir: str = "") -> None:
    """`lines` into `path`, mode 0600, atomically: a reader sees the old file or the new one, whole.
    `run_dir`: the node's (the decision cache), for its fault points (faults.py)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        if run_dir:
            from . import faults
            faults.point(run_dir, "cache-before-write")
        os.rename(tmp, path)
        if run_dir:
            faults.point(run_dir, "cache-written")
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_owned(owner: int, directory: str, inputs: str, lines: Sequence[str]) -> None:
    """As `owner` (the caches kept in a home: a user's, root's): directory/<fnv64 of inputs>,
    atomically (write_whole); quietly nothing where it cannot be kept (a full or read-only home, a
    directory not the owner's alone, another effective user)."""
    if os.geteuid() != owner:
        return
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
        if st.st_uid != owner or st.st_mode & 0o077:
            return
        write_whole(os.path.join(directory, fnv1a64(inputs)), lines)
    except OSError:
        return


def entry_lines(policy_source: str, inputs: str, user: UserInfo, user_file: Optional[UserFile],
                decision: Decision, plan: Plan, view: Optional[str], shim: Sequence[str],
                image_dir: str = "") -> Optional[List[str]]:
    """The entry for this decision, or None when it must not be cached (see the module's list).
    Reads what it records now, after the decision: a change in between is a miss, never a wrong hit.
    `image_dir`: the admins' image store (site.image_dir), for an image's records."""
    env = decision.environment
    if decision.warning or decision.source is None:
        return None
    if env is not None and (env.gpus or env.devices or env.host_devices or view is None or env.kind == "user-image"
                            or (env.kind != "tree" and not env.image) or (env.image and not plan.digest)):
        return None
    if env is None and (plan.mount_ops or view is not None):
        return None
    if not _clean(decision.name, decision.source, plan.source, *shim):
        return None
    lines = common_lines(HEADER, policy_source, inputs, user, user_file)
    if lines is None:
        return None
    if env is not None and env.image:
        lines += _image_lines(image_dir, env.image.partition("@")[0], plan)
    elif env is not None:
        lines.append(_same("S", plan.source))
        lines += [_owner_or_absent(os.path.join(plan.source, d)) for d in env.dirs]
        lines += stamp_lines(policy_source, env.name)
    lines.append(f"view\t{view or '-'}")
    lines.append(f"env\t{decision.name}\t{decision.source}\t{plan.digest or '-'}")
    lines.append("plan\t" + json.dumps(json.loads(plan.to_json()), separators=(",", ":")))
    lines += [f"shim\t{line}" for line in shim]
    lines.append("end")
    return lines


def stamp_lines(policy_source: str, name: str) -> List[str]:
    """What versions.py's StampBook reads for environment `name`: the stamps directory beside the
    policy and the environment's stamp file, each unchanged or still absent."""
    from .versions import stamps_dir
    stamps = stamps_dir(policy_source)
    return [_same_or_absent(stamps), _same_or_absent(os.path.join(stamps, f"{name}.json"))]


def _image_lines(image_dir: str, name: str, plan: Plan) -> List[str]:
    """What chosen.py read of the image store for this version (images/store.py: lookup and
    check_unchanged): the store's directories (owners and modes), NAME's version list, the
    version's record and its blob, all unchanged."""
    from .images.store import ImageStore
    store = ImageStore(image_dir)
    top = os.path.abspath(image_dir)
    lines = [_owner_or_absent(p) for p in [top] + _ancestors(top)]
    lines += [_owner_or_absent(os.path.join(top, sub)) for sub in ImageStore._SUBDIRS]
    lines += [_same("L", store.names_path(name)), _same("L", store.meta_path(plan.digest)), _same("S", plan.source)]
    return lines


class DecisionCache:
    def __init__(self, run_dir: str) -> None:
        self.dir = os.path.join(run_dir, DECISIONS)

    def path(self, inputs: str) -> str:
        return os.path.join(self.dir, fnv1a64(inputs))

    def write(self, inputs: str, lines: Sequence[str]) -> None:
        """Atomically (a reader sees the old entry or the new one, whole), root's alone."""
        try:
            os.mkdir(self.dir, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(self.dir)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
            return                                      # not ours alone: no cache (es_cache.c agrees)
        try:
            write_whole(self.path(inputs), lines, os.path.dirname(self.dir))
        except OSError as e:                            # run_dir full: no entry (write_whole left
            if e.errno not in DISK_FULL:                # no part of one); the job goes on
                raise

    def forget(self, inputs: str) -> None:
        try:
            os.unlink(self.path(inputs))
        except FileNotFoundError:
            pass

    def gc(self, policy_source: str) -> List[str]:
        """Remove the entries made under another version of the policy (their `same` line of it no
        longer matches), half-written ones, and the oldest beyond MAX_ENTRIES."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        try:
            current = _same("S", os.path.abspath(policy_source))
        except OSError:
            current = None
        removed, kept = [], []
        for name in names:
            path = os.path.join(self.dir, name)
            try:
                with open(path) as f:
                    head = [f.readline().rstrip("\n") for _ in range(3)]
                when = os.lstat(path).st_mtime
            except (OSError, UnicodeDecodeError):
                head, when = ["", "", ""], 0.0
            if name.endswith(".tmp"):
                if time.time() - when < 60 and _writer_alive(name):
                    continue                            # being written now
            elif head[:1] == [HEADER] and head[2] == current:
                kept.append((when, name))
                continue
            try:
                os.unlink(path)
                removed.append(name)
            except FileNotFoundError:
                pass
        for _, name in sorted(kept)[:max(0, len(kept) - MAX_ENTRIES)]:
            try:
                os.unlink(os.path.join(self.dir, name))
                removed.append(name)
            except FileNotFoundError:
                pass
        return removed


def _writer_alive(tmp_name: str) -> bool:
    """Is the writer of `<entry>.<pid>.tmp` (write_whole) still there? A writer killed half way
    (#15) leaves its file to the next gc at once, not after a minute."""
    pid = tmp_name.rsplit(".", 2)[-2] if tmp_name.count(".") >= 2 else ""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True
