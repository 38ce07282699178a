"""Read the site policy file: trust checks (as root), TOML parsing, validation."""
from __future__ import annotations

import os
import re
import stat
import sys
from typing import Optional

from ..errors import PolicyError
from .model import DEFAULT_POLICY_PATH, Policy
from .schema import build_policy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on sites with older Pythons
    import tomli as tomllib

MAX_POLICY_BYTES = 4 * 1024 * 1024
ENV_POLICY_PATH = "ENVSCHED_POLICY"   # honoured only for non-root callers (tests, `chos` as a user)


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
    finally:
        os.close(fd)
    return data


def read_policy_text(path: str) -> str:
    data = read_small_file(path, MAX_POLICY_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError(f"{path}: not valid UTF-8 (byte {e.start})") from e


_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


def parse_policy_text(text: str, source: str) -> Policy:
    """Pure: TOML text to Policy (no file system access). Raises PolicyError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _AT_LINE.search(msg)
        where = f"{source}:{m.group(1)}" if m else source
        raise PolicyError(f"{where}: TOML syntax error: {_AT_LINE.sub('', msg)}") from e
    except RecursionError:
        raise PolicyError(f"{source}: TOML syntax error: arrays or tables nested too deeply") from None
    except ValueError as e:     # tomllib lets int() refuse a number of more than 4300 digits
        raise PolicyError(f"{source}: TOML syntax error: a number is out of range") from e
    return build_policy(data, source, text)


def load_policy(path: Optional[str] = None) -> Policy:
    """Load and validate the policy; as root the file must be root-owned and not writable by others."""
    path = path or default_policy_path()
    if os.geteuid() == 0:
        check_trusted_path(path)
    return parse_policy_text(read_policy_text(path), path)
