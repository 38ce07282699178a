"""Pinned versions of tree environments: a manifest digest the admin stamps, kept next to the policy.

An image carries its own digest; a tree (a directory such as /os/deb12) gets one when the admin
runs `envsched env stamp NAME`: a sha256 over a manifest of everything the view takes from the
tree (`manifest_digest`). Stamps are kept in `<policy dir>/stamps/<NAME>.json`, oldest first,
so several versions can stay side by side: the admin keeps /os/deb12-2026.11 and
/os/deb12-2026.12, points the policy's `path` at the newer one and stamps it; the older stamp
(another path) stays in the history and `deb12@2026.11` or `deb12@sha256:...` finds it for as
long as that directory is still there (`StampBook.still_there`).

Job starts only read the small stamp file (`history`, `current`, `find`); the manifest is
computed again only by `stamp` and `verify`. A tree changed in place after its stamp is not
noticed at job start (that would mean reading the whole tree); `envsched env verify` finds it.
A tree replaced at the same path (a new directory renamed into place) is noticed: its root
directory is another inode than the stamped one (`TreeStamp.root_key`).
"""
from __future__ import annotations

import errno
import os
import stat
import time

from .errors import EnvironmentBroken, EnvschedError, NotPermitted, PolicyError, SetupError, UsageError
from .exitcodes import ExitCode
from .names import NAME_RULE, is_digest, is_valid_name, show
from .records import asdict, dataclass     # dataclasses, without their import cost (#13)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterator, List, Optional, Sequence, Tuple

# (a job start reads stamps: json is imported where they are read, and digests are checked
# with names.is_digest, which answers as these expressions do)
DIGEST_RE = r"sha256:[0-9a-f]{64}"                # full: is_digest(value, full=True)
PREFIX_RE = r"sha256:[0-9a-f]{12,64}"             # a selector's prefix: is_digest(value)
MIN_PREFIX_HEX = 12                      # shortest digest prefix a selector may use
MANIFEST_FORMAT = b"envsched-manifest-1\n"
STAMP_FILE_FORMAT = 1
MAX_STAMP_FILE_BYTES = 4 * 1024 * 1024   # thousands of stamps; anything bigger is not ours
CHUNK = 1 << 20                          # file contents are hashed 1 MiB at a time


class StampError(EnvironmentBroken):
    """The tree cannot be read completely, so it has no digest (exit 69)."""


class AmbiguousVersion(EnvschedError):
    """A digest prefix matches stamps of more than one digest: the request names no one version."""
    code = ExitCode.REFUSED


@dataclass(frozen=True)
class TreeStamp:
    """One stamp of one tree: what `envsched env stamp` recorded."""
    environment: str      # policy name
    digest: str           # "sha256:<64 hex>": the tree's manifest digest
    version: str          # the admin's label, "" if none
    path: str             # the tree that was stamped (realpath)
    stamped: float        # time.time() when stamped
    files: int            # entries in the manifest
    bytes: int            # total size of regular files
    root_key: Tuple[int, int, int]   # (st_dev, st_ino, st_ctime_ns) of the tree's root dir

    @property
    def short(self) -> str:
        """`sha256:` and the first 12 hex digits, for messages and listings."""
        return self.digest[:7 + MIN_PREFIX_HEX]

    def to_dict(self) -> Dict[str, object]:
        d = asdict(self)
        d["root_key"] = list(self.root_key)
        return d

    def to_json(self) -> str:
        import json
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: object) -> "TreeStamp":
        """Strict: exactly the fields, each of its type and grammar, or ValueError."""
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise ValueError("malformed stamp: not an object with the expected fields")
        ints = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        env, digest, version, path = data["environment"], data["digest"], data["version"], data["path"]
        key = data["root_key"]
        if not (isinstance(env, str) and is_valid_name(env)):
            raise ValueError(f"malformed stamp: environment {show(env)}")
        if not (isinstance(digest, str) and is_digest(digest, full=True)):
            raise ValueError(f"malformed stamp: digest {show(digest)}")
        if not (isinstance(version, str) and (version == "" or is_valid_name(version))):
            raise ValueError(f"malformed stamp: version {show(version)}")
        if not (isinstance(path, str) and path.startswith("/") and "\0" not in path and "\n" not in path):
            raise ValueError(f"malformed stamp: path {show(path)}")
        stamped = data["stamped"]
        if not (isinstance(stamped, (int, float)) and not isinstance(stamped, bool) and stamped >= 0
                and stamped == stamped and stamped != float("inf")):
            raise ValueError("malformed stamp: stamped is not a time")
        if not (ints(data["files"]) and ints(data["bytes"]) and data["files"] >= 0 and data["bytes"] >= 0):
            raise ValueError("malformed stamp: files and bytes must be counts")
        if not (isinstance(key, list) and len(key) == 3 and all(ints(k) for k in key)):
            raise ValueError("malformed stamp: root_key must be three integers")
        return cls(env, digest, version, path, float(stamped), data["files"], data["bytes"],
                   (key[0], key[1], key[2]))

    @classmethod
    def from_json(cls, text: str) -> "TreeStamp":
        import json
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise ValueError(f"malformed stamp: not JSON ({e})") from None
        return cls.from_dict(data)


# ------------------------------------------------------------------------------- the manifest
_TYPES = ((stat.S_ISREG, b"F"), (stat.S_ISDIR, b"D"), (stat.S_ISLNK, b"L"), (stat.S_ISCHR, b"C"),
          (stat.S_ISBLK, b"B"), (stat.S_ISFIFO, b"P"), (stat.S_ISSOCK, b"S"))


def _type_of(mode: int) -> bytes:
    for test, letter in _TYPES:
        if test(mode):
            return letter
    return b"?"


def _record(kind: bytes, rel: bytes, st: os.stat_result, *extra: bytes) -> bytes:
    fields = (kind, rel, b"%04o" % stat.S_IMODE(st.st_mode), b"%d" % st.st_uid, b"%d" % st.st_gid) + extra
    return b"".join(f + b"\0" for f in fields) + b"\n"


def manifest_digest(root: str, dirs: Sequence[str]) -> Tuple[str, int, int]:
    """(digest, files, bytes) of the tree at `root` as the view shows it.

    What is covered: every top-level name in `dirs` that exists in the tree (a symbolic link
    such as `bin -> usr/bin` is recorded as a link), and below each directory everything,
    depth-first, each directory's entries in the order of their name bytes; mount points are
    crossed (the view binds the tree's directories recursively). The root directory itself and
    the names of `dirs` that do not exist are not covered: the view shows neither. Times are
    not covered: a copy of a tree (cp -a, rsync -a, an unpacked image) has the same digest.

    Encoding (format 1). The digest is `sha256:` + sha256 over the header line
    `envsched-manifest-1\\n` followed by one record per entry. A record is a sequence of
    fields, each ended by a NUL byte, and the record is ended by a newline after its last
    field's NUL:

        TYPE\\0 PATH\\0 MODE\\0 UID\\0 GID\\0 [EXTRA\\0 ...] \\n      (no spaces; shown apart here)

    TYPE is one letter: F file, D directory, L symbolic link, C/B character/block device,
    P fifo, S socket. PATH is the path relative to the tree's root as raw bytes (`usr/bin/sh`).
    MODE is the permission bits with setuid, setgid and sticky, 4+ octal digits; UID and GID
    decimal. EXTRA by type: F: size (decimal) and sha256 of the content (64 hex); L: the link's
    target as raw bytes; C, B: st_rdev (decimal); D, P, S: nothing. Paths and link targets
    cannot contain NUL, every other field is ASCII digits or hex, and TYPE fixes the number of
    fields, so a byte stream decodes in exactly one way: names with newlines, spaces or
    backslashes cannot make two manifests look alike.

    `files` counts the records, `bytes` adds up the sizes of regular files. Nothing is
    followed out of the tree: every name is opened relative to its parent directory with
    O_NOFOLLOW, and a file or directory that changes type between the listing and the open is
    an error. Anything that cannot be read is an error (StampError, one line naming the path),
    never skipped. Contents are read 1 MiB at a time; a file with several links is hashed once.
    """
    import hashlib        # only stamping hashes: a job start reads stamps and pays nothing for it
    h = hashlib.sha256(MANIFEST_FORMAT)
    files = size = 0
    for record, n in manifest_records(root, dirs):
        h.update(record)
        files += 1
        size += n
    return "sha256:" + h.hexdigest(), files, size


def manifest_records(root: str, dirs: Sequence[str]) -> Iterator[Tuple[bytes, int]]:
    """(record, size of a regular file or 0) for each entry, in manifest order (manifest_digest)."""
    hashed: Dict[Tuple[int, int], bytes] = {}       # (dev, ino) of a hard-linked file -> its sha256
    try:
        rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise StampError(f"{root}: cannot open: {e.strerror}") from None
    try:
        for name in sorted({os.fsencode(d) for d in dirs}):
            if not name or b"/" in name or name in (b".", b".."):
                raise UsageError(f"{root}: {show(name)} is not a top-level directory name")
            yield from _walk(rootfd, root, name, hashed)
    finally:
        os.close(rootfd)


def _walk(rootfd: int, root: str, top: bytes,
          hashed: Dict[Tuple[int, int], bytes]) -> Iterator[Tuple[bytes, int]]:
    """(record, size) for `top` and everything below it; `top` need not exist."""
    try:
        st = os.stat(top, dir_fd=rootfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StampError(f"{_show_path(root, top)}: cannot stat: {e.strerror}") from None
    # a stack of (directory fd, its relative path, names still to visit, in reverse order)
    stack: List[Tuple[int, bytes, List[bytes]]] = []
    try:
        entry = _entry(rootfd, root, top, top, st, hashed)
        yield entry[0], entry[1]
        if entry[2] is not None:
            stack.append(entry[2])
        while stack:
            dfd, rel, names = stack[-1]
            if not names:
                os.close(dfd)
                stack.pop()
                continue
            name = names.pop()
            path = rel + b"/" + name
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except OSError as e:
                raise StampError(f"{_show_path(root, path)}: cannot stat: {e.strerror}") from None
            record, size, child = _entry(dfd, root, name, path, st, hashed)
            yield record, size
            if child is not None:
                stack.append(child)
    finally:
        for dfd, _, _ in stack:
            os.close(dfd)


def _entry(dfd: int, root: str, name: bytes, rel: bytes, st: os.stat_result,
           hashed: Dict[Tuple[int, int], bytes]) -> Tuple[bytes, int, Optional[Tuple[int, bytes, List[bytes]]]]:
    """The record of one entry, its size, and for a directory (its fd, path, names to visit)."""
    kind = _type_of(st.st_mode)
    where = _show_path(root, rel)
    if kind == b"L":
        try:
            target = os.readlink(name, dir_fd=dfd)
        except OSError as e:
            raise StampError(f"{where}: cannot read the link: {e.strerror}") from None
        return _record(kind, rel, st, target), 0, None
    if kind in (b"C", b"B"):
        return _record(kind, rel, st, b"%d" % st.st_rdev), 0, None
    if kind in (b"P", b"S", b"?"):
        if kind == b"?":
            raise StampError(f"{where}: unknown file type (mode {st.st_mode:o})")
        return _record(kind, rel, st), 0, None
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    if kind == b"D":
        flags |= os.O_DIRECTORY
    try:
        fd = os.open(name, flags, dir_fd=dfd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StampError(f"{where}: changed while being read") from None
        raise StampError(f"{where}: cannot open: {e.strerror}") from None
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or _type_of(fst.st_mode) != kind:
            raise StampError(f"{where}: changed while being read")
        if kind == b"D":
            try:
                # os.listdir(fd) gives str (surrogateescape); the order is that of the names' bytes
                names = sorted((os.fsencode(n) for n in os.listdir(fd)), reverse=True)
            except OSError as e:
                raise StampError(f"{where}: cannot list: {e.strerror}") from None
            child = (fd, rel, names)
            fd = -1                                    # the caller's stack owns it now
            return _record(kind, rel, fst), 0, child
        key = (fst.st_dev, fst.st_ino)
        digest = hashed.get(key) if fst.st_nlink > 1 else None
        if digest is None:
            digest, size = _hash_fd(fd, where)
            if size != fst.st_size:
                raise StampError(f"{where}: changed while being read")
            if fst.st_nlink > 1:
                hashed[key] = digest
        return _record(kind, rel, fst, b"%d" % fst.st_size, digest), fst.st_size, None
    finally:
        if fd >= 0:
            os.close(fd)


def _hash_fd(fd: int, where: str) -> Tuple[bytes, int]:
    import hashlib
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    while True:
        try:
            n = os.readv(fd, [buf])
        except OSError as e:
            raise StampError(f"{where}: cannot read: {e.strerror}") from None
        if not n:
            return h.hexdigest().encode(), size
        h.update(view[:n])
        size += n


def _show_path(root: str, rel: bytes) -> str:
    return os.path.join(root, os.fsdecode(rel)).encode("unicode_escape").decode("ascii")


# ------------------------------------------------------------------------------- the stamp book
def stamps_dir(policy_source: str) -> str:
    """Where the stamps of a policy live: `stamps/` beside the policy file."""
    return os.path.join(os.path.dirname(os.path.abspath(policy_source)), "stamps")


def _dir_problem(directory: str) -> Optional[str]:
    """Why `directory` cannot be used or created safely, or None: every directory on its way
    that exists is root's and not writable by group or others (the policy's own rule)."""
    from .pin import run_dir_problem                   # the same walk as site.run_dir's
    problem = run_dir_problem(directory)
    if problem:
        return problem
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return None
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{directory} must be a directory of root's, not writable by group or others"
    return None


def _date(when: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(when))


class StampBook:
    """The stamps of one policy: `<directory>/<NAME>.json` per environment.

    `trusted`: check that a stamp file and every directory above it are root's and not
    writable by group or others before reading it (default: when running as root, as for
    the policy file itself, whose trust checks a non-root caller skips too).
    """

    def __init__(self, directory: str, trusted: Optional[bool] = None) -> None:
        self.directory = directory
        self.trusted = (os.geteuid() == 0) if trusted is None else trusted
        self._cache: Dict[str, List[TreeStamp]] = {}

    def file(self, name: str) -> str:
        if not is_valid_name(name):
            raise UsageError(f"invalid environment name {show(name)} ({NAME_RULE})")
        return os.path.join(self.directory, name + ".json")

    # -- reading (every job start) -------------------------------------------------------
    def history(self, name: str) -> List[TreeStamp]:
        """Every stamp of `name`, newest first; [] if it has none."""
        if name not in self._cache:
            self._cache[name] = list(reversed(self._read(self.file(name), name)))
        return list(self._cache[name])

    def _read(self, path: str, name: str) -> List[TreeStamp]:
        """The stamps in the file, oldest first, or PolicyError (exit 78) naming the file."""
        if not os.path.lexists(path):
            return []
        if self.trusted:
            from .policy.load import check_trusted_path
            check_trusted_path(path, what="stamp file")
        from .policy.load import read_small_file
        try:
            raw = read_small_file(path, MAX_STAMP_FILE_BYTES)
        except PolicyError as e:
            if isinstance(e.__cause__, FileNotFoundError):
                return []                                   # removed since lexists
            raise
        import json
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or set(data) != {"format", "environment", "stamps"}:
                raise ValueError("not an object with the keys format, environment, stamps")
            if data["format"] != STAMP_FILE_FORMAT:
                raise ValueError(f"unknown format {show(data['format'])}")
            if data["environment"] != name or not isinstance(data["stamps"], list):
                raise ValueError(f"not the stamps of {name}")
            stamps = [TreeStamp.from_dict(s) for s in data["stamps"]]
            if any(s.environment != name for s in stamps):
                raise ValueError(f"a stamp of another environment than {name}")
        except (ValueError, RecursionError) as e:
            raise PolicyError(f"{path}: malformed stamp file: {e}") from None
        return stamps

    def live(self, name: str) -> List[TreeStamp]:
        """The stamps that can still name a version, newest first: for each path only its
        newest stamp (an older stamp of the same path describes content that was replaced
        or re-stamped there, so it cannot be run any more)."""
        out, paths = [], set()
        for st in self.history(name):
            if st.path not in paths:
                paths.add(st.path)
                out.append(st)
        return out

    def current(self, env) -> Optional[TreeStamp]:
        """The stamp of the tree the policy points at now: the newest stamp of realpath(env.path),
        if that directory is still the one that was stamped (not replaced since); else None."""
        if getattr(env, "kind", "tree") != "tree":
            return None
        path = os.path.realpath(env.path)
        for st in self.history(env.name):
            if st.path == path:
                return st if self.still_there(st) is None else None
        return None

    def find(self, name: str, selector: str) -> Optional[TreeStamp]:
        """The stamp a request `NAME@SELECTOR` names, or None if this node has none such.

        SELECTOR is a full digest (`sha256:` + 64 hex), a digest prefix of at least 12 hex
        digits, or a version label (exact match). Only live stamps count (the newest of each
        path). Among several matches (a label used twice, one digest at two paths) the newest
        whose tree is still there wins, else the newest (its still_there says why it cannot
        run). A prefix matching stamps of two different digests raises AmbiguousVersion (exit
        77): running either could be the wrong one. A selector that is none of these raises
        UsageError (exit 64)."""
        if selector.startswith("sha256:"):
            if not is_digest(selector):
                raise UsageError(f"{name}@{show(selector, 80)}: a digest is sha256: and at least "
                                 f"{MIN_PREFIX_HEX} of its 64 lowercase hex digits")
            matches = [s for s in self.live(name) if s.digest.startswith(selector)]
            digests = sorted({s.digest for s in matches})
            if len(digests) > 1:
                raise AmbiguousVersion(f"{name}@{selector} is ambiguous: it matches {len(digests)} stamped "
                                       f"versions ({', '.join(d[:7 + 16] for d in digests)}); give more digits")
        elif is_valid_name(selector):
            matches = [s for s in self.live(name) if s.version == selector]
        else:
            raise UsageError(f"{name}@{show(selector)}: not a digest (sha256:...) or a version label ({NAME_RULE})")
        for st in matches:
            if self.still_there(st) is None:
                return st
        return matches[0] if matches else None

    @staticmethod
    def still_there(st: TreeStamp) -> Optional[str]:
        """None if the stamped tree is still at its path (same directory inode), else why not."""
        try:
            now = os.lstat(st.path)
        except FileNotFoundError:
            return f"{st.path} is gone"
        except OSError as e:
            return f"{st.path}: {e.strerror}"
        if not stat.S_ISDIR(now.st_mode):
            return f"{st.path} has been replaced (no longer a directory)"
        if (now.st_dev, now.st_ino) != tuple(st.root_key[:2]):
            return f"{st.path} has been replaced since it was stamped on {_date(st.stamped)}"
        return None

    # -- writing (the admin) -------------------------------------------------------------
    def stamp(self, env, version: str = "") -> TreeStamp:
        """Compute the manifest of env's tree and append the stamp to its file (root only)."""
        if os.geteuid() != 0:
            raise NotPermitted("stamping an environment needs root")
        if getattr(env, "kind", "tree") != "tree":
            raise UsageError(f"{env.name} is an image: images carry their digest; nothing to stamp")
        label = version or getattr(env, "version", "") or ""
        if label and not is_valid_name(label):
            raise UsageError(f"invalid version label {show(label)} ({NAME_RULE})")
        from . import trees
        found = trees.problems(env)
        if found:
            raise EnvironmentBroken(f"{env.name} not stamped: {found[0]}", detail="; ".join(found))
        path = os.path.realpath(env.path)
        before = os.stat(path)
        digest, files, size = manifest_digest(path, env.dirs)
        after = os.stat(path)
        if (before.st_dev, before.st_ino) != (after.st_dev, after.st_ino):
            raise StampError(f"{path} was replaced while being stamped; stamp it again")
        new = TreeStamp(env.name, digest, label, path, time.time(), files, size,
                        (before.st_dev, before.st_ino, before.st_ctime_ns))
        self._append(new)
        return new

    def _append(self, new: TreeStamp) -> None:
        """Add `new` to its file: under an exclusive lock on the directory, a new file written
        beside it, synced and renamed over it, so a reader sees the old file or the new one."""
        import fcntl
        import json
        self._secure_dir()
        dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX)
            path = self.file(new.environment)
            self._cache.pop(new.environment, None)
            old = self._read(path, new.environment)
            text = json.dumps({"format": STAMP_FILE_FORMAT, "environment": new.environment,
                               "stamps": [s.to_dict() for s in old + [new]]}, indent=1, sort_keys=True) + "\n"
            tmp = f".{new.environment}.json.tmp-{os.getpid()}"
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=dfd)
            try:
                try:
                    os.fchmod(fd, 0o644)                        # whatever the umask
                    os.write(fd, text.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, os.path.basename(path), src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=dfd)
                except OSError:
                    pass
                raise
            os.fsync(dfd)
        finally:
            os.close(dfd)                                     # also drops the lock

    def _secure_dir(self) -> None:
        """The stamps directory, root's and 0755, made with any missing parents (root's, 0755)
        once every directory on the way that exists is root's and not writable by others."""
        problem = _dir_problem(self.directory)
        if problem:
            raise PolicyError(f"stamps directory {self.directory}: {problem}")
        missing = []
        d = self.directory
        while not os.path.lexists(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                pass
        st = os.lstat(self.directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise SetupError(f"{self.directory}: must be a directory owned by root and not writable by others")
        for d in missing:
            os.chmod(d, 0o755)                                # whatever the umask

    # -- checking (the admin) ------------------------------------------------------------
    def verify(self, env) -> List[str]:
        """[] if env's tree still has the digest of its current stamp, else one line per problem.
        An image is not a stamped tree: [] (its digest is its own)."""
        if getattr(env, "kind", "tree") != "tree":
            return []
        restamp = f"re-stamp it with `envsched env stamp {env.name}`"
        path = os.path.realpath(env.path)
        latest = next((s for s in self.history(env.name) if s.path == path), None)
        if latest is None:
            return [f"{env.name}: the tree at {env.path} is not stamped: stamp it with "
                    f"`envsched env stamp {env.name}`"]
        gone = self.still_there(latest)
        if gone:
            return [f"{env.name}: {gone}: its stamp {latest.short} no longer applies: {restamp}"]
        try:
            digest, files, _ = manifest_digest(path, env.dirs)
        except EnvschedError as e:
            return [f"{env.name}: {e.message}"]
        if digest != latest.digest:
            return [f"{env.name}: the tree at {env.path} no longer matches its stamp {latest.short} "
                    f"(stamped {_date(latest.stamped)}): {restamp}"]
        return []
