"""Views shared across jobs (#13): one pinned view per distinct view on a node, whatever the
number of jobs using it.

Jobs on a node whose plans build the same view (the same environment, version, tree and mount
operations: nothing of a job's or a user's is in them) share one mount namespace. Each job still
has its own pin, whose `mnt` is a bind of the shared one: every joiner (Slurm's tasks, the
starters, `envsched join`) and the kernel's own reference counting see an ordinary pin, and a
running job's view can never be taken from it. The shared pin is only what keeps the view warm
between jobs: it is let go `site.view_hold` seconds after its last job (0: at once), by whoever
releases or collects next (`envsched release`, the C epilog, `envsched gc`); no daemon.

  <run_dir>/.views/              root, 0700
  <run_dir>/.views/<vid>/        one shared view; flock()ed while it is made, joined or let go
      mnt                        bind of the view's mount namespace
      plan.json                  its mount operations (no process operations: those are a job's)
      meta.json                  environment, digest, created
      hold                       seconds it is kept after its last job (site.view_hold)
      refs/<key>                 one empty file per job pin using it (its mtime: the last use)
  <run_dir>/<key>/view           the job pin's <vid>

Not shared (each job builds its own, as before): views with isolation namespaces (a PID
namespace is a job's), node prologs or epilogs (run per job), a writable layer (the job's
writes), a user's own image (the user's namespace). The C side of the same layout, for the
decision cache's joins and the epilog's releases, is plugins/common/es_cache.c and es_release.c.
"""
from __future__ import annotations

import fcntl
import os
import time

from . import faults, linux
from .errors import SetupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional

    from .plan import Plan

# json and the plan are imported where a view is made or described: a release's detach and the
# idle views' let-go need neither (#13)

VIEWS = ".views"
NOT_SHARED = ("node_prolog", "node_epilog", "namespaces", "user_image", "writable")
HALF_MADE_GRACE = 60.0          # seconds a view without its mnt may be mid-build before gc takes it


def shareable(plan: Plan) -> bool:
    """May jobs share this plan's view? Only views of the admins' trees and images with nothing of
    a job's in them."""
    return plan.kind in ("tree", "image") and bool(plan.mount_ops) and \
        not any(op.get("op") in NOT_SHARED for op in plan.ops)


def view_plan(plan: Plan) -> Plan:
    """What of a plan a shared view is built from and recorded with: its mount operations."""
    from .plan import Plan
    return Plan(plan.environment, plan.kind, plan.source, plan.mount_ops, plan.digest)


def view_id(plan: Plan) -> str:
    """The view's identity: its mount operations, version and the tree's (or image file's) inode,
    so that a tree replaced at the same path (or re-stamped) is a new view, never the old one; and
    the mount namespace it is pinned in (a service such as sshd may run in one of its own, where a
    view pinned in another is not mounted: each namespace has its own views, never a shared id)."""
    import json
    try:
        st = os.stat(plan.source)
        where: Optional[List[int]] = [st.st_dev, st.st_ino]
    except OSError:
        where = None
    try:
        mntns: Optional[int] = os.stat("/proc/self/ns/mnt").st_ino
    except OSError:
        mntns = None
    try:
        from _sha256 import sha256             # without hashlib's OpenSSL (about 3 ms a start)
    except ImportError:                         # pragma: no cover - Python 3.12 and later
        from hashlib import sha256
    text = json.dumps({"environment": plan.environment, "kind": plan.kind, "source": plan.source,
                       "digest": plan.digest, "ops": plan.mount_ops, "inode": where, "mntns": mntns},
                      sort_keys=True)
    return sha256(text.encode()).hexdigest()[:32]


def _is_view_id(name: str) -> bool:
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


class SharedViews:
    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.dir = os.path.join(run_dir, VIEWS)

    def path(self, vid: str) -> str:
        return os.path.join(self.dir, vid)

    def _lock(self, vid: str, create: bool, block: bool = True) -> Optional[int]:
        """The view's directory, open and flock()ed (None: not there, or busy when not `block`)."""
        path = self.path(vid)
        for _ in range(100):
            if create:
                try:
                    os.mkdir(self.dir, 0o700)
                except FileExistsError:
                    pass
                try:
                    os.mkdir(path, 0o700)
                    os.mkdir(os.path.join(path, "refs"), 0o700)
                except FileExistsError:
                    pass
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                if create:
                    continue                            # let go of meanwhile: make it again
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return None
            # still the directory at `path`? (whoever held the lock may have let go of it: a
            # failed build, an idle view) -- else its lock means nothing: again
            st, here = os.fstat(fd), _lstat(path)
            if here is not None and (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino):
                return fd
            os.close(fd)
            if not create:
                return None
        return None

    def attach(self, key_dir: str, plan: Plan, hold: float, build: Callable[[str], None]) -> str:
        """Bind the shared view of `plan` onto key_dir/mnt (building and pinning it first if the
        node has none: `build(target)`), count the job in, and name the view in key_dir/view."""
        import json
        vid = view_id(plan)
        fd = self._lock(vid, create=True)
        if fd is None:
            raise SetupError(f"shared view {vid}: its directory under {self.dir} cannot be used")
        try:
            faults.point(self.run_dir, "view-locked")
            path = self.path(vid)
            mnt = os.path.join(path, "mnt")
            if not _pinned(mnt):
                _let_go(path)                           # a half-made one (a builder killed): again
                try:
                    os.mkdir(os.path.join(path, "refs"), 0o700)
                    build(mnt)
                    faults.point(self.run_dir, "view-built")
                    _write(os.path.join(path, "plan.json"), view_plan(plan).to_json())
                    _write(os.path.join(path, "meta.json"), json.dumps(
                        {"environment": plan.environment, "digest": plan.digest, "created": time.time()}))
                except BaseException:                   # the build failed: no view, nothing left
                    _let_go(path)
                    os.rmdir(path)
                    raise
            _write(os.path.join(path, "hold"), f"{hold:g}\n", replace=True)
            target = os.path.join(key_dir, "mnt")
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            linux.mount(mnt, target, None, linux.MS_BIND)
            faults.point(self.run_dir, "view-bound")
            _write(os.path.join(path, "refs", os.path.basename(key_dir)), "", replace=True)
            _write(os.path.join(key_dir, "view"), vid + "\n")
            return vid
        finally:
            os.close(fd)

    def detach(self, key: str, vid: str) -> List[str]:
        """The job pin `key` no longer uses view `vid`; the views let go of now (idle past their
        hold)."""
        if _is_view_id(vid):
            try:
                os.unlink(os.path.join(self.path(vid), "refs", key))
            except FileNotFoundError:
                pass
        faults.point(self.run_dir, "view-unref")
        return self.release_idle(mine=vid)

    def release_idle(self, hold: Optional[float] = None, dangling: bool = False,
                     mine: Optional[str] = None) -> List[str]:
        """Let go of every view no job uses and none used for its hold (`hold` overrides it: 0, every
        idle one); `dangling`: first drop the references of job pins that are gone (gc). A view
        busy (locked by a join or a build) is left for the next time, except `mine` (the view a
        release just dropped a reference to), whose lock is waited for: two jobs released at once
        must not both leave it (es_release.c does the same)."""
        out = []
        try:
            names = sorted(n for n in os.listdir(self.dir) if _is_view_id(n))
        except FileNotFoundError:
            return out
        now = time.time()
        for vid in names:
            fd = self._lock(vid, create=False, block=vid == mine)
            if fd is None:
                continue
            try:
                path = self.path(vid)
                refs = os.path.join(path, "refs")
                try:
                    users = os.listdir(refs)
                    last = os.lstat(refs).st_mtime
                except FileNotFoundError:
                    users, last = [], os.lstat(path).st_mtime
                if dangling:
                    for key in users:
                        if not os.path.isdir(os.path.join(self.run_dir, key)):
                            os.unlink(os.path.join(refs, key))
                    users = [k for k in users if os.path.isdir(os.path.join(self.run_dir, k))]
                if users:
                    continue
                keep = _hold_of(path) if hold is None else hold
                if not _pinned(os.path.join(path, "mnt")):
                    keep = min(keep, HALF_MADE_GRACE)
                if now - last < keep:
                    continue
                _let_go(path)
                os.rmdir(path)
                out.append(vid)
            finally:
                os.close(fd)
        return out

    def digests(self) -> List[str]:
        """The versions the node's shared views hold (holders.py keeps their images mounted)."""
        import json
        out = []
        try:
            names = [n for n in os.listdir(self.dir) if _is_view_id(n)]
        except FileNotFoundError:
            return out
        for vid in names:
            try:
                with open(os.path.join(self.path(vid), "meta.json")) as f:
                    digest = json.loads(f.read()).get("digest")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(digest, str) and digest:
                out.append(digest)
        return out

    def list(self) -> List[Dict[str, object]]:
        import json
        out: List[Dict[str, object]] = []
        try:
            names = sorted(n for n in os.listdir(self.dir) if _is_view_id(n))
        except FileNotFoundError:
            return out
        for vid in names:
            path = self.path(vid)
            try:
                with open(os.path.join(path, "meta.json")) as f:
                    meta = json.loads(f.read())
                refs = sorted(os.listdir(os.path.join(path, "refs")))
            except (OSError, ValueError):
                out.append({"view": vid, "broken": True})
                continue
            out.append({"view": vid, "environment": meta.get("environment"), "digest": meta.get("digest"),
                        "jobs": refs, "hold": _hold_of(path)})
        return out


def _lstat(path: str) -> "Optional[os.stat_result]":
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _pinned(mnt: str) -> bool:
    """Is `mnt` a bound mount namespace (and not an empty file left by a builder that died)?"""
    from .pin import is_mounted_here
    return is_mounted_here(mnt)


def _let_go(path: str) -> None:
    """Unpin the view at `path` and remove its files (not the directory, which the caller holds
    locked); running jobs keep it through their own pins' binds."""
    mnt = os.path.join(path, "mnt")
    if _pinned(mnt):
        try:
            linux.umount2(mnt, linux.MNT_DETACH)
        except SetupError as e:
            if linux.errno_of(e) not in ("EINVAL", "ENOENT"):
                raise
    for name in ("mnt", "plan.json", "meta.json", "hold"):
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
    refs = os.path.join(path, "refs")
    try:
        for key in os.listdir(refs):
            os.unlink(os.path.join(refs, key))
        os.rmdir(refs)
    except FileNotFoundError:
        pass


def _hold_of(path: str) -> float:
    try:
        with open(os.path.join(path, "hold")) as f:
            return max(0.0, float(f.read().strip()))
    except (OSError, ValueError):
        return 0.0


def _write(path: str, text: str, replace: bool = False) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
