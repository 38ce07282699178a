"""The node's image store: squashfs blobs named by their own sha256, a record per blob, and
a list of versions per name.

    <root>/blobs/sha256/<hex>.sqfs   the image, root 0644; <hex> is the sha256 of the file
    <root>/meta/sha256/<hex>.json    its ImageRecord
    <root>/names/<NAME>.json         {"name": NAME, "versions": ["sha256:<hex>", ...]}, newest first
    <root>/.tmp/                     staging for imports, 0700 (gc removes what is left)
    <root>/.lock                     flock taken by import (to commit), rm, gc and verify (to refresh)

Every change is a write to a new file and an atomic rename, so a reader (a job start calling
lookup()) takes no lock and sees either the old or the new state. Whatever is read is trusted
only if it is root's and not writable by group or others, and so must be every directory from
/ down to the store (like site.run_dir). A record names its blob's stat at import
(`stat_key`); check_unchanged() compares it at every job start, and verify() re-hashes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import stat
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Collection, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import EnvironmentBroken, EnvschedError, NotPermitted, UsageError
from ..exitcodes import ExitCode
from ..names import NAME_RULE, is_valid_name, show

if TYPE_CHECKING:        # the import pipeline (subprocess, hashlib, ...) is loaded by import_image only:
    from .importer import Built     # a job start, which only looks up, does not pay for it

DEFAULT_IMAGE_DIR = "/var/lib/envsched/images"
DIGEST_RE = r"sha256:[0-9a-f]{64}"
_DIGEST = re.compile(DIGEST_RE + r"\Z")
_DIGEST_REF = re.compile(r"(?:sha256:)?([0-9a-f]{12,64})\Z")
MIN_PREFIX = 12
MAX_META = 1 << 20              # a names or meta file larger than this is not ours
STAGING_GRACE = 60.0            # seconds a staging dir without its lock file may be starting up
LOOP_SYSFS = "/sys/block"
FORMATS = ("oci-layout", "oci-archive", "docker-archive", "rootfs-tar", "directory", "squashfs")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ImportFailed(EnvschedError):
    """An import could not be done: a bad source (69), or a bad name or usage (64)."""
    code = ExitCode.ENV_BROKEN


class ImageNotFound(EnvironmentBroken):
    """The image (or that version of it) is not in this node's store."""


class ImageChanged(EnvironmentBroken):
    """The blob's stat no longer matches the one recorded at import or the last verify."""


class ImageInUse(NotPermitted):
    """A version cannot be removed: a job's view has it mounted, or the policy names it."""


def env_entry_problem(entry: object) -> Optional[str]:
    """Why `entry` is not a usable "NAME=value" environment entry, or None."""
    if not isinstance(entry, str):
        return "is not a string"
    if "\0" in entry or "\n" in entry:
        return "contains a NUL or newline"
    name, sep, _ = entry.partition("=")
    if not sep or not ENV_NAME_RE.match(name):
        return "is not NAME=value with a valid variable name"
    return None


def short(digest: str) -> str:
    """sha256:<12 hex>, for messages."""
    return digest[:7 + MIN_PREFIX]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class ImageRecord:
    name: str                       # store name (names.is_valid_name grammar)
    digest: str                     # "sha256:<hex>" of the squashfs file: its identity
    path: str                       # absolute path of the blob
    size: int                       # bytes of the blob
    source: str                     # what was imported, as given
    source_format: str              # one of FORMATS
    source_digest: str              # the OCI manifest digest when there is one, else ""
    env: Tuple[str, ...]            # the image config's Env, "K=V", in order
    workdir: str                    # the image config's WorkingDir ("" if none)
    created: str                    # the image config's created (RFC 3339, "" if none)
    imported: float                 # time.time() of the import
    stat_key: Tuple[int, int, int, int]   # (st_ino, st_size, st_mtime_ns, st_ctime_ns) of the blob

    def to_json(self) -> str:
        data = asdict(self)
        data["env"] = list(self.env)
        data["stat_key"] = list(self.stat_key)
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ImageRecord":
        """What to_json wrote, or ValueError: every field present with its type and grammar."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("malformed image record: nested too deeply") from None
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != fields:
            raise ValueError("malformed image record: not an object with the expected fields")
        strs = ("name", "digest", "path", "source", "source_format", "source_digest", "workdir", "created")
        if not all(isinstance(data[k], str) for k in strs):
            raise ValueError("malformed image record: a text field is not a string")
        if not is_valid_name(data["name"]):
            raise ValueError(f"malformed image record: name {show(data['name'])}")
        if not _DIGEST.match(data["digest"]):
            raise ValueError(f"malformed image record: digest {show(data['digest'])}")
        if data["source_digest"] and not _DIGEST.match(data["source_digest"]):
            raise ValueError(f"malformed image record: source_digest {show(data['source_digest'])}")
        if not os.path.isabs(data["path"]) or "\0" in data["path"]:
            raise ValueError("malformed image record: path is not absolute")
        if data["source_format"] not in FORMATS:
            raise ValueError(f"malformed image record: source_format {show(data['source_format'])}")
        if not _is_int(data["size"]) or data["size"] < 0:
            raise ValueError("malformed image record: size is not a byte count")
        if not isinstance(data["imported"], (int, float)) or isinstance(data["imported"], bool):
            raise ValueError("malformed image record: imported is not a time")
        if not isinstance(data["env"], list):
            raise ValueError("malformed image record: env is not a list")
        for entry in data["env"]:
            problem = env_entry_problem(entry)
            if problem:
                raise ValueError(f"malformed image record: env entry {show(entry)} {problem}")
        for k in ("workdir", "created", "source"):
            if "\n" in data[k] or "\0" in data[k]:
                raise ValueError(f"malformed image record: {k} contains a NUL or newline")
        key = data["stat_key"]
        if not isinstance(key, list) or len(key) != 4 or not all(_is_int(v) for v in key):
            raise ValueError("malformed image record: stat_key is not four integers")
        data["env"] = tuple(data["env"])
        data["stat_key"] = tuple(key)
        return cls(**data)


def stat_key(st: os.stat_result) -> Tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def dir_chain_problem(path: str, owner: int = 0) -> Optional[str]:
    """Why the directory `path` cannot be trusted or created safely, or None: it and every
    directory above it that exists must be root's (or `owner`'s) and not writable by group or
    others (a symbolic link of theirs is followed, anyone else's refused); missing ones are
    created."""
    cur = "/"
    for part in [p for p in path.split("/") if p]:
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid not in (0, owner):
                return f"{cur} is a symbolic link of uid {st.st_uid}'s"
            return dir_chain_problem(os.path.join(os.path.realpath(cur), os.path.relpath(path, cur)), owner)
        if not stat.S_ISDIR(st.st_mode):
            return f"{cur} is not a directory"
        if st.st_uid not in (0, owner) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{cur} must be a directory of {_whose(owner)}, not writable by group or others"
    return None


def _whose(owner: int) -> str:
    return "root's" if owner == 0 else f"root's or uid {owner}'s"


def _hash_file(path: str) -> Tuple[str, os.stat_result]:
    """sha256:<hex> of a file and its fstat, read through one descriptor."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return "sha256:" + h.hexdigest(), st


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: str, text: str) -> None:
    """`path` replaced by a file holding `text` (root 0644), durably: temp file, fsync, rename."""
    import tempfile
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(d)


def loop_backing_files() -> List[str]:
    """The backing file of every attached loop device (as the kernel names it)."""
    out = []
    try:
        devices = [d for d in os.listdir(LOOP_SYSFS) if d.startswith("loop")]
    except OSError:
        return out
    for d in devices:
        try:
            with open(os.path.join(LOOP_SYSFS, d, "loop", "backing_file")) as fh:
                out.append(fh.read().rstrip("\n"))
        except OSError:
            continue                      # not attached
    return out


class ImageStore:
    """The admins' store (owner 0, the default), or with `owner=UID` a user's own store: then
    everything in it must be that user's, and only that user changes it (import as the user
    is rootless: umoci --rootless, tar without ownership)."""

    def __init__(self, root: str = DEFAULT_IMAGE_DIR, *, owner: int = 0) -> None:
        self.root = os.path.abspath(root)
        self.owner = owner

    def _untrusted(self, st: os.stat_result) -> bool:
        """Not the owner's (root's in the admins' store), or writable by group or others."""
        return st.st_uid != self.owner or bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))

    # -- paths -----------------------------------------------------------------------------
    def blob_path(self, digest: str) -> str:
        return os.path.join(self.root, "blobs", "sha256", digest.split(":", 1)[1] + ".sqfs")

    def meta_path(self, digest: str) -> str:
        return os.path.join(self.root, "meta", "sha256", digest.split(":", 1)[1] + ".json")

    def names_path(self, name: str) -> str:
        return os.path.join(self.root, "names", name + ".json")

    _SUBDIRS = ("blobs", "blobs/sha256", "meta", "meta/sha256", "names", ".tmp")

    def problem(self) -> Optional[str]:
        """Why the store cannot be trusted, or None (a store that does not exist yet is fine)."""
        found = dir_chain_problem(self.root, self.owner)
        if found:
            return found
        for sub in self._SUBDIRS:
            p = os.path.join(self.root, sub)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode) or self._untrusted(st):
                return f"{p} must be a directory of {self._whom()}, not writable by group or others"
        return None

    def _require_trusted(self) -> None:
        found = self.problem()
        if found:
            raise EnvironmentBroken(f"image store {self.root} cannot be trusted: {found}")

    def _ensure_layout(self) -> None:
        self._require_trusted()
        parts = [p for p in self.root.split("/") if p]
        chain = ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        for d in chain + [os.path.join(self.root, s) for s in self._SUBDIRS]:
            try:
                os.mkdir(d, 0o700)                # each one made here, whatever the umask
            except FileExistsError:
                continue
            if os.geteuid() == 0:
                os.chown(d, self.owner, -1 if self.owner else 0)
            os.chmod(d, 0o700 if d.endswith("/.tmp") else 0o755)
        self._require_trusted()

    def _read_trusted(self, path: str) -> str:
        """A small file of root's, not writable by group or others, read without following a link."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or self._untrusted(st):
                raise EnvironmentBroken(f"{path} must be a file of {self._whom()}, not writable by group or others")
            data = f.read(MAX_META + 1)
        if len(data) > MAX_META:
            raise EnvironmentBroken(f"{path} is larger than {MAX_META} bytes")
        return data.decode("utf-8", "replace")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(os.path.join(self.root, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _whom(self) -> str:
        return "root's" if self.owner == 0 else f"uid {self.owner}'s"

    def _require_root(self, what: str) -> None:
        """Only the store's owner changes it: root for the admins' store."""
        if os.geteuid() != self.owner:
            raise NotPermitted(f"{what} needs root" if self.owner == 0 else f"{what}: only uid {self.owner} "
                               f"changes this store")

    # -- reading ---------------------------------------------------------------------------
    def names(self) -> List[str]:
        self._require_trusted()
        try:
            entries = os.listdir(os.path.join(self.root, "names"))
        except FileNotFoundError:
            return []
        return sorted(e[:-5] for e in entries if e.endswith(".json") and is_valid_name(e[:-5]))

    def _version_list(self, name: str) -> Optional[List[str]]:
        """NAME's digests, newest first; None when the store has no such name."""
        try:
            text = self._read_trusted(self.names_path(name))
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
        if (not isinstance(data, dict) or set(data) != {"name", "versions"} or data["name"] != name
                or not isinstance(data["versions"], list)
                or not all(isinstance(v, str) and _DIGEST.match(v) for v in data["versions"])
                or len(set(data["versions"])) != len(data["versions"])):
            raise EnvironmentBroken(f"image store: {self.names_path(name)} is malformed")
        return list(data["versions"])

    def _record(self, name: str, digest: str) -> ImageRecord:
        """The record of one of NAME's versions, checked to describe that blob in this store."""
        path = self.meta_path(digest)
        try:
            rec = ImageRecord.from_json(self._read_trusted(path))
        except FileNotFoundError:
            raise ImageNotFound(f"image {name}@{short(digest)}: its record {path} is missing "
                                f"(envsched image verify {name})") from None
        except ValueError as e:
            raise EnvironmentBroken(f"image {name}@{short(digest)}: {path}: {e}") from None
        if rec.digest != digest or rec.path != self.blob_path(digest):
            raise EnvironmentBroken(f"image {name}@{short(digest)}: {path} describes another blob")
        return rec if rec.name == name else dataclasses.replace(rec, name=name)

    def versions(self, name: str) -> List[ImageRecord]:
        """NAME's versions newest first ([] if unknown); one whose record is unreadable is left
        out here and reported by verify()."""
        if not is_valid_name(name):
            return []
        self._require_trusted()
        out = []
        for d in self._version_list(name) or []:
            try:
                out.append(self._record(name, d))
            except EnvschedError:
                continue
        return out

    def _resolve(self, name: str, digests: List[str], ref: str) -> str:
        """The one of `digests` that `ref` (a full digest or a prefix of 12+ hex digits) names."""
        m = _DIGEST_REF.match(ref)
        if not m:
            raise ImageNotFound(f"image {show(name + '@' + ref, 90)}: not a digest "
                                f"(sha256: and at least {MIN_PREFIX} hex digits)")
        hits = [d for d in digests if d[7:].startswith(m.group(1))]
        if not hits:
            shown = f"{name}@sha256:{m.group(1)[:MIN_PREFIX]}…"
            raise ImageNotFound(f"image '{shown}' is not on this node (envsched image list)")
        if len(hits) > 1:
            raise ImageNotFound(f"image {name}@sha256:{m.group(1)} is ambiguous: it starts {len(hits)} "
                                f"versions (give more digits)")
        return hits[0]

    def lookup(self, name: str, digest: Optional[str] = None) -> ImageRecord:
        """NAME's current version, or the version `digest` names. Two small reads, no lock, no
        hashing: a job start calls this."""
        if not is_valid_name(name):
            raise ImageNotFound(f"image name {show(name)} is not valid ({NAME_RULE})")
        self._require_trusted()
        versions = self._version_list(name)
        if not versions:
            raise ImageNotFound(f"image '{name}' is not on this node (envsched image list)")
        chosen = versions[0] if digest is None else self._resolve(name, versions, digest)
        return self._record(name, chosen)

    def check_unchanged(self, rec: ImageRecord) -> None:
        """The blob is still the file that was imported (or last verified): one stat."""
        try:
            st = os.stat(rec.path)
        except FileNotFoundError:
            raise ImageNotFound(f"image {rec.name}@{short(rec.digest)}: {rec.path} is missing "
                                f"(envsched image verify {rec.name})") from None
        except OSError as e:
            raise EnvironmentBroken(f"image {rec.name}@{short(rec.digest)}: {rec.path}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode) or self._untrusted(st):
            raise EnvironmentBroken(f"image {rec.name}@{short(rec.digest)}: {rec.path} must be a file of "
                                    f"{self._whom()}, not writable by group or others")
        now = stat_key(st)
        if now != rec.stat_key:
            differ = [what for what, a, b in zip(("inode", "size", "mtime", "ctime"), now, rec.stat_key) if a != b]
            raise ImageChanged(f"image {rec.name}@{short(rec.digest)} changed since it was imported "
                               f"({'/'.join(differ)} differ): run `envsched image verify {rec.name}`")

    def in_use(self, rec: ImageRecord) -> bool:
        """Whether an attached loop device is backed by the blob (a job's view has it mounted,
        in whatever mount namespace)."""
        return self._path_in_use(rec.path)

    @staticmethod
    def _path_in_use(path: str) -> bool:
        wanted = {path, os.path.realpath(path)}
        return any(b in wanted for b in loop_backing_files())

    # -- import ----------------------------------------------------------------------------
    def import_image(self, source: str, name: str, *, fmt: Optional[str] = None, tag: Optional[str] = None,
                     max_bytes: Optional[int] = None, exclude: Sequence[str] = ()) -> ImageRecord:
        """Import `source` as the new current version of NAME (root only). The work is done in
        a staging directory under .tmp that is always removed; the store changes only by
        renames at the end, under the lock."""
        self._require_root("image import")
        import shutil
        import tempfile
        from . import importer
        if not is_valid_name(name):
            raise ImportFailed(f"invalid image name {show(name)} ({NAME_RULE})", code=ExitCode.USAGE)
        self._ensure_layout()
        staging = tempfile.mkdtemp(prefix="import-", dir=os.path.join(self.root, ".tmp"))
        owner = os.open(os.path.join(staging, ".owner"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(owner, fcntl.LOCK_EX)     # gc leaves a staging dir alone while this is held
            try:
                built = importer.build(source, staging, fmt=fmt, tag=tag, max_bytes=max_bytes, owner=self.owner,
                                       exclude=exclude)
            except OSError as e:                  # reading the source, or writing staging (disk full)
                where = (e.filename or "").replace(os.path.join(staging, "src"), source)
                raise ImportFailed(f"import of {source} failed: {where + ': ' if where else ''}{e.strerror}",
                                   detail=str(e)) from None
            os.chmod(built.blob, 0o644)
            with open(built.blob, "rb") as f:
                os.fsync(f.fileno())
            digest, _ = _hash_file(built.blob)
            with self._locked():
                return self._commit(name, digest, built, source)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            os.close(owner)

    def _commit(self, name: str, digest: str, built: "Built", source: str) -> ImageRecord:
        dst = self.blob_path(digest)
        old: Optional[ImageRecord] = None
        with contextlib.suppress(OSError, ValueError, EnvschedError):
            old = ImageRecord.from_json(self._read_trusted(self.meta_path(digest)))
        rec: Optional[ImageRecord] = None
        try:
            st = os.lstat(dst)
        except FileNotFoundError:
            st = None
        if st is not None and old is not None and old.path == dst and stat_key(st) == old.stat_key:
            rec = old                                   # the same content is here already
        elif st is not None and self._path_in_use(dst):
            # a mounted blob is never replaced: verify() judges it
            rec = self._new_record(name, digest, dst, built, source, st)
            _write_atomic(self.meta_path(digest), rec.to_json())
        else:
            os.rename(built.blob, dst)
            _fsync_dir(os.path.dirname(dst))
            rec = self._new_record(name, digest, dst, built, source, os.stat(dst))
            _write_atomic(self.meta_path(digest), rec.to_json())
        versions = self._version_list(name) or []
        self._write_versions(name, [digest] + [v for v in versions if v != digest])
        return rec if rec.name == name else dataclasses.replace(rec, name=name)

    @staticmethod
    def _new_record(name: str, digest: str, path: str, built: "Built", source: str,
                    st: os.stat_result) -> ImageRecord:
        return ImageRecord(name=name, digest=digest, path=path, size=st.st_size, source=source,
                           source_format=built.source_format, source_digest=built.source_digest,
                           env=built.env, workdir=built.workdir, created=built.created,
                           imported=time.time(), stat_key=stat_key(st))

    def _write_versions(self, name: str, versions: List[str]) -> None:
        path = self.names_path(name)
        if versions:
            _write_atomic(path, json.dumps({"name": name, "versions": versions}, indent=1) + "\n")
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            _fsync_dir(os.path.dirname(path))

    # -- removal ---------------------------------------------------------------------------
    @staticmethod
    def _protected(digest: str, protected: Collection[str]) -> bool:
        """Whether the policy names `digest` (in full or by a prefix of 12+ hex digits)."""
        for p in protected:
            m = _DIGEST_REF.match(p or "")
            if m and digest[7:].startswith(m.group(1)):
                return True
        return False

    def _referenced(self) -> Dict[str, List[str]]:
        """digest -> the names that list it."""
        out: Dict[str, List[str]] = {}
        for n in self.names():
            for d in self._version_list(n) or []:
                out.setdefault(d, []).append(n)
        return out

    def _drop_blob(self, digest: str) -> None:
        for p in (self.blob_path(digest), self.meta_path(digest)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        for d in (os.path.dirname(self.blob_path(digest)), os.path.dirname(self.meta_path(digest))):
            _fsync_dir(d)

    def remove(self, name: str, digest: Optional[str] = None, *, protected: Collection[str] = ()) -> List[str]:
        """Remove NAME (every version) or one version of it; the digests removed. Refused, and
        nothing changed, when one of them is mounted (in use) or named by the policy."""
        self._require_root("image rm")
        if not is_valid_name(name):
            raise UsageError(f"invalid image name {show(name)} ({NAME_RULE})")
        self._require_trusted()
        if not os.path.isdir(self.root):
            raise ImageNotFound(f"image '{name}' is not on this node (envsched image list)")
        with self._locked():
            versions = self._version_list(name)
            if not versions:
                raise ImageNotFound(f"image '{name}' is not on this node (envsched image list)")
            targets = list(versions) if digest is None else [self._resolve(name, versions, digest)]
            for d in targets:
                if self._protected(d, protected):
                    raise ImageInUse(f"image {name}@{short(d)} is named by the policy: change the policy first")
                if self._path_in_use(self.blob_path(d)):
                    raise ImageInUse(f"image {name}@{short(d)} is in use (a job's view has it mounted): "
                                     f"try again when the job has ended")
            self._write_versions(name, [v for v in versions if v not in targets])
            still = self._referenced()
            for d in targets:
                if d not in still:
                    self._drop_blob(d)
        return targets

    def gc(self, *, keep: Optional[int] = None, protected: Collection[str] = ()) -> List[str]:
        """Remove what nothing needs: blobs and records no name lists, staging left by imports
        that died, and with `keep` each name's versions beyond its `keep` newest that are not
        mounted and not named by the policy. Returns the digests and staging paths removed."""
        self._require_root("image gc")
        if keep is not None and (not _is_int(keep) or keep < 1):
            raise UsageError("--keep must be at least 1 (the current version is always kept)")
        self._require_trusted()
        if not os.path.isdir(self.root):
            return []
        removed: List[str] = []
        with self._locked():
            if keep is not None:
                for n in self.names():
                    versions = self._version_list(n) or []
                    drop = [d for d in versions[keep:]
                            if not self._protected(d, protected) and not self._path_in_use(self.blob_path(d))]
                    if drop:
                        self._write_versions(n, [v for v in versions if v not in drop])
                        removed += [d for d in drop if d not in removed]
            still = self._referenced()
            on_disk = set()
            for sub, ext in (("blobs", ".sqfs"), ("meta", ".json")):
                d = os.path.join(self.root, sub, "sha256")
                with contextlib.suppress(FileNotFoundError):
                    for e in os.listdir(d):
                        if e.endswith(ext) and _DIGEST.match("sha256:" + e[:-len(ext)]):
                            on_disk.add("sha256:" + e[:-len(ext)])
            for d in sorted(on_disk - set(still)):
                if self._path_in_use(self.blob_path(d)):
                    continue
                self._drop_blob(d)
                if d not in removed:
                    removed.append(d)
            removed += self._gc_staging()
        return removed

    def _gc_staging(self) -> List[str]:
        import shutil
        tmp = os.path.join(self.root, ".tmp")
        out = []
        try:
            entries = os.listdir(tmp)
        except FileNotFoundError:
            return out
        for e in entries:
            path = os.path.join(tmp, e)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                try:
                    fd = os.open(os.path.join(path, ".owner"), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
                except FileNotFoundError:
                    if time.time() - st.st_mtime < STAGING_GRACE:
                        continue                          # an import creating its staging dir
                    fd = None
                try:
                    if fd is not None:
                        try:
                            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        except OSError as err:
                            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                                continue                  # an import is running in it
                            raise
                    shutil.rmtree(path, ignore_errors=True)
                finally:
                    if fd is not None:
                        os.close(fd)
            else:
                os.unlink(path)
            out.append(path)
        return out

    # -- verify ----------------------------------------------------------------------------
    def verify(self, name: Optional[str] = None) -> List[str]:
        """Re-hash the blobs of NAME (or of every name): one line per problem. A blob whose
        content is right but whose stat changed (copied back, touched) gets its stat_key
        refreshed, so that check_unchanged() accepts it again."""
        self._require_root("image verify")
        self._require_trusted()
        if name is not None:
            if not is_valid_name(name) or self._version_list(name) is None:
                raise ImageNotFound(f"image {show(name)} is not on this node (envsched image list)")
            todo = [name]
        else:
            todo = self.names()
        problems: List[str] = []
        hashed: Dict[str, Optional[str]] = {}
        for n in todo:
            for d in self._version_list(n) or []:
                where = f"{n}@{short(d)}"
                try:
                    rec = self._record(n, d)
                except EnvschedError as e:
                    problems.append(f"{where}: {e.message}")
                    continue
                if d not in hashed:
                    hashed[d] = self._verify_blob(rec)
                if hashed[d]:
                    problems.append(f"{where}: {hashed[d]}")
        return problems

    def _verify_blob(self, rec: ImageRecord) -> Optional[str]:
        try:
            lst = os.lstat(rec.path)
        except FileNotFoundError:
            return f"{rec.path} is missing"
        if not stat.S_ISREG(lst.st_mode) or self._untrusted(lst):
            return f"{rec.path} must be a file of {self._whom()}, not writable by group or others"
        actual, st = _hash_file(rec.path)
        if actual != rec.digest:
            return f"{rec.path}: digest mismatch: the file is {actual}, the store says {rec.digest}"
        if stat_key(st) != rec.stat_key:
            with self._locked():
                if stat_key(os.stat(rec.path)) == stat_key(st):   # not changed while hashing
                    stored = ImageRecord.from_json(self._read_trusted(self.meta_path(rec.digest)))
                    fresh = dataclasses.replace(stored, stat_key=stat_key(st), size=st.st_size)
                    _write_atomic(self.meta_path(rec.digest), fresh.to_json())
        return None
