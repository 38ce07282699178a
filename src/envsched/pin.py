"""Prepare-and-pin: build a view once, keep it alive under <run_dir>/<key>/, let any
number of tasks join it with setns + chdir, release it, and collect pins whose owner died.

  <run_dir>/               root, 0700
  <run_dir>/<key>/         root, 0700
      mnt                  bind mount of the view's /proc/<pid>/ns/mnt (keeps it alive);
                           absent in a record-only pin (the host OS: nothing to join)
      plan.json            the plan (process ops are replayed by every joiner)
      meta.json            environment, user, uid, owner pid + start time, creation time
      shim, inputs         the shim's protocol lines and raw request (write_memo), written
                           last: a pin with `shim` is complete

A record-only pin (`record`) keeps a decision for the host OS (local) under a key, so a shim
that looks a job up by key (the Grid Engine starter) can tell "decided: host OS" from
"never prepared".

The bind of the namespace file is made by the parent, in the caller's mount namespace, onto
a view the kernel judges newer than that namespace (see _build_and_pin).
"""
from __future__ import annotations

import os
import stat
import time

from . import faults, linux
from .errors import DISK_FULL, EnvschedError, NotPermitted, PolicyError, SetupError, UsageError
from .exitcodes import ExitCode
from .names import NAME_RULE, is_valid_name
from .records import asdict, dataclass     # dataclasses, without their import cost (#13)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import json
    from typing import Callable, Dict, List, NoReturn, Optional, Sequence, Tuple

    from . import isolation, nodehooks
    from .enter import finish_and_exec
    from .identity import UserInfo
    from .plan import Plan, with_identity
    from .view import build_view


def _views() -> None:
    """json, the plan, the view builder and node hooks, as this module's names: loaded by every
    path that makes, joins or reads a pin's plan or meta, before it enters any namespace (a
    builder or a joiner inside a view cannot import from the host's Python library). A release of
    a plain pin needs none of them (#13: ≈ 2.5 ms of imports)."""
    global json, nodehooks, Plan, with_identity, build_view
    import json
    from . import nodehooks
    from .plan import Plan, with_identity
    from .view import build_view


def _namespaces() -> None:
    """_views(), and isolation and entry: for a join, and a pin with isolation namespaces (its
    builder stays as their init); loaded, as _views, before any namespace is entered. A plain
    pin's prepare needs neither (#13)."""
    global isolation, finish_and_exec
    _views()
    from . import isolation
    from .enter import finish_and_exec

HALF_MADE_GRACE = 60.0   # seconds a pin without meta.json may be mid-prepare before gc takes it


@dataclass(frozen=True)
class PinMeta:
    key: str
    environment: str
    user: str
    uid: int
    owner_pid: int
    owner_start: Optional[int]
    created: float
    digest: str = ""          # the version's identity ("" if it has none)
    userns: bool = False      # the view belongs to the user's own user namespace (a user image)

    @classmethod
    def from_json(cls, text: str) -> "PinMeta":
        """What _create wrote to meta.json, or ValueError."""
        _views()
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("malformed pin meta: nested too deeply") from None
        fields = {f for f in cls.__dataclass_fields__}
        if not isinstance(data, dict) or not (fields - {"digest", "userns"} <= set(data) <= fields):
            raise ValueError("malformed pin meta: not an object with the expected fields")
        if not isinstance(data.get("digest", ""), str) or not isinstance(data.get("userns", False), bool):
            raise ValueError("malformed pin meta: a field has the wrong type")
        ints = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        if not (all(isinstance(data[k], str) for k in ("key", "environment", "user"))
                and ints(data["uid"]) and ints(data["owner_pid"])
                and (data["owner_start"] is None or ints(data["owner_start"]))
                and isinstance(data["created"], (int, float)) and not isinstance(data["created"], bool)):
            raise ValueError("malformed pin meta: a field has the wrong type")
        return cls(**data)


def process_start(pid: int) -> Optional[int]:
    """Start time (clock ticks since boot) of a live process, None if it is gone: exited, or a
    zombie its parent has not reaped yet (dead all the same; es_join.c es_start_time agrees). A
    pin whose owner is a zombie is stale: a Grid Engine shepherd whose execd is slow to reap it
    kept its job's pin past `gc` (seen in CI, tests/uge/test_uge_faults.py)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return None if fields[0] in (b"Z", b"X") else int(fields[19])


def run_dir_problem(run_dir: str) -> Optional[str]:
    """Why `run_dir` cannot be used or created safely, or None: every directory on its way that
    exists must be a directory of root's, not writable by group or others (a symbolic link is
    judged itself, not followed); what is missing is created by _secure_dir."""
    path = "/"
    for part in [p for p in run_dir.split("/") if p]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None                                 # this and the rest are created, root's
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid != 0:
                return f"{path} is a symbolic link of uid {st.st_uid}'s"
            return run_dir_problem(os.path.join(os.path.realpath(path), os.path.relpath(run_dir, path)))
        if not stat.S_ISDIR(st.st_mode):
            return f"{path} is not a directory"
        if path != run_dir and (st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return f"{path} must be a directory of root's, not writable by group or others"
    return None


def _secure_dir(path: str, mode: int) -> None:
    """`path` as a directory of root's with `mode`; its missing parents are created (root's,
    0755) once every existing one is known to be root's alone (run_dir_problem)."""
    problem = run_dir_problem(path)
    if problem:
        raise PolicyError(f"site.run_dir {path}: {problem}")
    parent = os.path.dirname(path.rstrip("/"))
    if parent and not os.path.isdir(parent):
        _secure_dir(parent, 0o755)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SetupError(f"{path}: must be a directory owned by root and not writable by others")
    os.chmod(path, mode)


def _mount_of(path: str) -> Optional[List[str]]:
    """The mountinfo fields of the mount that `path` lives on (longest mount point prefix)."""
    best: Optional[List[str]] = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            if path == point or path.startswith(point.rstrip("/") + "/"):
                if best is None or len(point) >= len(best[4]):
                    best = fields
    return best


def make_private_if_shared(run_dir: str) -> bool:
    """A namespace file cannot be bound onto a shared mount (EINVAL): on hosts where "/" or
    /run is shared (systemd), give run_dir a private mount of its own, as `ip netns` does for
    /run/netns. It stays for the node's lifetime; nothing is done where the mount is private.
    """
    fields = _mount_of(run_dir)
    if fields is None:
        return False
    optional = fields[6:fields.index("-")]
    if not any(f.startswith("shared:") for f in optional):
        return False
    if fields[4] != run_dir:
        linux.mount(run_dir, run_dir, None, linux.MS_BIND)
    linux.mount(None, run_dir, None, linux.MS_PRIVATE)
    return True


class PinStore:
    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        faults.use(run_dir)

    def path(self, key: str) -> str:
        if not is_valid_name(key):
            raise UsageError(f"invalid pin key {key!r} ({NAME_RULE})")
        return os.path.join(self.run_dir, key)

    def keys(self) -> List[str]:
        try:
            return sorted(k for k in os.listdir(self.run_dir) if is_valid_name(k))
        except FileNotFoundError:
            return []

    def meta(self, key: str) -> PinMeta:
        with open(os.path.join(self.path(key), "meta.json")) as f:
            return PinMeta.from_json(f.read())

    def plan(self, key: str) -> Plan:
        _views()
        with open(os.path.join(self.path(key), "plan.json")) as f:
            return Plan.from_json(f.read())

    # -- prepare ---------------------------------------------------------------------------
    def reusable(self, key: str, plan: Plan, user: UserInfo) -> Optional[PinMeta]:
        """The existing pin `key`, if it holds the same view for the same user."""
        try:
            meta, old = self.meta(key), self.plan(key)
        except (OSError, ValueError, TypeError):
            return None
        if meta.uid != user.uid or old.environment != plan.environment or old.mount_ops != plan.mount_ops:
            return None
        return meta

    def prepare(self, key: str, plan: Plan, user: UserInfo, owner_pid: int,
                job: Optional[str] = None, share_hold: Optional[float] = None) -> Tuple[PinMeta, Plan]:
        """The view pinned under `key`, and the plan as pinned (a user image's plan gets its file,
        digest and Env from the builder that found it as the user). The environment's node prolog
        runs first (nodehooks.py); `job` is the scheduler's job id, for it. `share_hold`: a view
        other jobs may share is bound from the node's shared one (sharedviews.py), kept that many
        seconds after its last job; None: the job's own view."""
        _views()
        if os.geteuid() != 0:
            raise NotPermitted("prepare needs root (use `chos run` for an unprivileged view)")
        if not plan.mount_ops:
            raise UsageError("the host OS (local) needs no pin: run the job as it is")
        return self._create(key, plan, user, owner_pid, job, share_hold)

    def record(self, key: str, plan: Plan, user: UserInfo, owner_pid: int) -> PinMeta:
        """A record-only pin: the decision for a plan that needs no view (the host OS)."""
        _views()
        if os.geteuid() != 0:
            raise NotPermitted("recording a decision needs root")
        if plan.mount_ops:
            raise UsageError("a plan with a view is pinned with prepare, not recorded")
        return self._create(key, plan, user, owner_pid)[0]

    def _create(self, key: str, plan: Plan, user: UserInfo, owner_pid: int,
                job: Optional[str] = None, share_hold: Optional[float] = None) -> Tuple[PinMeta, Plan]:
        """The pin directory, the node prolog, the view pinned in it if the plan has one, plan.json
        and meta.json; on any failure nothing is left (and a prolog that ran gets its epilog)."""
        pin = self.path(key)
        _secure_dir(self.run_dir, 0o700)
        if plan.mount_ops:
            make_private_if_shared(self.run_dir)
        try:
            os.mkdir(pin, 0o700)
        except FileExistsError:
            if not self._maker_gone(key):
                raise UsageError(f"pin {key} exists already (release it first)") from None
            self.release(key, run_epilog=False)         # half made by a process killed meanwhile
            try:
                os.mkdir(pin, 0o700)
            except FileExistsError:
                raise UsageError(f"pin {key} exists already (release it first)") from None
        # who makes it: a pin without meta.json whose maker is gone is taken apart at once (gc,
        # or the next prepare of the key) rather than after HALF_MADE_GRACE
        try:
            _write_file(os.path.join(pin, "making"), f"{os.getpid()} {process_start(os.getpid())}\n")
        except BaseException:
            os.rmdir(pin)                               # nothing else made yet
            raise
        prolog_ran = False
        try:
            faults.point(self.run_dir, "pin-made")
            userns = plan.kind == "user-image"
            hooks = {k: nodehooks.hooks_of(plan.ops, k) for k in ("prolog", "epilog")}
            if hooks["prolog"] or hooks["epilog"]:
                env = nodehooks.hook_env("prolog", key, plan.environment, user.name, user.uid, owner_pid, job)
                _write_file(os.path.join(pin, "hooks.json"), json.dumps(env))
                if hooks["prolog"]:
                    prolog_ran = True
                    nodehooks.run("prolog", hooks["prolog"], env, _hook_timeout(plan.ops, "prolog"))
            if share_hold is not None:
                from . import sharedviews               # (lazy: hashlib, for shared views only)
            if plan.mount_ops and share_hold is not None and sharedviews.shareable(plan):
                sharedviews.SharedViews(self.run_dir).attach(
                    pin, plan, share_hold, lambda target: pin_namespace(target, lambda keep: build_view(plan) or {}))
            elif plan.mount_ops:
                plan = self._build_and_pin(pin, plan, user)
            if userns:                                  # joiners enter it as the user (es_join.c)
                _write_file(os.path.join(pin, "userns"), "")
            if plan.mount_ops:
                faults.point(self.run_dir, "pin-bound")
            faults.point(self.run_dir, "meta-before")
            meta = PinMeta(key, plan.environment, user.name, user.uid, owner_pid,
                           process_start(owner_pid), time.time(), plan.digest, userns)
            _write_file(os.path.join(pin, "plan.json"), plan.to_json())
            _write_file(os.path.join(pin, "meta.json"), json.dumps(asdict(meta)))
            faults.point(self.run_dir, "meta-written")
            os.unlink(os.path.join(pin, "making"))     # complete: its owner (meta.json) stands for it
            return meta, plan
        except nodehooks.HookFailed:
            self.release(key, run_epilog=False)        # the prolog failed: nothing to undo
            raise
        except BaseException:
            self.release(key, run_epilog=prolog_ran)
            raise

    def _build_and_pin(self, pin: str, plan: Plan, user: UserInfo) -> Plan:
        """Build the view in a child and bind its namespace onto pin/mnt from here
        (pin_namespace). A user's own image is found and built by the child as that user, in a
        user namespace of theirs (userimage.py); its report then carries the version it found."""
        if plan.kind != "user-image":
            report = pin_namespace(os.path.join(pin, "mnt"), lambda keep: build_view(plan) or {}, plan.namespaces)
            if isinstance(report.get("init"), int):     # the job's PID namespace (isolation.py)
                _namespaces()
                _write_file(os.path.join(pin, "init"), isolation.init_record(report["init"], plan.namespaces))
                isolation.leave_job_cgroups(report["init"])
            return plan
        report = pin_namespace(os.path.join(pin, "mnt"), lambda keep: _build_as_user(plan, user, keep))
        from .userimage import check_report             # what the user's builder found, checked
        return with_identity(plan, *check_report(report))

    def write_memo(self, key: str, inputs: str, shim: str) -> None:
        """`inputs` (the shim's raw request) and `shim` (its protocol lines) for later steps."""
        pin = self.path(key)
        try:
            _write_file(os.path.join(pin, "inputs"), inputs.replace("\n", " ") + "\n")
            _write_file(os.path.join(pin, "shim"), shim)   # last: a pin with `shim` is complete
            faults.point(self.run_dir, "memo-written")
        except SetupError:                              # run_dir full: no memo (later steps ask us)
            for name in ("inputs", "shim"):
                try:
                    os.unlink(os.path.join(pin, name))
                except OSError:
                    pass

    # -- join ----------------------------------------------------------------------------
    def join_and_exec(self, key: str, user: UserInfo, argv: Sequence[str],
                      cwd: Optional[str] = None) -> NoReturn:
        _namespaces()
        if os.geteuid() != 0:
            raise NotPermitted("join needs root (the scheduler shims join for their tasks)")
        pin = self.path(key)
        try:
            meta, plan = self.meta(key), self.plan(key)
            fd = os.open(os.path.join(pin, "mnt"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SetupError(f"no pin {key} on this node") from None
        if meta.uid != user.uid:
            os.close(fd)
            raise NotPermitted(f"pin {key} was prepared for {meta.user}, not {user.name}")
        if cwd is None:
            try:
                cwd = os.getcwd()
            except OSError:
                cwd = None
        environ = None
        userns = linux.foreign_userns(fd)
        # the job's pid, ipc and uts namespaces (an admin's view), from the host's pin directory:
        # as root, before the view hides it; the job starts in a child of ours below
        in_pid_namespace = userns is None and isolation.join_pinned(pin)
        if userns is not None:
            # a user's own view (owned by the user's own user namespace, whatever meta.json says):
            # entered as the user (root never walks a tree the user controls), through that namespace
            from .enter import become_user
            environ = dict(os.environ, HOME=user.home, USER=user.name, LOGNAME=user.name)
            become_user(user)
            linux.setns(userns, linux.CLONE_NEWUSER)
            os.close(userns)
        linux.setns(fd, linux.CLONE_NEWNS)              # also moves our root and cwd to the view's
        os.close(fd)
        if in_pid_namespace:
            isolation.fork_into_namespace(user)
        finish_and_exec(plan, user, argv, cwd, environ)

    # -- release and gc ------------------------------------------------------------------
    def release(self, key: str, run_epilog: bool = True) -> bool:
        """Unpin (the view dies with its last process), run the environment's node epilog, remove
        the pin. False if there was none."""
        pin = self.path(key)
        if not os.path.isdir(pin):
            return False
        epilog = self._epilog(pin) if run_epilog else None
        try:                                            # the job's PID namespace: all its processes end
            with open(os.path.join(pin, "init")) as f:
                _namespaces()
                isolation.kill_init(f.read())
        except FileNotFoundError:
            pass
        mounted = mount_points()
        for name in ("mnt", "ipc", "uts"):
            target = os.path.join(pin, name)
            if target in mounted:
                try:
                    linux.umount2(target, linux.MNT_DETACH)
                except SetupError as e:
                    if linux.errno_of(e) not in ("EINVAL", "ENOENT"):   # released meanwhile by another
                        raise
        faults.point(self.run_dir, "release-unmounted")
        if epilog is not None:
            nodehooks.run("epilog", *epilog)
        try:                                            # a shared view: one job less (sharedviews.py),
            with open(os.path.join(pin, "view")) as f:  # before the pin's directory goes: once it is
                shared: Optional[str] = f.read().strip()  # gone, so is what it held
        except FileNotFoundError:
            shared = None
        if shared is not None:
            from . import sharedviews                   # (lazy: hashlib, for shared views only)
            sharedviews.SharedViews(self.run_dir).detach(key, shared)
        faults.point(self.run_dir, "release-detached")
        # the same list as plugins/common/es_release.c's pin_files
        for name in ("mnt", "ipc", "uts", "init", "plan.json", "meta.json", "shim", "inputs", "userns",
                     "hooks.json", "hooks.released", "view", "making"):
            try:
                os.unlink(os.path.join(pin, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(pin)
        except FileNotFoundError:
            return False
        return True

    @staticmethod
    def _epilog(pin: str) -> Optional[Tuple[List[str], Dict[str, str], float]]:
        """(argv, env, timeout) of the pin's node epilog, from its plan and the prolog's
        environment (root's files in the pin); None when it has none. Without hooks.json (the
        prolog's environment, written for a plan with a node hook) that is None whatever the plan
        says: the plan is not read."""
        if not os.path.lexists(os.path.join(pin, "hooks.json")):
            return None
        _views()
        try:
            with open(os.path.join(pin, "plan.json")) as f:
                ops = Plan.from_json(f.read()).ops
            if not nodehooks.hooks_of(ops, "epilog"):
                return None
            # claimed by one release only (the job epilog and a step's exit may release at once)
            os.rename(os.path.join(pin, "hooks.json"), os.path.join(pin, "hooks.released"))
            with open(os.path.join(pin, "hooks.released")) as f:
                env = json.loads(f.read())
        except (OSError, ValueError):
            return None
        argv = list(nodehooks.hooks_of(ops, "epilog"))
        if not argv or not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            return None
        return argv, dict(env, ENVSCHED_HOOK="epilog"), _hook_timeout(ops, "epilog")

    def stale(self) -> List[str]:
        """Pins whose owner process is gone (or was replaced by another with the same pid)."""
        out = []
        for key in self.keys():
            try:
                meta = self.meta(key)
            except (OSError, ValueError, TypeError):
                if self._maker_gone(key) or _age(self.path(key)) > HALF_MADE_GRACE:
                    out.append(key)                     # half-made, its maker gone (or old)
                continue                                # half-made and young: being prepared
            if process_start(meta.owner_pid) != meta.owner_start or meta.owner_start is None:
                out.append(key)
        return out

    def _maker_gone(self, key: str) -> bool:
        """A pin without meta.json whose maker (the `making` file: pid and start time, the
        resolver's or the decision cache's child) is no longer running: killed while making it."""
        pin = self.path(key)
        if os.path.exists(os.path.join(pin, "meta.json")):
            return False
        try:
            with open(os.path.join(pin, "making")) as f:
                pid, start = f.read().split()
            return process_start(int(pid)) != int(start)
        except (OSError, ValueError):
            return False

    def gc(self) -> List[str]:
        removed = []
        for key in self.stale():
            if self.release(key):
                removed.append(key)
                faults.point(self.run_dir, "gc-released")
        from . import sharedviews                       # (lazy: hashlib, for shared views only)
        sharedviews.SharedViews(self.run_dir).release_idle(dangling=True)
        return removed

    def list(self) -> List[Dict[str, object]]:
        out = []
        for key in self.keys():
            try:
                out.append(asdict(self.meta(key)))
            except (OSError, ValueError, TypeError):
                out.append({"key": key, "broken": True})
        return out


def _hook_timeout(ops: List[Dict[str, object]], kind: str) -> float:
    op = next((o for o in ops if o.get("op") == f"node_{kind}"), {})
    timeout = op.get("timeout")
    return float(timeout) if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) else 300.0


def _build_as_user(plan: Plan, user: UserInfo, keep: Tuple[int, int]) -> Dict[str, object]:
    """In the builder child: become the user for good (nothing of root's left open), find their
    image in their store and build the view in a user namespace of theirs; the report says what
    was found."""
    from . import audit
    from .enter import become_user
    from .userimage import find_user_image, identity_report
    audit.close()
    os.closerange(3, min(keep))                         # nothing of root's stays open
    os.closerange(min(keep) + 1, max(keep))
    os.closerange(max(keep) + 1, 1 << 16)
    become_user(user)
    source, digest, image_env, workdir = find_user_image(plan)
    found = with_identity(plan, source, digest, image_env, workdir)
    build_view(found, unprivileged=True)
    return identity_report(found, image_env, workdir)


def pin_namespace(target: str, build: Callable[[Tuple[int, int]], Dict[str, object]],
                  isolated: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """Run `build` in a child, which makes a mount namespace of its own and returns a report;
    bind that namespace onto the file `target` from here (a view's pin, an image holder); the
    child's report, once pinned. `build` gets the child's two pipe descriptors (to keep open).
    `isolated`: the plan's namespaces op; those namespaces are made around the build
    (isolation.py) and bound beside `target` (ipc, uts, pid), the report's "init" is the PID
    namespace's init.

    The kernel refuses that bind (EINVAL, fs/namespace.c: mnt_ns_loop) unless the new
    namespace is newer than ours, judged by namespace id. Ids are not handed out in creation
    order across CPUs (measured on 6.18 with NS_GET_MNTNS_ID: two CPUs drew from 470.. and
    4568.. at the same time), so from a mount namespace other than the host's (sshd or su in
    a private namespace, a container) about half the views came out "older" than their
    caller and could not be pinned. A namespace whose id is not above ours is discarded and
    made again in a child held on the next CPU: every CPU's ids after our namespace was made
    are above it on the CPU that made it, so one of at most (1 + CPUs) tries can be pinned.
    Where the kernel has no namespace ids (before 6.8) they follow creation order and the
    first one is pinned."""
    _views()
    ours = linux.mntns_id("/proc/self/ns/mnt")
    cpus: List[Optional[int]] = [None] + list(range(os.cpu_count() or 1))   # every CPU, not just ours
    for attempt, cpu in enumerate(cpus):
        last = attempt == len(cpus) - 1
        init = bool(isolated and isolated.get("pid"))
        pid, ready_r, done_w = _spawn_builder(_isolating(build, isolated), cpu, init)
        stays = False
        try:
            report = _builder_report(_read_all(ready_r))
            if not report["ok"]:
                raise EnvschedError(str(report["message"]), code=ExitCode(report["code"]))
            made = linux.mntns_id(f"/proc/{pid}/ns/mnt")
            if ours is not None and made is not None and made <= ours and not last:
                continue                                # older than us: the bind would fail
            if not os.path.exists(target):
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            linux.mount(f"/proc/{pid}/ns/mnt", target, None, linux.MS_BIND)
            # ipc and uts of an environment without "pid" are held by binds; with "pid", the init
            # holds all three and joiners enter them through its pidfd (isolation.join_pinned)
            for name in [n for n in ("ipc", "uts") if isolated and isolated.get(n) and not init]:
                beside = os.path.join(os.path.dirname(target), name)
                os.close(os.open(beside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
                linux.mount(f"/proc/{pid}/ns/{name}", beside, None, linux.MS_BIND)
            if init:                                    # pinned: the builder stays, as the init
                os.write(done_w, b"1")
                stays = True
                report = dict(report, init=pid)
            return report
        finally:
            os.close(ready_r)
            os.close(done_w)                            # releases the child (EOF: it exits)
            if not stays:
                os.waitpid(pid, 0)
    raise SetupError("the namespace could not be pinned")   # not reached: the last try pins or raises


def _isolating(build: Callable[[Tuple[int, int]], Dict[str, object]], isolated: Optional[Dict[str, object]]
               ) -> Callable[[Tuple[int, int]], Dict[str, object]]:
    """`build`, with the job's ipc and uts namespaces made before it and, in a PID namespace of
    its own (the builder is its pid 1), the job's /proc mounted after it (isolation.py)."""
    if not isolated:
        return build
    _namespaces()                                       # here, on the host: the child runs it

    def run(keep: Tuple[int, int]) -> Dict[str, object]:
        isolation.unshare_ipc_uts(isolated)
        report = build(keep)
        if isolated.get("pid"):
            isolation.mount_job_proc()
        return report
    return run


def _spawn_builder(build: Callable[[Tuple[int, int]], Dict[str, object]], cpu: Optional[int],
                   init: bool = False) -> Tuple[int, int, int]:
    """A child that runs `build` (on `cpu` if given), reports on a pipe and waits until the
    parent closes the other one: (pid, report fd, release fd). With `init`, the child is pid 1 of
    a new PID namespace and, told b"1" on the release pipe, stays as its init (isolation.py)."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = _fork_into_new_pid_namespace() if init else os.fork()
    if pid == 0:                                        # child: build, report, wait
        os.close(ready_r)
        os.close(done_w)
        try:
            if cpu is not None:
                try:
                    os.sched_setaffinity(0, {cpu})
                except OSError:                         # not ours to use (cpuset): try it where we are
                    pass
            report = build((ready_w, done_r))
            os.write(ready_w, json.dumps({"ok": True, **report}).encode())
        except EnvschedError as e:
            os.write(ready_w, json.dumps({"ok": False, "message": e.message,
                                          "code": int(e.code), "type": type(e).__name__}).encode())
        except BaseException as e:  # noqa: BLE001 - the parent must hear about anything
            os.write(ready_w, json.dumps({"ok": False, "message": f"internal error: {e!r}",
                                          "code": int(ExitCode.INTERNAL), "type": "internal"}).encode())
        os.close(ready_w)
        if os.read(done_r, 1) == b"1" and init:         # parent has pinned (or given up: EOF)
            isolation.serve_as_init()
        os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    return pid, ready_r, done_w


def _fork_into_new_pid_namespace() -> int:
    """fork(), the child as pid 1 of a new PID namespace; we stay where we are (setns back: only
    the next child of ours goes there)."""
    ours = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.unshare(linux.CLONE_NEWPID)
        pid = os.fork()
        if pid != 0:
            linux.setns(ours, linux.CLONE_NEWPID)
        return pid
    except BaseException:
        linux.setns(ours, linux.CLONE_NEWPID)
        raise
    finally:
        os.close(ours)


def _age(path: str) -> float:
    try:
        return time.time() - os.lstat(path).st_mtime
    except OSError:
        return 0.0


def is_mounted_here(path: str) -> bool:
    """Is `path` a mount point in our namespace (a namespace file bound there: a pin's mnt, an
    image holder)? Its mountinfo line; os.path.ismount does not see binds of namespace files."""
    return path in mount_points()


def mount_points() -> set:
    """Every mount point of our namespace (mountinfo's field 5, octal escapes decoded)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return {line.split()[4].replace("\\040", " ") for line in f}
    except OSError:
        return set()


def _write_file(path: str, text: str) -> None:
    """A new file, whole or not at all: a write that fails (run_dir full) leaves no part of it
    behind, and says which file in one line (SetupError, exit 71)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except OSError as e:
        try:
            os.unlink(path)
        except OSError:
            pass
        if e.errno in DISK_FULL:
            raise SetupError(f"cannot write {path}: {e.strerror} (the node's run_dir is full)") from None
        raise


def _builder_report(data: bytes) -> Dict[str, object]:
    """The builder's report: {"ok": true, ...} or {"ok": false, "message", "code"}; anything
    else (it died, or a user's builder wrote nonsense) is a failure."""
    try:
        report = json.loads(data) if data else None
    except (ValueError, RecursionError):
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("ok"), bool):
        return {"ok": False, "message": "the view builder died or reported nonsense", "code": int(ExitCode.SETUP_FAILED)}
    if not report["ok"]:
        code = report.get("code")
        if not isinstance(report.get("message"), str) or code not in set(int(c) for c in ExitCode):
            return {"ok": False, "message": "the view builder failed", "code": int(ExitCode.SETUP_FAILED)}
    return report


def _read_all(fd: int, limit: int = 1 << 20) -> bytes:
    """Up to `limit` bytes until EOF (a report is small; a user's builder may not fill memory)."""
    data = b""
    while len(data) <= limit:
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk
    return b""
