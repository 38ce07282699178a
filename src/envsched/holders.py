"""Image holders: each image mounted once per node, shared by every view of it.

A squashfs mounted afresh for each job starts with cold caches: every file the job reads is
decompressed again, and the loop device is set up and torn down each time. Measured on a real
bookworm image (zstd), that cost a job about 8 ms more than the same tree. So the first view of
an image mounts it once, in a mount namespace of its own (a *holder*), pinned like a view:

  <run_dir>/.images/            root, 0700
      <hex>                     bind mount of the holder's namespace (keeps it and the image alive)
      <hex>.used                touched by every view of the image: when it was last used
      <hex>.lock                flock: one holder per image, made once

and every view of the image clones the holder's mount (open_tree OPEN_TREE_CLONE, then
move_mount into the view): the same superblock and page cache, no loop device of its own. A
holder outlives its views by `site.image_hold` seconds after its last use, so the next job finds
it warm; `envsched release` and `envsched gc` release the idle ones, and `envsched image rm`/`gc`
release those of the images they remove.

Holders are root's (only root's images are loop-mounted: a user's own image goes through FUSE as
the user, userimage.py), and the holder's namespace holds nothing but the image, read-only,
nosuid, nodev.
"""
from __future__ import annotations

import fcntl
import os
import time

from . import linux
from .errors import EnvironmentBroken, SetupError
from .pin import is_mounted_here, mount_points   # a holder is a namespace bind, as a pin's mnt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional, Tuple

HOLD_DIR = ".images"
IMAGE_AT = "/tmp/envsched-image"       # where a holder's namespace has the image (its own tmpfs at /tmp)
MS_RDONLY = 0x1


class Holders:
    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.dir = os.path.join(run_dir, HOLD_DIR)

    def path(self, digest: str) -> str:
        hexpart = digest.split(":", 1)[-1]
        if len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
            raise SetupError(f"image holder: bad digest {digest!r}")
        return os.path.join(self.dir, hexpart)

    # -- making and using one ------------------------------------------------------------
    def ensure(self, blob: str, digest: str) -> str:
        """The holder of `digest` (mounting `blob` in a new one when there is none); in the host's
        mount namespace (a namespace file is bound onto a file only from there)."""
        from .pin import _secure_dir, make_private_if_shared, pin_namespace
        target = self.path(digest)
        if is_mounted_here(target):
            return target
        _secure_dir(self.run_dir, 0o700)
        _secure_dir(self.dir, 0o700)
        make_private_if_shared(self.run_dir)
        lock = os.open(target + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)           # another job of the same image: one holder
            if not is_mounted_here(target):
                pin_namespace(target, lambda keep: _hold(blob))
            self.touch(digest)
        finally:
            os.close(lock)
        return target

    def touch(self, digest: str) -> None:
        used = self.path(digest) + ".used"
        fd = os.open(used, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        os.utime(used)

    def open(self, blob: str, digest: str) -> int:
        """ensure(), then the holder's namespace opened, from the host's namespace: a namespace
        copied by unshare does not copy binds of namespace files (the kernel leaves them out to
        avoid loops), so it cannot be opened by path from the view's namespace."""
        return os.open(self.ensure(blob, digest), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)

    @staticmethod
    def clone(theirs: int) -> int:
        """A detached copy of the image mount of the holder `theirs` (open()), to move_mount into
        a view. Called in the view's builder after its unshare: into the holder's namespace and
        back."""
        ours = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(theirs, linux.CLONE_NEWNS)
            try:
                return linux.open_tree_clone(IMAGE_AT)
            finally:
                linux.setns(ours, linux.CLONE_NEWNS)   # back; root and cwd are this namespace's "/"
        finally:
            os.close(ours)

    # -- releasing -----------------------------------------------------------------------
    def held(self) -> Dict[str, float]:
        """digest -> last use (epoch seconds) of every holder on this node."""
        out: Dict[str, float] = {}
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return out
        mounted = mount_points()                        # one read of mountinfo for every holder
        for name in names:
            if len(name) == 64 and os.path.join(self.dir, name) in mounted:
                try:
                    out["sha256:" + name] = os.stat(os.path.join(self.dir, name + ".used")).st_mtime
                except OSError:
                    out["sha256:" + name] = 0.0
        return out

    def release(self, digest: str) -> bool:
        target = self.path(digest)
        released = False
        if is_mounted_here(target):
            try:
                linux.umount2(target, linux.MNT_DETACH)
                released = True
            except SetupError as e:
                if linux.errno_of(e) not in ("EINVAL", "ENOENT"):
                    raise
        for suffix in ("", ".used", ".lock"):
            try:
                os.unlink(target + suffix)
            except FileNotFoundError:
                pass
        return released

    def release_idle(self, in_use: Iterable[str], hold: float, only: Optional[Iterable[str]] = None) -> List[str]:
        """Release the holders no pin uses (`in_use`: digests) and unused for `hold` seconds;
        `only`: just those digests. Returns the digests released."""
        busy, now = set(in_use), time.time()
        wanted = set(only) if only is not None else None
        out = []
        for digest, used in sorted(self.held().items()):
            if digest in busy or (wanted is not None and digest not in wanted) or now - used < hold:
                continue
            if self.release(digest):
                out.append(digest)
        return out


def _hold(blob: str) -> Dict[str, object]:
    """In the holder's child: a namespace with nothing of ours but the image, mounted read-only,
    nosuid, nodev on a loop device of its own (autoclear: detached with the holder)."""
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    linux.mount("envsched-holder", "/tmp", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0700")
    os.mkdir(IMAGE_AT, 0o755)
    mount_squashfs(blob, IMAGE_AT)
    return {}


def mount_squashfs(blob: str, target: str) -> None:
    """`blob` mounted at `target` on a loop device of its own, in this process (no /bin/mount):
    read-only with autoclear, so the kernel detaches the device with the last mount of it;
    squashfs only, ro, nosuid, nodev from the start."""
    try:
        backing = os.open(blob, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise EnvironmentBroken(f"image {blob} cannot be opened: {e.strerror}") from e
    try:
        loop, device = linux.attach_loop(backing, blob)
    finally:
        os.close(backing)
    try:
        linux.mount(device, target, "squashfs", MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV, None)
    except SetupError as e:
        raise EnvironmentBroken(f"image {blob} cannot be mounted: not a squashfs, or damaged ({e.message})") from e
    finally:
        os.close(loop)                                  # the mount holds the device now


def digests_in_use(run_dir: str) -> Tuple[str, ...]:
    """The digests of the views pinned on this node (their pins' meta.json, and the shared views'
    kept warm between jobs: sharedviews.py)."""
    from .pin import PinStore
    from .sharedviews import SharedViews
    out = SharedViews(run_dir).digests()
    for entry in PinStore(run_dir).list():
        digest = entry.get("digest")
        if isinstance(digest, str) and digest:
            out.append(digest)
    return tuple(out)
