"""Options and helpers shared by the `envsched` subcommands that act for a job."""
from __future__ import annotations

import argparse
import contextlib
import os
import syslog
from typing import Iterator, Optional

from .. import audit
from ..errors import EnvschedError, NotPermitted
from ..identity import lookup_user
from ..policy.model import Mount
from ..service import JobContext


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
    chos_var = args.chos_var if args.chos_var is not None else os.environ.get("CHOS")
    binds = tuple(getattr(args, "bind", ()))
    if binds:
        require_root("--bind")
    return JobContext(user=lookup_user(args.user), option=args.request, chos_var=chos_var,
                      account=args.account, partition=args.partition, cwd=args.cwd, job=args.job,
                      read_user_file=not args.no_user_file, extra_binds=binds)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NotPermitted(f"{what} needs root")


def bind_arg(value: str) -> Mount:
    """--bind SRC[:DST[:ro|rw]] (shim configuration, root only)."""
    parts = value.split(":")
    if not 1 <= len(parts) <= 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise argparse.ArgumentTypeError(f"expected SRC[:DST[:ro|rw]], got {value!r}")
    src = parts[0]
    dst = parts[1] if len(parts) > 1 and parts[1] else src
    for p in (src, dst):
        if not p.startswith("/") or ".." in p.split("/") or p == "/":
            raise argparse.ArgumentTypeError(f"not an absolute path below /: {p!r}")
    return Mount(src, dst, writable=len(parts) == 3 and parts[2] == "rw", required=True)


@contextlib.contextmanager
def logged_failure(what: str, ctx: JobContext, env: str, key: Optional[str] = None) -> Iterator[None]:
    """Failures while building or entering a view go to the admin log before the user's line."""
    try:
        yield
    except EnvschedError as e:
        audit.log("failed", syslog.LOG_ERR, job=ctx.job, user=ctx.user.name, env=env, key=key,
                  step=what, code=int(e.code), reason=e.detail or e.message)
        raise
