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
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import EnvironmentBroken
from .policy.model import Environment, HostDevices, Site

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
        if "/" in name or name in (".", "..") or any(c.isspace() for c in name):
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


_cache: Dict[Tuple[str, int, int, int], List[Tuple[str, str]]] = {}


def ld_cache(path: str = LD_CACHE, arch_flags: Optional[int] = None) -> List[Tuple[str, str]]:
    """(name, path) of the loader's cache for the node's own architecture, in the cache's order
    (the loader's preference): glibc's new format, alone or after the old one. [] if unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    key = (path, st.st_ino, st.st_mtime_ns, st.st_size)
    if key in _cache:
        return _cache[key]
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    out = parse_ld_cache(data, ARCH_FLAGS.get(os.uname().machine) if arch_flags is None else arch_flags)
    _cache.clear()
    _cache[key] = out
    return out


def parse_ld_cache(data: bytes, arch_flags: Optional[int]) -> List[Tuple[str, str]]:
    import struct                                       # only GPU environments read the cache
    base = 0
    if data.startswith(OLD_MAGIC):                       # the old table first: skip it, 8-aligned
        if len(data) < 16:
            return []
        (nold,) = struct.unpack_from("<I", data, 12)
        base = (16 + 12 * nold + 7) & ~7
    if data[base:base + len(NEW_MAGIC)] != NEW_MAGIC or len(data) < base + 48:
        return []
    nlibs, _strings = struct.unpack_from("<II", data, base + 20)
    out: List[Tuple[str, str]] = []
    end = len(data)
    for i in range(nlibs):
        off = base + 48 + 24 * i
        if off + 24 > end:
            break
        flags, key, value = struct.unpack_from("<iII", data, off)
        if arch_flags is not None and flags != arch_flags:
            continue
        name, path = _cstr(data, base + key), _cstr(data, base + value)
        if name and path.startswith("/"):
            out.append((name, path))
    return out


def _cstr(data: bytes, off: int) -> str:
    if not 0 <= off < len(data):
        return ""
    stop = data.find(b"\0", off)
    return data[off:stop if stop >= 0 else len(data)].decode("utf-8", "replace")


def _matches(entry: str, name: str) -> bool:
    """Apptainer's rule: `libcuda.so` names libcuda.so and every libcuda.so.<version>."""
    return entry == name or entry.startswith(name + ".")


class _Trust:
    """Root's, not writable by group or others: files and every directory above them (memoised)."""

    def __init__(self) -> None:
        self.dirs: Dict[str, Optional[str]] = {}

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

    def file(self, path: str) -> Tuple[str, Optional[str]]:
        """(the real file, None) or (path, the problem)."""
        real = os.path.realpath(path)
        try:
            st = os.lstat(real)
        except OSError as e:
            return path, f"{path}: {e.strerror}"
        if not stat.S_ISREG(st.st_mode):
            return path, f"{path}: not a regular file"
        if st.st_uid != 0:
            return path, f"{real} is owned by uid {st.st_uid}, not root"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return path, f"{real} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
        for d in dict.fromkeys((os.path.dirname(os.path.abspath(path)), os.path.dirname(real))):
            problem = self._dir(d)
            if problem:
                return path, f"{path}: {problem}"
        return real, None


def _nodes(patterns: Sequence[str], problems: List[str], missing: List[str]) -> List[str]:
    import glob
    out: List[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else (
            [pattern] if os.path.lexists(pattern) else [])
        if not found:
            missing.append(pattern)
        for node in found:
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


def _soname_hits(dirs: Sequence[str], lib: str, memo: Dict[str, List[str]]) -> List[Tuple[str, str]]:
    """Matches of `lib` in the search directories; a file some matching symlink there leads to is
    bound under the symlink's name only (the soname the loader asks for), as the cache lists it."""
    out: List[Tuple[str, str]] = []
    for d in dirs:
        hits = [e for e in _listdir(d, memo) if _matches(e, lib)]
        targets = {os.path.realpath(os.path.join(d, e)) for e in hits if os.path.islink(os.path.join(d, e))}
        out += [(e, os.path.join(d, e)) for e in hits if os.path.join(d, e) not in targets]
    return out


def _listdir(d: str, memo: Dict[str, List[str]]) -> List[str]:
    if d not in memo:
        try:
            memo[d] = sorted(os.listdir(d))
        except OSError:
            memo[d] = []
    return memo[d]


def driver_files(site: Site, problems: List[str], missing: List[str]) -> List[Tuple[str, str]]:
    """(real host file, path in the view) for every library and tool of the site's list found here."""
    libs, tools, list_problems = read_list(site.gpu_libraries)
    problems += list_problems
    trust = _Trust()
    memo: Dict[str, List[str]] = {}
    found: Dict[str, str] = {}                   # path in the view -> host path (first one wins)
    by_stem: Dict[str, List[Tuple[str, str]]] = {}
    for n, p in (ld_cache() if libs else []):
        by_stem.setdefault(_stem(n), []).append((n, p))
    for lib in libs:
        hits = _soname_hits(site.gpu_search_dirs, lib, memo)
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
    import glob
    problems: List[str] = []
    missing: List[str] = []
    nodes: List[str] = []
    files: List[Tuple[str, str]] = []
    gpu_missing = False
    if env.gpus == "nvidia":
        if not glob.glob(NVIDIA_GPU):
            gpu_missing = True
        else:
            nodes = _nodes(NVIDIA_NODES, problems, [])     # the optional ones may be absent
            files = driver_files(site, problems, missing)
    nodes += [n for n in _nodes(env.devices, problems, missing) if n not in nodes]
    return HostDevices(nodes=tuple(nodes), files=tuple(files), gpu_missing=gpu_missing,
                       missing=tuple(missing), problems=tuple(problems))
