"""Read the site policy file: trust checks (as root), TOML parsing, validation.

As root, what the TOML parser made of the policy's text is kept (#13: tomllib and the standard
modules it imports cost a resolver run ≈ 9 ms, two thirds of what `validate` and `release`
cost): in POLICY_CACHE, root's alone, one file per policy path holding the text it was parsed
from and the parser's result. A run whose policy text is, character for character, the text kept
there takes the result instead of parsing again; anything else (another text, a file that is not
root's alone, a directory on the way that is not, another Python) parses as before. Every check
of the policy file itself (owner, mode, the directories above it, a regular file, its size, UTF-8)
runs first, every time, and so does the schema (build_policy): only the parsing of an unchanged
text is saved."""
from __future__ import annotations

import os
import stat
import sys

from ..errors import PolicyError
from .model import DEFAULT_POLICY_PATH, Policy
from .schema import build_policy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Tuple

MAX_POLICY_BYTES = 4 * 1024 * 1024
ENV_POLICY_PATH = "ENVSCHED_POLICY"   # honoured only for non-root callers (tests, `chos` as a user)
POLICY_CACHE = "/run/envsched/.policy"   # root's, 0700 (tmpfs: gone at a reboot)
POLICY_CACHE_FORMAT = 1
POLICY_CACHE_FILES = 32               # more (one per policy path: tests) and the others go


def __getattr__(name: str) -> Any:
    """`tomllib` (or tomli), imported when first used: an unchanged policy is not parsed again."""
    if name == "tomllib":
        return _tomllib()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _tomllib() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on sites with older Pythons
        import tomli as tomllib
    return tomllib


def default_policy_path() -> str:
    """The policy path when --policy is not given. Never taken from a job's environment as root."""
    if os.geteuid() != 0 and os.environ.get(ENV_POLICY_PATH):
        return os.environ[ENV_POLICY_PATH]
    return DEFAULT_POLICY_PATH


def check_trusted_path(path: str, what: str = "policy") -> None:
    """The file and every directory above it: owned by root, not writable by group or others.

    Both the path as given and the path after symlinks are checked, so a symlink kept in an
    untrusted directory cannot redirect the load later. Like OpenSSH's StrictModes, a
    world-writable sticky directory (/tmp) is not trusted either.
    """
    given = os.path.abspath(path)
    real = os.path.realpath(path)
    for start in dict.fromkeys((given, real)):
        current = start
        while True:
            try:
                st = os.lstat(current)
            except OSError as e:
                if current == start:
                    raise PolicyError(f"{path}: cannot open: {e.strerror}") from e
                raise PolicyError(f"{path}: cannot stat {current}: {e.strerror}") from e
            if st.st_uid != 0:
                raise PolicyError(f"{path}: {what} not trusted: {current} is owned by uid {st.st_uid}, not root")
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise PolicyError(f"{path}: {what} not trusted: {current} is writable by group or others "
                                  f"(mode {stat.S_IMODE(st.st_mode):04o})")
            if current == "/":
                break
            current = os.path.dirname(current)


def read_small_file(path: str, limit: int) -> bytes:
    """A regular file of at most `limit` bytes, read without blocking on a FIFO and without
    becoming a controlling terminal; PolicyError naming the file otherwise (the policy, the
    stamps next to it, the GPU driver list: files root reads that only root may write)."""
    return _read_small_file(path, limit)[0]


def _read_small_file(path: str, limit: int) -> Tuple[bytes, os.stat_result]:
    """read_small_file, and the file's fstat once it was read (a write during the read shows in
    its mtime and ctime)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise PolicyError(f"{path}: cannot open: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PolicyError(f"{path}: not a regular file")
        if st.st_size > limit:
            raise PolicyError(f"{path}: larger than {limit} bytes")
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
        if len(data) > limit:
            raise PolicyError(f"{path}: larger than {limit} bytes")
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return data, st


# A policy file changed less than SETTLE_NS ago may be in the middle of an in-place write (an editor
# or `cat > policy.toml` truncates, then writes): it is read again once SETTLE_NS have passed, and
# used only when the second read finds the same file with the same text; a file that keeps changing
# for SETTLE_TRIES reads is not used at all (#15: a half-written policy is never used; an empty
# file, or a prefix that drops an environment's allow_users, could otherwise decide a job).
SETTLE_NS = 100_000_000
SETTLE_TRIES = 50


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == \
        (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def read_settled(path: str, limit: int) -> bytes:
    """The file's bytes, read as read_small_file reads them, once it has not changed for SETTLE_NS."""
    import time
    data, st = _read_small_file(path, limit)
    for _ in range(SETTLE_TRIES):
        age = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns)
        # empty: maybe truncated an instant ago, the new size visible before the truncation's
        # mtime and ctime are (seen on ext4: an empty read with the old times): read again too
        if age >= SETTLE_NS and data:
            return data
        time.sleep(max(SETTLE_NS - age, SETTLE_NS if not data else 0) / 1e9)
        again, st_again = _read_small_file(path, limit)
        if again == data and _same_file(st, st_again):
            return data
        data, st = again, st_again
    raise PolicyError(f"{path}: still being written (changed again within {SETTLE_NS // 1_000_000} ms, "
                      f"{SETTLE_TRIES} times): not read")


def read_policy_text(path: str) -> str:
    data = read_settled(path, MAX_POLICY_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError(f"{path}: not valid UTF-8 (byte {e.start})") from e


_AT_LINE = r"\s*\(at line (\d+), column (\d+)\)"


def parse_toml(text: str, source: str) -> Any:
    """Pure: the TOML text parsed (tomllib), or PolicyError."""
    tomllib = _tomllib()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        import re
        msg = str(e)
        m = re.search(_AT_LINE, msg)
        where = f"{source}:{m.group(1)}" if m else source
        raise PolicyError(f"{where}: TOML syntax error: {re.sub(_AT_LINE, '', msg)}") from e
    except RecursionError:
        raise PolicyError(f"{source}: TOML syntax error: arrays or tables nested too deeply") from None
    except ValueError as e:     # tomllib lets int() refuse a number of more than 4300 digits
        raise PolicyError(f"{source}: TOML syntax error: a number is out of range") from e


def parse_policy_text(text: str, source: str) -> Policy:
    """Pure: TOML text to Policy (no file system access). Raises PolicyError."""
    return build_policy(parse_toml(text, source), source, text)


def load_policy(path: Optional[str] = None) -> Policy:
    """Load and validate the policy; as root the file must be root-owned and not writable by others."""
    path = path or default_policy_path()
    root = os.geteuid() == 0
    if root:
        check_trusted_path(path)
    text = read_policy_text(path)
    data = _kept(path, text) if root else None
    if data is not None:
        return build_policy(data, path, text)
    data = parse_toml(text, path)
    blob = _blob(text, data) if root else None      # before the schema has seen the data
    policy = build_policy(data, path, text)
    if blob is not None:
        _keep(path, blob)
    return policy


# -- the parsed policy, kept (as root) -------------------------------------------------------------
def _cache_file(path: str) -> str:
    from _sha256 import sha256             # without hashlib's OpenSSL (about 3 ms a start)
    return os.path.join(POLICY_CACHE, sha256(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()[:32])


def _cache_trusted() -> bool:
    """POLICY_CACHE and every directory above it: root's, not writable by group or others (as
    for the policy); the cache itself root's alone."""
    try:
        check_trusted_path(POLICY_CACHE, "policy cache")
        st = os.lstat(POLICY_CACHE)
    except (PolicyError, OSError):
        return False
    return stat.S_ISDIR(st.st_mode) and not st.st_mode & 0o077


def _kept(path: str, text: str) -> Any:
    """What the parser made of `text` when this policy path last had it, or None: only from a
    regular file of root's alone (0600, one link, not a symbolic link) in a trusted POLICY_CACHE,
    written by this Python for exactly this text."""
    try:
        fd = os.open(_cache_file(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077 or st.st_nlink != 1 \
                or st.st_size > 4 * MAX_POLICY_BYTES or not _cache_trusted():
            return None
        blob = b""
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            blob += chunk
    except OSError:
        return None
    finally:
        os.close(fd)
    import marshal
    try:
        kept = marshal.loads(blob)
    except (EOFError, ValueError, TypeError):
        return None
    if type(kept) is not tuple or len(kept) != 4 or kept[:3] != (POLICY_CACHE_FORMAT, sys.version, text) \
            or type(kept[3]) is not dict:
        return None
    return kept[3]


def _blob(text: str, data: Any) -> Optional[bytes]:
    """The cache file's contents for `text` parsed as `data`; None for what marshal does not write
    (a TOML date or time: such a policy is parsed every time)."""
    import marshal
    try:
        return marshal.dumps((POLICY_CACHE_FORMAT, sys.version, text, data))
    except ValueError:
        return None


def _keep(path: str, blob: bytes) -> None:
    """Keep `blob` (_blob) for the policy at `path`: best effort (a cache directory that is not
    root's alone, a full file system: the policy is parsed every time)."""
    target = _cache_file(path)
    temp = f"{target}.{os.getpid()}"
    try:
        for d in (os.path.dirname(POLICY_CACHE), POLICY_CACHE):
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                pass
        if not _cache_trusted():
            return
        names = os.listdir(POLICY_CACHE)
        if len(names) >= POLICY_CACHE_FILES:
            for name in names:
                if name != os.path.basename(target):
                    os.unlink(os.path.join(POLICY_CACHE, name))
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(temp, target)
    except OSError:
        try:
            os.unlink(temp)
        except OSError:
            pass
