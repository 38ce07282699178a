"""Options and helpers shared by the `envsched` subcommands that act for a job (defining the
options imports nothing of the resolver's: `release` defines them too, #13)."""
from __future__ import annotations

import os
import stat

from ..errors import EnvschedError
from ..exitcodes import ExitCode
from .common import require_root   # noqa: F401 - here too, for the commands that import it from here

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any, Optional

    from ..policy.model import Mount
    from ..service import JobContext

MAX_LINKS = 40          # the kernel's limit on symbolic links in one lookup


def job_args(p: argparse.ArgumentParser, user_required: bool = True) -> None:
    p.add_argument("--user", required=user_required, help="job user (name or uid)")
    p.add_argument("--request", metavar="NAME", help="explicit request (the job's option)")
    p.add_argument("--chos-var", metavar="NAME",
                   help="the job's CHOS variable (default: CHOS from this command's environment)")
    p.add_argument("--partition", help="partition or queue")
    p.add_argument("--account")
    p.add_argument("--job", help="scheduler job id (for the admin log)")
    p.add_argument("--cwd", help="working directory to keep (default: current)")
    p.add_argument("--no-user-file", action="store_true", help="do not read ~/.chos")


def job_context(args: argparse.Namespace) -> JobContext:
    from ..identity import lookup_user
    from ..service import JobContext
    chos_var = args.chos_var if args.chos_var is not None else os.environ.get("CHOS")
    binds = tuple(getattr(args, "bind", ()))
    if binds:
        require_root("--bind")
        for b in binds:
            check_bind_source(b.source)
    return JobContext(user=lookup_user(args.user), option=args.request, chos_var=chos_var,
                      account=args.account, partition=args.partition, cwd=args.cwd, job=args.job,
                      scheduler=scheduler_of(getattr(args, "key", None)),
                      read_user_file=not args.no_user_file, extra_binds=binds)


SCHEDULER_KEYS = ("slurm", "uge", "torque", "openpbs", "pam")     # each shim's pin key prefix


def scheduler_of(key: Optional[str]) -> Optional[str]:
    """The scheduler a pin key belongs to ("slurm-123.0" -> "slurm"), for the admin log."""
    prefix = (key or "").split("-", 1)[0]
    return prefix if prefix in SCHEDULER_KEYS else None


def _untrusted(st: os.stat_result) -> bool:
    return st.st_uid != 0 or bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def check_bind_source(source: str) -> None:
    """A shim's --bind source is resolved and bind-mounted by root, who follows symbolic links: if
    a user could replace any directory on the way, or a link, they could point root at a directory
    they cannot reach themselves (below a 0700 parent: another home, /root) and see it in the view.

    So "/", every directory crossed on the way to the source and every symbolic link met (whose
    target is walked the same way) must be root's, and the directories not writable by group or
    others, as for programs root runs (plugins/common/es_run.c). The source itself may be anyone's
    (a scheduler's spool, a world-writable scratch): its contents are its owner's, with the
    ordinary permissions, and nobody but root can replace it. A missing component is left to the
    view (which refuses a required bind that is missing): only root can create it there, since
    everything above it is root's. Raises an exit-78 error (a configuration problem)."""
    def refuse(what: str) -> None:
        raise EnvschedError(f"--bind {source}: {what} (root follows bind sources: keep them in "
                            f"directories of root's)", code=ExitCode.POLICY_INVALID)

    if _untrusted(os.lstat("/")):
        refuse("/: must be owned by root and not writable by group or others")
    parts = [p for p in source.split("/") if p]
    cur, links = "", 0
    while parts:
        comp = parts.pop(0)
        if comp == ".":
            continue
        if comp == "..":
            cur = cur.rsplit("/", 1)[0]
            continue
        nxt = f"{cur}/{comp}"
        try:
            st = os.lstat(nxt)
        except OSError:
            return                                   # missing (or not a directory): the view says so
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid != 0:
                refuse(f"{nxt}: a symbolic link not owned by root")
            links += 1
            if links > MAX_LINKS:
                refuse("too many levels of symbolic links")
            target = os.readlink(nxt)
            parts = [p for p in target.split("/") if p] + parts
            if target.startswith("/"):
                cur = ""
            continue
        if not parts:
            return                                   # the source itself: anyone's
        if _untrusted(st):
            refuse(f"{nxt}: must be owned by root and not writable by group or others")
        cur = nxt


def bind_arg(value: str) -> Mount:
    """--bind SRC[:DST[:ro|rw]] (shim configuration, root only)."""
    from ..policy.model import Mount
    parts = value.split(":")
    if not 1 <= len(parts) <= 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        from argparse import ArgumentTypeError
        raise ArgumentTypeError(f"expected SRC[:DST[:ro|rw]], got {value!r}")
    src = parts[0]
    dst = parts[1] if len(parts) > 1 and parts[1] else src
    for p in (src, dst):
        if not p.startswith("/") or ".." in p.split("/") or p == "/":
            from argparse import ArgumentTypeError
            raise ArgumentTypeError(f"not an absolute path below /: {p!r}")
    return Mount(src, dst, writable=len(parts) == 3 and parts[2] == "rw", required=True)


class logged_failure:
    """Failures while building or entering a view go to the admin log before the user's line:

        with logged_failure("prepare", ctx, env, key=key): ...

    (a class, not contextlib's decorator: contextlib costs every resolver run its import)"""

    def __init__(self, what: str, ctx: JobContext, env: str, key: Optional[str] = None) -> None:
        self.what, self.ctx, self.env, self.key = what, ctx, env, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, e: Any, tb: Any) -> bool:
        from ..errors import DISK_FULL
        if isinstance(e, OSError) and e.errno in DISK_FULL:     # run_dir full: one line, exit 71
            from ..errors import SetupError
            full = SetupError(f"cannot write {e.filename or 'to run_dir'}: {e.strerror} (the node's run_dir is full)")
            self.__exit__(type(full), full, None)
            raise full from None
        if isinstance(e, EnvschedError):
            import syslog
            from .. import audit
            ctx = self.ctx
            audit.log("failed", syslog.LOG_ERR, job=ctx.job, user=ctx.user.name, env=self.env, key=self.key,
                      step=self.what, code=int(e.code), reason=e.detail or e.message, scheduler=ctx.scheduler)
        return False                                    # raised on, as it was
