"""Isolation namespaces of a job (`namespaces = ["pid", "ipc", "uts"]`): made with its view, held
for the job, entered by every joiner.

  pid        the resolver forks the view's builder into a new PID namespace: the builder is its
             pid 1. It unshares ipc and uts too, builds the view, mounts the job's /proc in it and,
             once the pin is made (else it exits and the namespace with it), stays as the
             namespace's init: it reaps orphans until the job is released. The resolver moves it
             out of the job's cgroups into those of the node's pid 1 (a step's process tracking must
             not kill it while later steps still come) and records "PID START NAMES" in pin/init.
             A joiner opens a pidfd of the init, checks its start time, and enters all its
             namespaces with one setns, as root, before the view (whose /proc is the job's); its
             next child is the job's first process in the namespace (the C starters and
             `envsched join` fork there; on Slurm slurmstepd forks the tasks there:
             plugins/slurm-spank/remote.c). Release kills the init: the kernel then kills every
             process left in the namespace, so no orphan of the job survives it.
  ipc, uts   without "pid" there is no init: the builder's ipc and uts namespaces are bound in the
             pin as pin/ipc and pin/uts, and joiners setns into those.

Why Python for the init: it is the builder, already there (no process is added for it); #13 may
move it into the C runtime. It holds no file of the job's and runs no code of the job's.
"""
from __future__ import annotations

import errno
import os
import signal      # at the top: the builder and the joiners use it after entering a view, where
                   # the host's Python library is not there to import it from

from . import linux
from .errors import SetupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

    from .identity import UserInfo

# (select is imported where it is used, on the host: a pin without isolation namespaces never
# needs it)

# what a joiner forwards to the job's first process in the namespace (the rest: process group
# signals reach both, SIGKILL and SIGSTOP cannot be caught)
FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCONT", "SIGALRM", "SIGXCPU",
             "SIGWINCH", "SIGTSTP")
FLAGS = {"pid": linux.CLONE_NEWPID, "ipc": linux.CLONE_NEWIPC, "uts": linux.CLONE_NEWUTS}
INIT_GONE = "cannot start the job in its process namespace: it has ended (its init is gone)"
KILL_WAIT = 5.0          # seconds release waits for the namespace's processes to be gone


def unshare_ipc_uts(spec: Dict[str, Any]) -> None:
    """In the builder, before the view: the job's own IPC and UTS namespaces, and its host name."""
    flags = (linux.CLONE_NEWIPC if spec.get("ipc") else 0) | (linux.CLONE_NEWUTS if spec.get("uts") else 0)
    if flags:
        linux.unshare(flags)
    if spec.get("uts") and spec.get("hostname"):
        linux.sethostname(spec["hostname"])


def mount_job_proc() -> None:
    """In the view, by a process of the job's PID namespace: the job's /proc, a new instance for
    that namespace over the host's."""
    linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)


def serve_as_init() -> None:
    """The builder, pid 1 of the job's namespace, once the pin is made: nothing of the resolver's
    kept open (a shim reads the resolver's output until EOF), then reap until killed (release).
    Never returns."""
    try:
        os.setsid()
        os.closerange(0, 1 << 16)
        waited = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        signal.pthread_sigmask(signal.SIG_BLOCK, waited)
        while True:
            signum = signal.sigwait(waited)
            while True:                                 # every orphan that ended
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
            if signum != signal.SIGCHLD:
                break                                   # the kernel kills the rest of the namespace
    finally:
        os._exit(0)


def leave_job_cgroups(pid: int) -> None:
    """Move `pid` into the cgroups of the node's pid 1, hierarchy by hierarchy (best effort: where
    a hierarchy is not mounted at its root or refuses, it stays). From the host's mount namespace."""
    try:
        with open("/proc/1/cgroup") as f:
            lines = f.read().splitlines()
        with open(f"/proc/{pid}/cgroup") as f:
            lines = sorted(set(lines) - set(f.read().splitlines()))    # where it is not there yet
    except OSError:
        return
    if not lines:
        return
    mounts = _cgroup_mounts()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        where = mounts.get(frozenset(controllers.split(",")) if controllers else frozenset())
        if where is None:
            continue
        try:
            with open(os.path.join(where, path.lstrip("/"), "cgroup.procs"), "w") as f:
                f.write(str(pid))
        except OSError:
            pass


NOT_CONTROLLERS = {"rw", "ro", "nosuid", "nodev", "noexec", "relatime", "clone_children", "xattr", "noprefix",
                   "cpuset_v2_mode", "none"}


def _cgroup_mounts() -> Dict[frozenset, str]:
    """{controllers (as /proc/PID/cgroup names them): mount point} of the cgroup hierarchies
    mounted at their root (cgroup2: the empty set)."""
    out: Dict[frozenset, str] = {}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                fstype, options = fields[sep + 1], fields[sep + 3].split(",")
                if fields[3] != "/" or fstype not in ("cgroup", "cgroup2"):
                    continue
                names = frozenset() if fstype == "cgroup2" else frozenset(
                    o for o in options if o not in NOT_CONTROLLERS and not o.startswith("release_agent="))
                out.setdefault(names, fields[4])
    except (OSError, ValueError, IndexError):
        return out
    return out


def init_record(pid: int, spec: Dict[str, Any]) -> str:
    """pin/init: "PID START NAMES", NAMES the namespaces the init holds (pid, ipc, uts)."""
    from .pin import process_start
    names = ",".join(n for n in ("pid", "ipc", "uts") if spec.get(n))
    return f"{pid} {process_start(pid)} {names}\n"


def _parse_record(record: str) -> Tuple[int, int, str]:
    """(pid, start time, namespace names) of pin/init, or ValueError."""
    pid_text, start_text, names = record.split()
    pid, start = int(pid_text), int(start_text)
    if pid <= 1:
        raise ValueError(f"not an init's pid: {pid}")
    return pid, start, names


def _hold(pid: int, start: int) -> Optional[int]:
    """A pidfd of process `pid` if it is the one that started at `start`: opened before the start
    time is checked, so it holds that very process, never a later one with a recycled pid; None
    when it is gone (or not visible from here: see kill_init)."""
    from .pin import process_start
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if process_start(pid) != start:
        os.close(fd)
        return None
    return fd


def open_init(record: str) -> Tuple[int, int]:
    """(a pidfd of the init that `record` names, the CLONE_NEW* flags of its namespaces);
    SetupError when it is gone (the job's namespaces have ended)."""
    try:
        pid, start, names = _parse_record(record)
        flags = 0
        for name in names.split(","):
            flags |= FLAGS[name]
    except (ValueError, KeyError):
        raise SetupError("the pin's init record is malformed") from None
    fd = _hold(pid, start)
    if fd is None:
        raise SetupError(INIT_GONE)
    return fd, flags


def kill_init(record: str) -> None:
    """Kill the init that `record` (pin/init) names, if it is still that process (_hold), and wait
    (KILL_WAIT at most) until it has exited: the kernel has then killed every process of its
    namespace."""
    import select
    from .pin import process_start
    try:
        pid, start, _ = _parse_record(record)
    except ValueError:
        return
    fd = _hold(pid, start)
    if fd is None:
        if process_start(pid) == start:                 # alive, in /proc, yet not ours to see
            raise SetupError(f"cannot end the job's process namespace: its init (pid {pid}) is not in this "
                             "process's PID namespace (release from the host's)")
        return
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        select.select([fd], [], [], KILL_WAIT)           # readable once it has exited
        try:
            os.waitpid(pid, os.WNOHANG)                 # our own child (the resolver made the pin)
        except ChildProcessError:
            pass
    except ProcessLookupError:
        return
    finally:
        os.close(fd)


def join_pinned(pin: str) -> bool:
    """As root, enter the isolation namespaces of the pin directory `pin`: those its init holds
    (pin/init, one setns on its pidfd), else the ipc and uts binds (an environment without "pid");
    True when a PID namespace was joined: fork before exec."""
    try:
        with open(os.path.join(pin, "init"), opener=_nofollow) as f:
            record = f.read()
    except FileNotFoundError:
        record = ""
    if record:
        fd, flags = open_init(record)
        try:
            linux.setns(fd, flags)
        except SetupError as e:
            if linux.errno_of(e) == "ESRCH":            # exited since (a zombie keeps its pidfd)
                raise SetupError(INIT_GONE) from None
            raise
        finally:
            os.close(fd)
        return bool(flags & linux.CLONE_NEWPID)
    for name in ("ipc", "uts"):
        try:
            fd = os.open(os.path.join(pin, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            linux.setns(fd, FLAGS[name])
        finally:
            os.close(fd)
    return False


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def fork_into_namespace(user: "UserInfo") -> None:
    """After setns into a PID namespace: fork. The child returns (the job's first process in the
    namespace, killed if we die); we stay outside as `user` (whose signals must reach the job, as
    the scheduler's do), forward signals to it and exit as it did."""
    try:
        pid = os.fork()
    except OSError as e:
        raise SetupError(INIT_GONE if e.errno == errno.ENOMEM
                         else f"cannot start the job in its process namespace: {e.strerror}") from None
    if pid == 0:
        linux.set_parent_death_signal(signal.SIGKILL)
        return
    from .identity import drop_privileges
    drop_privileges(user)
    _wait_forwarding(pid)


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    if signum == signal.SIGTSTP:
        os.kill(os.getpid(), signal.SIGSTOP)


def enter_in_process(spec: Dict[str, Any]) -> None:
    """The in-process form (`chos run`, `envsched exec`), in the view just built: the ipc and uts
    namespaces, and with "pid" a namespace whose init is a child of ours: it mounts the job's
    /proc, forks the job (which returns from here) and exits as the job does, taking what the job
    left with it; we forward signals to it and exit the same way. Nothing is pinned."""
    unshare_ipc_uts(spec)
    if not spec.get("pid"):
        return
    linux.unshare(linux.CLONE_NEWPID)
    init = os.fork()
    if init != 0:
        _wait_forwarding(init)
    linux.set_parent_death_signal(signal.SIGKILL)
    linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    job = os.fork()
    if job == 0:
        return
    _wait_forwarding(job, reap_all=True)


def _wait_forwarding(pid: int, reap_all: bool = False) -> None:
    """Forward signals to `pid`, wait for it (reaping any other child meanwhile when we are an
    init) and exit as it did. Never returns."""
    for name in FORWARDED:
        signal.signal(getattr(signal, name), lambda s, _f: _forward(pid, s))
    while True:
        try:
            done, status = os.waitpid(-1 if reap_all else pid, 0)
        except ChildProcessError:
            os._exit(70)
        except InterruptedError:
            continue
        if done == pid:
            break
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)
    os._exit(os.WEXITSTATUS(status))
