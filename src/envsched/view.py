"""Build a view in the calling process: the privileged syscall sequence, written down.

The caller must be single-threaded (a threaded process cannot change mount namespace) and
have imported everything it needs: after step 7 the host's files are gone.

  1. unshare(CLONE_NEWNS)          (+ CLONE_NEWUSER and id maps on the unprivileged path; an
                                   image entered as the user gets its FUSE server first,
                                   userimage.py)
  2. make every mount a slave      nothing we mount propagates back to the host
  3. tmpfs staging root            mounted over SCRATCH, a directory every host has
  4. pivot_root into the staging   the host root is now /oldroot; sources are read there
  5. tmpfs /newroot                the view's own "/", mountpoints created on demand; with
                                   `writable`, the tree or image under a per-view overlay
                                   whose upper layer is a tmpfs at /rw
  6. the plan's ops                env dirs, shared paths, identity files, binds, remounts,
                                   device nodes and GPU driver files (devices.py), the login
                                   shells' snippet in /etc/profile.d (loginenv.py)
  7. pivot_root into /newroot and detach the staging root (and the host root with it)

Mount targets are created inside /newroot one component at a time with lstat: a target
that would cross a symbolic link is refused, so no bind can land outside the view.
"""
from __future__ import annotations

import os
import stat
from . import faults, linux, loginenv
from .errors import EnvironmentBroken, SetupError
from .plan import Plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

    from .userimage import FuseServer

SCRATCH = "/tmp"          # staging mountpoint; hidden only inside our own namespace
OLD = "/oldroot"
NEW = "/newroot"
IMAGE = "/image"
LOGIN = "/login"          # staging: the snippet's layer (and the covered directory, see _login_shadow)
RW = "/rw"                # staging: a writable environment's tmpfs (upper, work) and overlay (merged)
MS_RDONLY = 0x1
ATTR = {"ro": linux.MOUNT_ATTR_RDONLY, "nosuid": linux.MOUNT_ATTR_NOSUID, "nodev": linux.MOUNT_ATTR_NODEV}


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    except OSError as e:
        raise SetupError(f"writing {path!r} failed: {e.strerror} (errno {e.errno})") from e
    finally:
        os.close(fd)


def enter_user_namespace() -> None:
    """A user namespace mapping only the caller's uid and gid to themselves (setgroups denied)."""
    uid, gid = os.getuid(), os.getgid()
    linux.unshare(linux.CLONE_NEWUSER)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
    _write("/proc/self/gid_map", f"{gid} {gid} 1\n")


def unshare_mount_ns(unprivileged: bool) -> None:
    """Step 1 (an image entered as the user puts its FUSE server between the two: build_view)."""
    if unprivileged:
        enter_user_namespace()
    linux.unshare(linux.CLONE_NEWNS)


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    except OSError as e:
        if e.errno == 30 and path.startswith(NEW + "/"):   # EROFS: inside a read-only tree dir
            raise EnvironmentBroken(
                f"mount point {path[len(NEW):]} does not exist in the environment and its parent comes "
                f"read-only from the tree: create the directory in the tree") from e
        raise SetupError(f"mkdir({path!r}) failed: {e.strerror} (errno {e.errno})") from e


def _target(rel: str, want_dir: bool) -> str:
    """/newroot + rel, creating missing components, refusing symlinks on the way."""
    parts = [p for p in rel.split("/") if p]
    path = NEW
    for i, part in enumerate(parts):
        path = f"{path}/{part}"
        last = i == len(parts) - 1
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if last and not want_dir:
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
                except OSError as e:
                    if e.errno == 30:
                        raise EnvironmentBroken(
                            f"mount point {rel} does not exist in the environment and its parent comes "
                            f"read-only from the tree: create the file in the tree") from e
                    raise SetupError(f"creating mountpoint {rel!r} failed: {e.strerror} (errno {e.errno})") from e
            else:
                _mkdir(path)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise EnvironmentBroken(f"mount target {rel!r} crosses a symbolic link in the view ({path[len(NEW):]})")
        if not last and not stat.S_ISDIR(st.st_mode):
            raise EnvironmentBroken(f"mount target {rel!r}: {path[len(NEW):]} is not a directory")
        if last and stat.S_ISDIR(st.st_mode) != want_dir:
            raise EnvironmentBroken(f"mount target {rel!r} is a {'file' if want_dir else 'directory'}"
                                    f" in the view but the source is not")
    return path


def _resolve_host_paths(plan: Plan) -> Dict[str, str]:
    """Host sources with symlinks resolved while the host root is still "/": once it moves to
    /oldroot, an absolute symlink (/var/run -> /run) would point into the staging root."""
    paths = {plan.source} if plan.kind == "tree" else set()
    paths |= {op["source"] for op in plan.mount_ops if op["op"] == "bind" and op["root"] == "host"}
    return {p: os.path.realpath(p) for p in paths if p}


def _source(resolved: Dict[str, str], root: str, path: str) -> str:
    base = IMAGE if root == "image" else OLD
    path = resolved.get(path, path) if root == "host" else path
    return base + (path if path != "/" else "")


def _op_writable(plan: Plan, op: Dict[str, Any], resolved: Dict[str, str]) -> str:
    """A per-view overlay of the tree or image, its upper layer in a tmpfs (discarded with the
    view): where the env_dir ops then take their directories from, read-write."""
    if op["kind"] != "tmpfs":
        raise SetupError(f"writable: unknown kind {op['kind']!r}")
    lower = IMAGE if plan.kind != "tree" else OLD + resolved.get(plan.source, plan.source)
    if any(c in lower for c in ",:\\"):
        raise EnvironmentBroken(f"writable = \"tmpfs\" needs a path without ',', ':' or '\\': {plan.source}")
    _mkdir(RW)
    linux.mount("envsched-rw", RW, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0755")
    for d in ("upper", "work", "merged"):
        _mkdir(f"{RW}/{d}")
    os.chmod(f"{RW}/upper", 0o755)
    options = f"lowerdir={lower},upperdir={RW}/upper,workdir={RW}/work"
    if _in_user_namespace():
        options += ",userxattr"                            # trusted.* xattrs are root's in the host
    try:
        linux.mount("envsched-writable", f"{RW}/merged", "overlay", linux.MS_NOSUID | linux.MS_NODEV, options)
    except SetupError as e:
        raise SetupError(f"writable = \"tmpfs\": the overlay cannot be mounted ({e.message})") from e
    return f"{RW}/merged"


def _in_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def _op_env_dir(plan: Plan, op: Dict[str, Any], resolved: Dict[str, str], writable: str = "") -> None:
    base = writable or (IMAGE if op["root"] == "image" else OLD + resolved.get(plan.source, plan.source))
    source = f"{base}/{op['name']}"
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        return                                            # e.g. no lib32 in this tree
    if stat.S_ISLNK(st.st_mode):                          # merged /usr: bin -> usr/bin
        os.symlink(os.readlink(source), f"{NEW}/{op['name']}")
        return
    target = _target("/" + op["name"], want_dir=True)
    linux.mount(source, target, None, linux.MS_BIND | linux.MS_REC)
    linux.mount_setattr(target, (0 if writable else ATTR["ro"]) | ATTR["nosuid"] | ATTR["nodev"], recursive=True)


def _op_bind(op: Dict[str, Any], skipped: set, resolved: Dict[str, str]) -> None:
    source = _source(resolved, op["root"], op["source"])
    try:
        st = os.stat(source)
    except OSError as e:
        if op["required"]:
            raise SetupError(f"required path {op['source']} is not available on this host: {e.strerror}") from e
        skipped.add(op["target"])
        return
    try:
        target = _target(op["target"], want_dir=stat.S_ISDIR(st.st_mode))
    except (SetupError, EnvironmentBroken):
        if op["required"]:
            raise
        skipped.add(op["target"])                          # e.g. /etc/hosts absent from a tree
        return
    flags = linux.MS_BIND | (linux.MS_REC if op["recursive"] else 0)
    linux.mount(source, target, None, flags)


def _op_remount(op: Dict[str, Any], skipped: set) -> None:
    if op["target"] in skipped:
        return
    attrs = sum(ATTR[k] for k in ("ro", "nosuid", "nodev") if op.get(k))
    target = NEW + (op["target"] if op["target"] != "/" else "")
    if attrs:
        linux.mount_setattr(target, attrs, recursive=op["recursive"])


def _op_device(op: Dict[str, Any]) -> None:
    source = OLD + op["source"]
    try:
        st = os.lstat(source)
    except OSError as e:
        raise EnvironmentBroken(f"device {op['source']} is gone from this node: {e.strerror}") from e
    if not stat.S_ISCHR(st.st_mode) or st.st_uid != 0:
        raise EnvironmentBroken(f"device {op['source']} is not a character device of root's")
    target = _target(op["target"], want_dir=False)
    linux.mount(source, target, None, linux.MS_BIND)
    linux.mount_setattr(target, ATTR["ro"] | ATTR["nosuid"], recursive=False)


def _op_driver_file(op: Dict[str, Any]) -> None:
    source = OLD + op["source"]
    try:
        st = os.lstat(source)
    except OSError as e:
        raise EnvironmentBroken(f"GPU driver file {op['source']} is gone from this node: {e.strerror}") from e
    if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise EnvironmentBroken(f"GPU driver file {op['source']} is not a regular file of root's "
                                f"unwritable by others")
    target = _target(op["target"], want_dir=False)
    linux.mount(source, target, None, linux.MS_BIND)
    linux.mount_setattr(target, ATTR["ro"] | ATTR["nosuid"] | ATTR["nodev"], recursive=False)


def _mount_image(plan: Plan, fuse: "Optional[FuseServer]" = None, holder: Optional[int] = None) -> None:
    """Kind "image": a squashfs file (loop, read-only) or an unpacked image directory; through
    FUSE as the user (`fuse`) for a user's own image and any image without root; a clone of the
    node's one mount of it (`holder`, holders.py) for an image from the store."""
    target = SCRATCH + IMAGE                   # becomes /image after step 4
    _mkdir(target)
    if fuse is not None:
        fuse.mount(target)
        return
    if holder is not None:
        from .holders import Holders
        try:
            tree = Holders.clone(holder)
        finally:
            os.close(holder)
        try:
            os.chdir(SCRATCH)                  # setns back to our namespace moved us to its "/"
            linux.move_mount_fd(tree, target)
        finally:
            os.close(tree)
        return
    source = os.path.realpath(plan.source)
    if os.path.isdir(source):
        linux.mount(source, target, None, linux.MS_BIND | linux.MS_REC)
        linux.mount_setattr(target, ATTR["ro"] | ATTR["nosuid"] | ATTR["nodev"], recursive=True)
        return
    if os.geteuid() != 0:
        raise SetupError(f"image {plan.source} needs the privileged path (loop mount)")
    from .holders import mount_squashfs         # an image file outside the store: its own mount
    mount_squashfs(source, target)


def _existing_dir(rel: str) -> Optional[str]:
    """/newroot + rel when every component exists and is a directory (a symlink is not): else None."""
    path = NEW
    for part in [p for p in rel.split("/") if p]:
        path = f"{path}/{part}"
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
    return path


def _op_login_env(plan: Plan, op: Dict[str, Any]) -> None:
    """The login shells' snippet (loginenv.py) as op["dir"]/op["name"], in the view only.

    Where the tree has no such directory (busybox trees), or it is a symlink or crosses one,
    nothing is done. Otherwise a read-only overlay stacks a one-file layer on the directory;
    where overlayfs is refused (no module, an older kernel in a user namespace) or a bind of the
    plan lands inside the directory (an overlay's lower layer does not show submounts), a tmpfs
    takes its place holding the same entries (each bound from the covered directory) and the file.
    """
    name, rel = op["name"], op["dir"]
    if "/" in name or name in ("", ".", ".."):
        raise SetupError(f"login_env: bad file name {name!r}")
    target = _existing_dir(rel)
    if target is None:
        return
    text = loginenv.snippet(plan.process_ops)
    inside = rel.rstrip("/") + "/"
    submounts = any(o["op"] == "bind" and o["target"].startswith(inside) for o in plan.mount_ops)
    layer = LOGIN + "/layer"
    try:
        _mkdir(LOGIN)
        _mkdir(layer)
        _write_new(f"{layer}/{name}", text)
        if not submounts and not any(c in target for c in ",:\\"):
            try:
                linux.mount("envsched-login", target, "overlay", MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV,
                            f"ro,lowerdir={layer}:{target}")
                return
            except SetupError:
                pass                                      # the tmpfs below does the same
        _login_shadow(target, name, text)
    except OSError as e:
        raise SetupError(f"login shells' file in {rel}: {e.strerror} (errno {e.errno})") from e


def _write_new(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fchmod(fd, 0o644)                              # whatever the umask
    finally:
        os.close(fd)


def _login_shadow(target: str, name: str, text: str) -> None:
    """A tmpfs over `target` with its entries (bound read-only from it) plus the snippet."""
    lower = LOGIN + "/lower"
    _mkdir(lower)
    linux.mount(target, lower, None, linux.MS_BIND | linux.MS_REC)   # the directory, before covering it
    entries = sorted(e for e in os.listdir(lower) if e != name)
    linux.mount("envsched-login", target, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0755,size=1m")
    for entry in entries:
        source, dest = f"{lower}/{entry}", f"{target}/{entry}"
        st = os.lstat(source)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), dest)
            continue
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(dest, 0o755)
        elif stat.S_ISREG(st.st_mode):
            os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
        else:
            continue                                      # no fifos or devices in a profile directory
        linux.mount(source, dest, None, linux.MS_BIND | linux.MS_REC)
    _write_new(f"{target}/{name}", text)
    linux.mount_setattr(target, ATTR["ro"] | ATTR["nosuid"] | ATTR["nodev"], recursive=True)


def build_view(plan: Plan, unprivileged: bool = False) -> None:
    """Steps 1-7 in the calling process. On return, "/" is the view."""
    resolved = _resolve_host_paths(plan)
    # 1. a mount namespace of our own (and a user namespace when unprivileged); an image entered
    #    as the user gets its FUSE server in between (userimage.py)
    fuse = holder = None
    held = next((op for op in plan.mount_ops if op["op"] == "image_holder"), None)
    if held is not None and plan.digest and not unprivileged and os.geteuid() == 0:
        from .holders import Holders           # from the host's namespace, before ours is made
        holder = Holders(held["run_dir"]).open(plan.source, plan.digest)
    if plan.kind == "user-image" or (unprivileged and plan.kind == "image" and not os.path.isdir(plan.source)):
        from .userimage import FuseServer
        if os.geteuid() == 0 and plan.kind == "user-image":
            raise SetupError("a user's own image is entered as the user, never as root")
        enter_user_namespace()
        fuse = FuseServer(plan.source)
        linux.unshare(linux.CLONE_NEWNS)
    else:
        unshare_mount_ns(unprivileged)
    # 2. slave, recursively: our mounts never reach the host; host mounts still reach us
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    faults.here("view-ns-made")
    # 3. staging tmpfs over SCRATCH (the host's SCRATCH stays reachable via /oldroot below)
    linux.mount("envsched-staging", SCRATCH, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0700")
    os.chdir(SCRATCH)
    for d in (OLD[1:], NEW[1:]):
        _mkdir(d)
    if plan.kind in ("image", "user-image"):
        _mount_image(plan, fuse, holder)
    # 4. pivot into the staging root; the host root moves to /oldroot
    linux.pivot_root(".", OLD[1:])
    os.chdir("/")
    # 5. the view's root: a tmpfs of its own (made read-only by the plan once populated)
    linux.mount("envsched-view", NEW, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0755")
    faults.here("view-staged")
    # 6. the plan's mount ops, in order
    skipped: set = set()
    writable = ""
    for op in plan.mount_ops:
        kind = op["op"]
        if kind in ("user_image", "image_holder", "node_prolog", "node_epilog", "namespaces"):
            continue                                      # done outside the build (userimage.py, holders.py, pin.py)
        if kind == "writable":
            writable = _op_writable(plan, op, resolved)
        elif kind == "env_dir":
            _op_env_dir(plan, op, resolved, writable)
        elif kind == "bind":
            _op_bind(op, skipped, resolved)
        elif kind == "remount":
            _op_remount(op, skipped)
        elif kind == "device":
            # a host character device of root's at the same path: ro, nosuid, not nodev (the job's
            #    device cgroup, not this bind, decides whether it may be opened)
            _op_device(op)
        elif kind == "driver_file":
            # a GPU driver library or tool of root's, as a file under /.envsched/gpu: ro, nosuid, nodev
            _op_driver_file(op)
        elif kind == "login_env":
            _op_login_env(plan, op)
        elif kind == "pivot_root":
            # 7. the view becomes "/": pivot_root(".", ".") stacks the staging root on top,
            #    and detaching it takes /oldroot (the host) and /image with it
            os.chdir(NEW)
            linux.pivot_root(".", ".")
            linux.umount2(".", linux.MNT_DETACH)
            os.chdir("/")
        else:
            raise SetupError(f"unknown plan operation {kind!r}")
        faults.here("view-mounted-" + kind)
    # 8. the launcher every task runs through must be a program of the view's
    if plan.launcher:
        check_launcher(plan)


def check_launcher(plan: Plan) -> None:
    """The plan's launcher is an executable regular file in the view ("/" is the view): else the
    environment is broken, and says so before any task runs."""
    program = plan.launcher[0]
    try:
        st = os.stat(program)
    except OSError as e:
        raise EnvironmentBroken(f"the launcher {program} of environment {plan.environment} is not in it "
                                f"({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        raise EnvironmentBroken(f"the launcher {program} of environment {plan.environment} is not an "
                                "executable file")
