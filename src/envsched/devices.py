"""GPUs and devices: what of the node's device nodes and GPU driver a view gets (#12).

Found on the node when the version is chosen (chosen.py), as Apptainer's `--nv` and
nvidia-container-cli find them, and carried to the plan as data (plan.py: `device` and
`driver_file` operations):

  device nodes   gpus = "nvidia": /dev/nvidiactl, /dev/nvidia-uvm(-tools), /dev/nvidia-modeset,
                 /dev/nvidia<N>, /dev/nvidia-caps/nvidia-cap<N>; and the environment's `devices`
                 (absolute /dev paths or globs). Each must be a character device of root's.
                 The node has a GPU when it has a /dev/nvidia<N>.
  libraries      the names in the site's list (site.gpu_libraries, Apptainer's nvliblist.conf
                 format: one name a line, `#` comments; a name with ".so" is a library, any other
                 a tool) found in site.gpu_search_dirs, then in the dynamic loader's cache
                 (/etc/ld.so.cache, read here: no `ldconfig -p` per job), the node's own
                 architecture only. `libcuda.so` matches libcuda.so, libcuda.so.1, ... Each name
                 found is bound as that name (the soname the loader asks for) from the real file
                 its symlinks lead to.
  tools          the other names, in site.gpu_search_dirs then BIN_DIRS (never the caller's PATH).

Every file bound must be a regular file of root's, not writable by group or others, reached
through directories of root's not writable by group or others: anything else is a problem
that refuses the job (service.py), so a user cannot plant a library every GPU job loads.
Nothing here raises: what is missing or refused is recorded in HostDevices for the caller.
"""
from __future__ import annotations

import os
import stat

from .errors import EnvironmentBroken
from .policy.model import HostDevices

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional, Sequence, Tuple

    from .policy.model import Environment, Site

NVIDIA_GPU = "/dev/nvidia[0-9]*"
NVIDIA_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset",
                NVIDIA_GPU, "/dev/nvidia-caps/nvidia-cap[0-9]*")
BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
LD_CACHE = "/etc/ld.so.cache"
VIEW_DIR = "/.envsched/gpu"            # on the view's own root tmpfs: never in the tree
VIEW_LIB = VIEW_DIR + "/lib"           # put first in LD_LIBRARY_PATH
VIEW_BIN = VIEW_DIR + "/bin"           # put first in PATH
MAX_LIST = 64 * 1024                   # bytes: the site's list

# ld.so.cache entry flags of the node's own libraries (glibc's dl-cache.h: FLAG_ELF_LIBC6 | arch)
ARCH_FLAGS = {"x86_64": 0x0303, "aarch64": 0x0a03, "ppc64le": 0x0503, "s390x": 0x0403, "riscv64": 0x1103}
NEW_MAGIC = b"glibc-ld.so.cache1.1"
OLD_MAGIC = b"ld.so-1.7.0"


class DevicesMissing(EnvironmentBroken):
    """The environment needs a GPU and the node has none (exit 69, no fallback)."""


def parse_list(text: str) -> Tuple[List[str], List[str], List[str]]:
    """(libraries, tools, problems) of the site's list: one name a line, `#` starts a comment."""
    libs: List[str] = []
    tools: List[str] = []
    problems: List[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if "/" in name or name in (".", "..") or name.split() != [name]:   # no whitespace
            problems.append(f"line {n}: not a file name: {name!r}")
            continue
        (libs if ".so" in name else tools).append(name)
    return list(dict.fromkeys(libs)), list(dict.fromkeys(tools)), problems


def read_list(path: str) -> Tuple[List[str], List[str], List[str]]:
    """The site's list, read only when root's and not writable by others (as the policy is)."""
    from .errors import PolicyError
    from .policy.load import check_trusted_path, read_small_file
    try:
        check_trusted_path(path, "GPU library list")
        data = read_small_file(path, MAX_LIST)
    except PolicyError as e:
        return [], [], [f"site.gpu_libraries {e.message}"]
    libs, tools, problems = parse_list(data.decode("utf-8", "replace"))
    return libs, tools, [f"site.gpu_libraries {path}: {p}" for p in problems]


# The loader's cache, parsed once per process while its identity is unchanged (a long-lived
# caller; each resolver run is its own process and parses it once).
_cache: Dict[tuple, List[Tuple[str, str]]] = {}


def ld_cache(path: str = LD_CACHE, arch_flags: Optional[int] = None,
             stems: Optional[Iterable[str]] = None) -> List[Tuple[str, str]]:
    """(name, path) of the loader's cache for the node's own architecture, in the cache's order
    (the loader's preference): glibc's new format, alone or after the old one. [] if unreadable.
    With `stems` (_stem of the names wanted), only the entries whose name has one of them."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        st = os.fstat(fd)                 # the identity of what is read, not of a path that may move
        if arch_flags is None:
            arch_flags = ARCH_FLAGS.get(os.uname().machine)
        wanted = None if stems is None else frozenset(stems)
        key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, arch_flags, wanted)
        if key in _cache:
            return _cache[key]
        if not stat.S_ISREG(st.st_mode):
            return []
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return []
    finally:
        os.close(fd)
    out = parse_ld_cache(b"".join(chunks), arch_flags, wanted)
    _cache.clear()
    _cache[key] = out
    return out


def parse_ld_cache(data: bytes, arch_flags: Optional[int],
                   stems: Optional[Iterable[str]] = None) -> List[Tuple[str, str]]:
    """The entries of a cache file's bytes (see ld_cache). Each string is what lies from its offset
    to the next NUL; the strings right after a NUL are split out at once, and a name is most often
    the tail of its own path (ldconfig merges them), so few offsets need a search of their own."""
    import operator
    import struct                                       # only GPU environments read the cache
    from itertools import accumulate, repeat
    base = 0
    if data.startswith(OLD_MAGIC):                       # the old table first: skip it, 8-aligned
        if len(data) < 16:
            return []
        (nold,) = struct.unpack_from("<I", data, 12)
        base = (16 + 12 * nold + 7) & ~7
    if data[base:base + len(NEW_MAGIC)] != NEW_MAGIC or len(data) < base + 48:
        return []
    table = data[base:] if base else data
    nlibs, _strings = struct.unpack_from("<II", table, 20)
    n = max(0, min(nlibs, (len(table) - 48) // 24))
    words = struct.unpack_from(f"<{6 * n}i", table, 48)       # flags, key, value, osversion, hwcap (2)
    first = 48 + 24 * n
    pieces = table[first:].split(b"\0")
    get = dict(zip(accumulate(map(operator.add, map(len, pieces), repeat(1)), initial=first), pieces)).get
    # the stems compared as bytes, before decoding: a name's part before its first ".so", or the
    # whole name if it has none (after decoding instead when a wanted stem is not plain text)
    prefixes = wholes = None
    if stems is not None and not any("\ufffd" in s for s in stems):
        prefixes = {s[:-3].encode() for s in stems if s.endswith(".so")}
        wholes = {s.encode() for s in stems if ".so" not in s}
    out: List[Tuple[str, str]] = []
    for flags, key, value in zip(words[0::6], words[1::6], words[2::6]):
        if arch_flags is not None and flags != arch_flags:
            continue
        path = get(value)
        if path is None:
            path = _cstr(table, value)
        d = key - value
        if 0 <= d < len(path):
            name = path[d:]
        else:
            name = get(key)
            if name is None:
                name = _cstr(table, key)
        if prefixes is not None:
            head, so, _rest = name.partition(b".so")
            if head not in prefixes if so else name not in wholes:
                continue
        if name and path[:1] == b"/":
            out.append((name.decode("utf-8", "replace"), path.decode("utf-8", "replace")))
    if stems is not None and prefixes is None:
        wanted = set(stems)
        out = [(name, path) for name, path in out if _stem(name) in wanted]
    return out


def _cstr(data: bytes, off: int) -> bytes:
    if not 0 <= off < len(data):
        return b""
    stop = data.find(b"\0", off)
    return data[off:stop if stop >= 0 else len(data)]


def _matches(entry: str, name: str) -> bool:
    """Apptainer's rule: `libcuda.so` names libcuda.so and every libcuda.so.<version>."""
    return entry == name or entry.startswith(name + ".")


def _join(d: str, name: str) -> str:
    """os.path.join(d, name) for a name without "/" (a directory entry)."""
    return d + name if d.endswith("/") else d + "/" + name


def _abs(path: str) -> str:
    """os.path.abspath(path), without its work when the path is absolute and already normal."""
    if path.startswith("/") and "//" not in path and "/." not in path and (path == "/" or not path.endswith("/")):
        return path
    return os.path.abspath(path)


def _dirname(path: str) -> str:
    """os.path.dirname of a normal absolute path (_abs)."""
    return path[:path.rfind("/")] or "/"


class _Trust:
    """Root's, not writable by group or others: files and every directory above them. One run
    (one find) judges each directory once and resolves each path once; nothing is kept longer."""

    def __init__(self) -> None:
        self.dirs: Dict[str, Optional[str]] = {}
        self.real_dirs: Dict[str, str] = {}
        self.paths: Dict[str, Tuple[bool, str, Optional[os.stat_result], Optional[OSError]]] = {}

    def _dir(self, d: str) -> Optional[str]:
        if d in self.dirs:
            return self.dirs[d]
        problem = None
        try:
            st = os.lstat(d)
            if st.st_uid != 0:
                problem = f"{d} is owned by uid {st.st_uid}, not root"
            elif not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                problem = f"{d} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
        except OSError as e:
            problem = f"{d}: {e.strerror}"
        if problem is None and d != "/":
            problem = self._dir(os.path.dirname(d))
        self.dirs[d] = problem
        return problem

    def resolve(self, path: str) -> Tuple[bool, str, Optional[os.stat_result], Optional[OSError]]:
        """(path is a symlink, os.path.realpath(path), lstat of that or None, its error or None).

        The directory is resolved once (os.path.realpath) and the name's own symlinks followed
        by hand while they name a file in that same directory (a driver's soname links); any
        other case is left to os.path.realpath, so the answer is always realpath's."""
        if path in self.paths:
            return self.paths[path]
        full = _abs(path)
        i = full.rfind("/")
        d, name = full[:i] or "/", full[i + 1:]
        rd = self.real_dirs.get(d)
        if rd is None:
            rd = self.real_dirs[d] = os.path.realpath(d)
        is_link, real, st, err = False, "", None, None
        if name not in ("", ".", ".."):
            current = name
            for hop in range(40):
                try:
                    st = os.lstat(_join(rd, current))
                except OSError:
                    break                                     # realpath's own answer, below
                if hop == 0:
                    is_link = stat.S_ISLNK(st.st_mode)
                if not stat.S_ISLNK(st.st_mode):
                    real = _join(rd, current)
                    if hop:                                   # the link's target: known too
                        self.paths.setdefault(real, (False, real, st, None))
                    break
                try:
                    current = os.readlink(_join(rd, current))
                except OSError:
                    break
                if "/" in current or current in ("", ".", ".."):
                    break
        if not real:
            is_link = os.path.islink(path)
            real = os.path.realpath(path)
            try:
                st = os.lstat(real)
            except OSError as e:
                st, err = None, e
        self.paths[path] = (is_link, real, st, err)
        return self.paths[path]

    def file(self, path: str) -> Tuple[str, Optional[str]]:
        """(the real file, None) or (path, the problem)."""
        _link, real, st, err = self.resolve(path)
        if st is None:
            return path, f"{path}: {err.strerror if err else 'cannot stat'}"
        if not stat.S_ISREG(st.st_mode):
            return path, f"{path}: not a regular file"
        if st.st_uid != 0:
            return path, f"{real} is owned by uid {st.st_uid}, not root"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return path, f"{real} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
        for d in dict.fromkeys((_dirname(_abs(path)), _dirname(real))):
            problem = self._dir(d)
            if problem:
                return path, f"{path}: {problem}"
        return real, None


def _has_magic(s: str) -> bool:
    return "*" in s or "?" in s or "[" in s


def _listdir(d: str, memo: Dict[str, List[str]]) -> List[str]:
    """The names in `d` (in no order), listed once per run; [] if it cannot be listed."""
    if d not in memo:
        try:
            memo[d] = os.listdir(d)
        except OSError:
            memo[d] = []
    return memo[d]


def _digit_after(prefix: str):
    """The test of `prefix[0-9]*` for a name (no import of fnmatch for NVIDIA's own patterns)."""
    n = len(prefix)
    return lambda name: name.startswith(prefix) and "0" <= name[n:n + 1] <= "9"


_NAME_TESTS = {"nvidia[0-9]*": _digit_after("nvidia"), "nvidia-cap[0-9]*": _digit_after("nvidia-cap")}


def _glob(pattern: str, memo: Dict[str, List[str]]) -> List[str]:
    """sorted(glob.glob(pattern)), from one listing of each directory per run (memo): /dev is
    listed once for all of NVIDIA's patterns and the environment's."""
    d, base = os.path.split(pattern)
    if not d or not base or _has_magic(d):
        import glob
        return sorted(glob.glob(pattern))
    names = _listdir(d, memo)
    test = _NAME_TESTS.get(base)
    if test is not None:
        hits = [n for n in names if test(n)]
    else:
        import fnmatch
        if not base.startswith("."):                   # glob's rule: hidden names only by name
            names = [n for n in names if not n.startswith(".")]
        hits = fnmatch.filter(names, base)
    return [_join(d, n) for n in sorted(hits)]


def _nodes(patterns: Sequence[str], problems: List[str], missing: List[str],
           memo: Dict[str, List[str]]) -> List[str]:
    out: List[str] = []
    for pattern in patterns:
        if _has_magic(pattern):
            found = [(node, None) for node in _glob(pattern, memo)]
        else:
            try:
                found = [(pattern, os.lstat(pattern))]
            except OSError:
                found = []                             # not there (os.path.lexists: any error)
        if not found:
            missing.append(pattern)
        for node, st in found:
            if st is None:
                try:
                    st = os.lstat(node)
                except OSError as e:
                    problems.append(f"{node}: {e.strerror}")
                    continue
            if not stat.S_ISCHR(st.st_mode):
                problems.append(f"device {node} is not a character device")
            elif st.st_uid != 0:
                problems.append(f"device {node} is owned by uid {st.st_uid}, not root")
            elif node not in out:
                out.append(node)
    return out


def _stem(name: str) -> str:
    """libcuda.so.1 -> libcuda.so: the part a list name and its matches share."""
    i = name.find(".so")
    return name[:i + 3] if i >= 0 else name


def _soname_hits(dirs: Sequence[str], lib: str, index: Dict[str, Dict[str, List[str]]],
                 memo: Dict[str, List[str]], trust: _Trust) -> List[Tuple[str, str]]:
    """Matches of `lib` in the search directories; a file some matching symlink there leads to is
    bound under the symlink's name only (the soname the loader asks for), as the cache lists it."""
    out: List[Tuple[str, str]] = []
    stem = _stem(lib)
    for d in dirs:
        if d not in index:                             # each directory's names by stem, once
            by_stem: Dict[str, List[str]] = {}
            for e in sorted(_listdir(d, memo)):
                by_stem.setdefault(_stem(e), []).append(e)
            index[d] = by_stem
        hits = [e for e in index[d].get(stem, ()) if _matches(e, lib)]
        if not hits:
            continue
        paths = [_join(d, e) for e in hits]
        targets = {real for is_link, real, _st, _err in map(trust.resolve, paths) if is_link}
        out += [(e, p) for e, p in zip(hits, paths) if p not in targets]
    return out


def driver_files(site: Site, problems: List[str], missing: List[str]) -> List[Tuple[str, str]]:
    """(real host file, path in the view) for every library and tool of the site's list found here."""
    libs, tools, list_problems = read_list(site.gpu_libraries)
    problems += list_problems
    trust = _Trust()
    memo: Dict[str, List[str]] = {}
    index: Dict[str, Dict[str, List[str]]] = {}
    found: Dict[str, str] = {}                   # path in the view -> host path (first one wins)
    stems = {_stem(lib) for lib in libs}
    by_stem: Dict[str, List[Tuple[str, str]]] = {}
    for n, p in (ld_cache(stems=stems) if libs else []):
        by_stem.setdefault(_stem(n), []).append((n, p))
    for lib in libs:
        hits = _soname_hits(site.gpu_search_dirs, lib, index, memo, trust)
        hits += [(n, p) for n, p in by_stem.get(_stem(lib), ()) if _matches(n, lib)]
        if not hits:
            missing.append(lib)
        for entry, host in hits:
            found.setdefault(f"{VIEW_LIB}/{entry}", host)
    for tool in tools:
        for d in tuple(site.gpu_search_dirs) + BIN_DIRS:
            if os.path.lexists(os.path.join(d, tool)):   # one stat, not a listing of /usr/bin
                found.setdefault(f"{VIEW_BIN}/{tool}", os.path.join(d, tool))
                break
        else:
            missing.append(tool)
    out: List[Tuple[str, str]] = []
    for target, host in found.items():
        real, problem = trust.file(host)
        if problem:
            problems.append(problem)
        else:
            out.append((real, target))
    return out


def find(env: Environment, site: Site) -> HostDevices:
    """What of this node's devices and driver `env` gets (gpus, devices); never raises."""
    problems: List[str] = []
    missing: List[str] = []
    nodes: List[str] = []
    files: List[Tuple[str, str]] = []
    gpu_missing = False
    memo: Dict[str, List[str]] = {}              # one listing of /dev (and /dev/nvidia-caps) per run
    if env.gpus == "nvidia":
        if not _glob(NVIDIA_GPU, memo):
            gpu_missing = True
        else:
            nodes = _nodes(NVIDIA_NODES, problems, [], memo)     # the optional ones may be absent
            files = driver_files(site, problems, missing)
    nodes += [n for n in _nodes(env.devices, problems, missing, memo) if n not in nodes]
    return HostDevices(nodes=tuple(nodes), files=tuple(files), gpu_missing=gpu_missing,
                       missing=tuple(missing), problems=tuple(problems))
