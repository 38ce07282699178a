"""`chos`: the user's command (list, which, set, run, shell, submit; CHOS-compatible `CHOS=x chos`)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from ..enter import enter_and_exec
from ..errors import UsageError
from ..exitcodes import ExitCode
from ..identity import current_user
from ..names import LOCAL, REQUEST_RULE, parse_request, show
from ..policy import Policy
from ..policy.model import Environment
from ..resolve import Decision, allowed_names, check_name, resolve
from ..service import JobContext, RequestRefused, plan_for_job, request_for
from ..userfile import read_user_file
from .common import (
    describe_decision,
    format_steps,
    parser,
    policy_from,
    policy_on_subcommands,
    run_main,
    say,
    split_command,
)
from . import chos_image_cmds
from .submit_cmd import add_parser as add_submit_parser

SUBCOMMANDS = ("list", "which", "set", "run", "shell", "submit", "image", "-h", "--help")


def _ctx(args: argparse.Namespace, policy: Policy, option: Optional[str] = None,
         show_all: bool = False) -> JobContext:
    """The request as a job of mine would make it. `show_all` reads ~/.chos even when a higher
    source decides, so `chos which` / `chos list` can show every step."""
    user = current_user()
    user_file = (read_user_file(user, policy.site.user_file, policy.site.user_file_timeout)
                 if show_all else None)
    return JobContext(user=user, option=option, chos_var=os.environ.get("CHOS") or None,
                      partition=getattr(args, "partition", None), account=getattr(args, "account", None),
                      user_file=user_file)


def cmd_list(args: argparse.Namespace) -> int:
    policy = policy_from(args)
    ctx = _ctx(args, policy, show_all=True)
    req = request_for(policy, ctx)
    allowed = allowed_names(policy, req)
    outcome = resolve(policy, req)
    current = outcome.name if isinstance(outcome, Decision) else None
    for name in allowed:
        env = policy.get(name)
        marks = ("*" if name == policy.site.default else " ") + (">" if name == current else " ")
        text = env.description if env else ("the host OS, no switch" if name == LOCAL else "chos image list")
        print(f"{marks} {name:<16} {text}")
        if args.versions and env is not None:
            for line in version_lines(policy, env):
                print(f"      {line}")
    print("(* site default, > what your jobs get now; see `chos which`)")
    if args.versions:
        print("(versions: = current; ask for another with --chos=NAME@VERSION or NAME@sha256:<12+ hex digits>)")
    return ExitCode.OK


def version_lines(policy: Policy, env: Environment) -> List[str]:
    """The versions of `env` this node has, newest first, the current one marked '='."""
    import time
    from ..errors import EnvschedError
    fmt = lambda t: time.strftime("%Y-%m-%d", time.localtime(t))  # noqa: E731
    try:
        if env.image:
            from ..images.store import ImageStore
            ref, _, pinned = env.image.partition("@")
            recs = ImageStore(policy.site.image_dir).versions(ref)
            current = pinned or (recs[0].digest if recs else "")
            return [f"{'=' if r.digest == current else ' '} {r.digest[:19]}  imported {fmt(r.imported)}"
                    + (f"  {r.source}" if r.source else "") for r in recs] or ["(no image in the store yet)"]
        from ..versions import StampBook, stamps_dir
        book = StampBook(stamps_dir(policy.source))
        now = book.current(env)
        out = [f"{'=' if now and s.digest == now.digest and s.path == now.path else ' '} {s.digest[:19]}  "
               f"{s.version or '-':<12} stamped {fmt(s.stamped)}  {s.path}" for s in book.live(env.name)]
        return out or [f"= {env.version or '(not stamped)'}  {env.path}"]
    except EnvschedError as e:
        return [f"(versions unknown: {e.message})"]


def cmd_which(args: argparse.Namespace) -> int:
    policy = policy_from(args)
    ctx = _ctx(args, policy, show_all=True)
    outcome = resolve(policy, request_for(policy, ctx))
    if isinstance(outcome, Decision):
        print(f"your jobs get {describe_decision(outcome)}")
        if outcome.warning:
            print(f"warning: {outcome.warning}")
        code = ExitCode.OK
    else:
        print(outcome.message())
        code = ExitCode.REFUSED
    print("\n".join(format_steps(outcome.steps)))
    return code


def cmd_set(args: argparse.Namespace) -> int:
    policy = policy_from(args)
    user = current_user()
    if parse_request(args.name) is None:
        raise UsageError(f"{show(args.name)} is not a valid environment name ({REQUEST_RULE})")
    # who may use it is checked now; account/partition rules apply to each job later
    outcome = check_name(policy, request_for(policy, JobContext(user, read_user_file=False)),
                         "chos set", args.name, identity_only=True)
    if not isinstance(outcome, Decision):
        raise RequestRefused(outcome.message())
    path = os.path.join(user.home, policy.site.user_file)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, (args.name + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)                  # replaces a symlink itself, never writes through it
    print(f"{path}: {args.name} (your next jobs and logins use it)")
    return ExitCode.OK


def _run(args: argparse.Namespace, name: Optional[str], command: List[str]) -> int:
    policy = policy_from(args)
    ctx = _ctx(args, policy, option=name)
    decision, plan = plan_for_job(policy, ctx)
    if decision.warning:
        say("warning: " + decision.warning)
    if name is not None and ctx.partition is None and ctx.account is None and os.geteuid() != 0:
        from ..runcache import remember_run  # the plan for the C front's next run (plugins/chos)
        from ..service import _cwd
        remember_run(policy, ctx.user, name, decision, plan, _cwd())
    if not command:
        shell = os.environ.get("SHELL") or ctx.user.shell
        command = [shell, "-l"]
        if decision.environment is not None and not _exists_in(decision.environment.path, shell):
            command = ["/bin/sh", "-l"]
    enter_and_exec(plan, ctx.user, command, unprivileged=os.geteuid() != 0)
    return ExitCode.INTERNAL


def _exists_in(root: str, path: str) -> bool:
    return os.path.lexists(os.path.join(root, path.lstrip("/")))


def cmd_run(args: argparse.Namespace) -> int:
    command = split_command(args.command)
    if not command:
        raise UsageError("run: no command given (use `chos shell NAME` for a shell)")
    return _run(args, args.name, command)


def cmd_shell(args: argparse.Namespace) -> int:
    return _run(args, args.name, [])


def build_parser() -> argparse.ArgumentParser:
    p = parser("chos", "Choose the Linux environment your jobs and shells run in.\n"
               "CHOS compatibility: `CHOS=NAME chos [CMD...]` runs CMD (or a login shell) in NAME.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    s = sub.add_parser("list", help="environments you may use")
    s.add_argument("--partition")
    s.add_argument("--account")
    s.add_argument("--versions", action="store_true", help="also every version this node has of each")
    s.set_defaults(func=cmd_list)
    s = sub.add_parser("which", help="what a job of yours would get, and why")
    s.add_argument("--partition")
    s.add_argument("--account")
    s.set_defaults(func=cmd_which)
    s = sub.add_parser("set", help="write your choice to ~/.chos")
    s.add_argument("name")
    s.set_defaults(func=cmd_set)
    s = sub.add_parser("run", help="run a command in an environment")
    s.add_argument("--partition", help="as a job in this partition/queue would")
    s.add_argument("--account", help="as a job charged to this account would")
    s.add_argument("name")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_run)
    s = sub.add_parser("shell", help="a login shell in an environment")
    s.add_argument("--partition", help="as a job in this partition/queue would")
    s.add_argument("--account", help="as a job charged to this account would")
    s.add_argument("name")
    s.set_defaults(func=cmd_shell)
    chos_image_cmds.add_parser(sub)
    policy_on_subcommands(sub)
    add_submit_parser(sub)          # after: the scheduler's integration checks the policy, not chos
    return p


def main(argv: Optional[List[str]] = None) -> int:
    from_command_line = argv is None        # only then may `chos submit` re-execute itself
    argv = sys.argv[1:] if argv is None else argv
    policy_args: List[str] = []
    rest = list(argv)
    if len(rest) >= 2 and rest[0] == "--policy":
        policy_args, rest = rest[:2], rest[2:]
    if not rest or rest[0] not in SUBCOMMANDS:
        # CHOS compatibility: `chos [CMD...]` in $CHOS (or what ~/.chos / the site gives)
        p = parser("chos", "CHOS compatibility mode")
        p.add_argument("command", nargs=argparse.REMAINDER)
        return run_main(lambda a: _run(a, None, split_command(a.command)),     # CHOS: the variable, as it is
                        p, policy_args + rest)
    p = build_parser()
    p.set_defaults(may_reexec=from_command_line)
    return run_main(lambda a: a.func(a), p, policy_args + rest)


if __name__ == "__main__":
    sys.exit(main())
