"""Thin ctypes wrappers for the namespace syscalls (os.unshare/os.setns are 3.12+).

Every failure raises SetupError naming the operation, its arguments and errno.
"""
from __future__ import annotations

import ctypes
import errno
import os

from .errors import SetupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000

MNT_DETACH = 0x2
PR_SET_NO_NEW_PRIVS = 38

AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
SYS_mount_setattr = 442   # x86_64 and aarch64 share the new syscall numbers
SYS_pivot_root = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)

_libc = ctypes.CDLL(None, use_errno=True)   # the process's own libc; ctypes.util costs ~10 ms of imports
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _b(path: Optional[str]) -> Optional[bytes]:
    return None if path is None else os.fsencode(path)


def _fail(op: str) -> SetupError:
    err = ctypes.get_errno()
    return SetupError(f"{op} failed: {os.strerror(err)} ({errno.errorcode.get(err, err)})",
                      code=None)


def errno_of(e: SetupError) -> str:
    return e.message.rsplit("(", 1)[-1].rstrip(")")


def mount(source: Optional[str], target: str, fstype: Optional[str], flags: int,
          data: Optional[str] = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _fail(f"mount({source!r}, {target!r}, {fstype!r}, 0x{flags:x})")


def umount2(target: str, flags: int = MNT_DETACH) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        raise _fail(f"umount2({target!r})")


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise _fail(f"unshare(0x{flags:x})")


def setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        raise _fail(f"setns({nstype:#x})")


def sethostname(name: str) -> None:
    raw = name.encode()
    if _libc.sethostname(raw, len(raw)) != 0:
        raise _fail(f"sethostname({name!r})")


def set_parent_death_signal(signum: int) -> None:
    """prctl(PR_SET_PDEATHSIG): `signum` when the parent (the thread that forked us) exits."""
    if _libc.prctl(1, signum, 0, 0, 0) != 0:
        raise _fail(f"prctl(PR_SET_PDEATHSIG, {signum})")


def pivot_root(new_root: str, put_old: str) -> None:
    if _libc.syscall(SYS_pivot_root, _b(new_root), _b(put_old)) != 0:
        raise _fail(f"pivot_root({new_root!r}, {put_old!r})")


def mount_setattr(path: str, set_flags: int, recursive: bool) -> None:
    """Add MOUNT_ATTR_* flags to a mount (and its submounts), never clearing any (kernel >= 5.12)."""
    attr = _MountAttr(set_flags, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    if _libc.syscall(SYS_mount_setattr, AT_FDCWD, _b(path), flags, ctypes.byref(attr),
                     ctypes.sizeof(attr)) != 0:
        raise _fail(f"mount_setattr({path!r}, 0x{set_flags:x}{', recursive' if recursive else ''})")


SYS_open_tree = 428
SYS_move_mount = 429
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4


def open_tree_clone(path: str) -> int:
    """A detached copy of the mount tree at `path` (open_tree(OPEN_TREE_CLONE|AT_RECURSIVE), 5.2):
    the same file systems (superblocks, caches), attachable anywhere with move_mount_fd."""
    fd = _libc.syscall(SYS_open_tree, AT_FDCWD, _b(path), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)
    if fd < 0:
        raise _fail(f"open_tree({path!r}, OPEN_TREE_CLONE)")
    return int(fd)


def move_mount_fd(fd: int, target: str) -> None:
    if _libc.syscall(SYS_move_mount, fd, b"", AT_FDCWD, _b(target), MOVE_MOUNT_F_EMPTY_PATH) != 0:
        raise _fail(f"move_mount(<tree>, {target!r})")


def set_no_new_privs() -> None:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _fail("prctl(PR_SET_NO_NEW_PRIVS)")


# ioctl(NS_GET_MNTNS_ID) on a mount namespace file: the namespace's 64-bit id (Linux >= 6.8)
NS_GET_MNTNS_ID = (2 << 30) | (8 << 16) | (0xB7 << 8) | 5       # _IOR(0xb7, 0x5, __u64)


def mntns_id(path: str) -> Optional[int]:
    """The id of the mount namespace `path` (/proc/PID/ns/mnt) names; None where the kernel has
    no such ioctl or the namespace is gone."""
    import fcntl
    import struct
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, NS_GET_MNTNS_ID, buf)
        return int(struct.unpack("=Q", bytes(buf))[0])
    except OSError:
        return None
    finally:
        os.close(fd)


# ioctl(NS_GET_USERNS) on a namespace file: a new file descriptor for the user namespace that
# owns it (a user image's view is owned by the user's own user namespace)
NS_GET_USERNS = (0xB7 << 8) | 1                                   # _IO(0xb7, 0x1)
PR_SET_DUMPABLE = 4


def owning_userns(ns_fd: int) -> int:
    import fcntl
    try:
        return fcntl.ioctl(ns_fd, NS_GET_USERNS)
    except OSError as e:
        raise SetupError(f"ioctl(NS_GET_USERNS) failed: {e.strerror} (errno {e.errno})") from e


def foreign_userns(mnt_ns_fd: int) -> Optional[int]:
    """The user namespace that owns the mount namespace `mnt_ns_fd` when it is not ours (a user's
    own view, to be entered only as the user): a new descriptor; None when it is ours."""
    fd = owning_userns(mnt_ns_fd)
    theirs, ours = os.fstat(fd), os.stat("/proc/self/ns/user")
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        os.close(fd)
        return None
    return fd


def set_dumpable() -> None:
    """After root became a user: /proc/self (uid_map, setgroups) is the user's again, as it is
    for any process the user starts (a set-user-ID drop leaves it root's)."""
    if _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
        raise _fail("prctl(PR_SET_DUMPABLE)")


# Loop devices: attach a file read-only with autoclear in one ioctl (LOOP_CONFIGURE, Linux 5.8),
# the device found free by /dev/loop-control; the mount then holds it, and the kernel detaches
# it when the last mount of it goes (with the view)
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4


def attach_loop(backing_fd: int, name: str) -> Tuple[int, str]:
    """A free loop device attached read-only (autoclear) to `backing_fd`: (its fd, its path)."""
    import errno
    import fcntl
    import struct
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise SetupError(f"/dev/loop-control: {e.strerror} (errno {e.errno})") from e
    try:
        for _ in range(32):                             # another process may take the free one first
            try:
                number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                path = f"/dev/loop{number}"
                loop = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise SetupError(f"no free loop device: {e.strerror} (errno {e.errno})") from e
            # struct loop_config { u32 fd, block_size; struct loop_info64 info; u64 reserved[8] }
            info = struct.pack("=5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0,
                               LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR, name.encode()[:63], b"", b"", 0, 0)
            config = struct.pack("=II", backing_fd, 0) + info + bytes(64)
            try:
                fcntl.ioctl(loop, LOOP_CONFIGURE, config)
                return loop, path
            except OSError as e:
                os.close(loop)
                if e.errno == errno.EBUSY:
                    continue
                raise SetupError(f"LOOP_CONFIGURE {path}: {e.strerror} (errno {e.errno})") from e
        raise SetupError("no free loop device (every one taken while trying)")
    finally:
        os.close(ctl)
