"""`envsched`: the admin and shim command (check, explain, exec, prepare/join/release/gc).

Every job runs it as root, up to three times (#13's cold path): this module imports only what
parsing needs, each command what it uses when it runs, and the shims' `validate`, `prepare` and
`release` are parsed without argparse (common.quick_args)."""
from __future__ import annotations

import os
import sys

from .common import (
    PREFIX,
    REMAINDER,
    OneCommand,
    command_named,
    parser,
    policy_from,
    policy_on_subcommands,
    quick_args,
    run_main,
    run_parsed,
    say,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import List, Optional, Tuple

    from ..resolve import Decision

#: the commands whose parsers this module defines (any other needs the other modules' too)
OWN = ("check", "explain", "exec", "prepare", "validate", "join", "release", "gc", "pins", "policy")
#: the shims' commands, parsed without argparse where the command line allows (quick_args)
QUICK = ("validate", "prepare", "release")
#: the collector's first threshold during a run: a run is short, and its passes over the objects
#: of every module imported cost it 1-2 ms (Python's default: one pass per 700 objects)
GC_THRESHOLD = 50_000


def check_findings(policy, run_dir: bool = True) -> List[str]:
    """What `envsched check` finds, one line each (also `envsched doctor`'s first checks)."""
    from .. import trees
    from ..errors import EnvironmentBroken
    from ..pin import run_dir_problem
    from ..policy import meaning
    from ..resolve import Decision
    from ..service import usable_version
    found: List[str] = []
    for name in policy.names():
        env = policy.environments[name]
        if env.image:                     # from the image store: the version jobs get now, checked
            try:
                chosen = usable_version(policy, Decision(name, "check", env), current_user_info())
            except EnvironmentBroken as e:
                found.append(f"{policy.source}: environments.{name}: image = {env.image!r}: {e.detail or e.message}")
                continue
            env = chosen.environment
        found += [f"{policy.source}: environments.{name}: {p}"
                  for p in trees.problems(env, deep=not env.image,
                                          identity_files=policy.site.identity_files)]
    found += _user_images_findings(policy)
    for m in policy.site.shared:
        if m.required and not os.path.exists(m.source):
            found.append(f"{policy.source}: site.shared: required path missing on this host: {m.source}")
    found += meaning.problems(policy)
    problem = run_dir_problem(policy.site.run_dir) if run_dir else None
    if problem:
        found.append(f"{policy.source}: site.run_dir: {policy.site.run_dir}: {problem}")
    return found


def current_user_info():
    from ..identity import current_user
    return current_user()


def _user_images_findings(policy) -> List[str]:
    """Users' own images need squashfuse and a /dev/fuse users may open (udev's mode 0666)."""
    if not policy.user_images.enabled:
        return []
    import stat
    from ..userimage import DEV_FUSE, SQUASHFUSE
    out = []
    try:
        st = os.stat(SQUASHFUSE)
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            out.append(f"{SQUASHFUSE}: must be root's and not writable by group or others")
    except OSError as e:
        out.append(f"{SQUASHFUSE}: {e.strerror} (install squashfuse: users' own images are served by it)")
    try:
        if os.stat(DEV_FUSE).st_mode & 0o006 != 0o006:
            out.append(f"{DEV_FUSE}: users cannot open it (mode {os.stat(DEV_FUSE).st_mode & 0o777:04o}; udev "
                       f"makes it 0666): users' own images cannot be entered")
    except OSError as e:
        out.append(f"{DEV_FUSE}: {e.strerror} (modprobe fuse)")
    return [f"{policy.source}: user_images: {line}" for line in out]


def cmd_check(args: argparse.Namespace) -> int:
    from ..errors import PolicyError
    from ..exitcodes import ExitCode
    try:
        policy = policy_from(args)
    except PolicyError as e:
        print(e.message)
        return ExitCode.POLICY_INVALID
    found = check_findings(policy)
    for line in found:
        print(line)
    if found:
        return ExitCode.CHECK_FAILED
    print(f"{policy.source}: ok ({len(policy.environments)} environments, default {policy.site.default})")
    return ExitCode.OK


def cmd_explain(args: argparse.Namespace) -> int:
    import json
    from ..errors import EnvironmentBroken
    from ..exitcodes import ExitCode
    from ..plan import build_plan
    from ..resolve import Refusal, resolve
    from ..service import request_for, usable_version
    from .common import describe_decision, format_steps
    from .jobargs import job_context
    policy = policy_from(args)
    ctx = job_context(args)
    outcome = resolve(policy, request_for(policy, ctx))
    if isinstance(outcome, Refusal):
        if args.json:
            print(json.dumps({"refused": outcome.message(), "steps": [s.__dict__ for s in outcome.steps]},
                             indent=1))
        else:
            print(outcome.message())
            print("precedence:")
            print("\n".join(format_steps(outcome.steps)))
        return ExitCode.REFUSED
    problems: List[str] = []
    chosen = None
    try:
        chosen = usable_version(policy, outcome, ctx.user)
    except EnvironmentBroken as e:
        problems = [e.message]
        chosen = choose_version_quietly(policy, outcome, ctx.user)
    env = chosen.environment if chosen else outcome.environment
    plan = build_plan(policy, outcome.name, env, ctx.user, ctx.cwd or ctx.user.home,
                      digest=chosen.digest if chosen else "", image_env=chosen.image_env if chosen else (),
                      workdir=chosen.workdir if chosen else "", selector=outcome.selector)
    if args.json:
        print(json.dumps({"environment": outcome.name, "source": outcome.source,
                          "digest": plan.digest, "version": chosen.version if chosen else "",
                          "warning": outcome.warning, "problems": problems,
                          "steps": [s.__dict__ for s in outcome.steps],
                          "plan": json.loads(plan.to_json())}, indent=1))
        return ExitCode.OK if not problems else ExitCode.ENV_BROKEN
    print(f"user {ctx.user.name} gets {describe_decision(outcome)}")
    if chosen is not None and (chosen.digest or chosen.version or chosen.environment.path != (env and env.path)):
        print(f"version: {chosen.version or '-'} {chosen.digest or '(no digest: not stamped)'} "
              f"from {chosen.environment.path or '(your image store)'}")
    for line in ([outcome.warning] if outcome.warning else []) + problems:
        print(f"warning: {line}")
    print("precedence:")
    print("\n".join(format_steps(outcome.steps)))
    print("plan:")
    for op in plan.ops:
        print("  " + " ".join(f"{k}={v}" for k, v in op.items()))
    return ExitCode.OK if not problems else ExitCode.ENV_BROKEN


def choose_version_quietly(policy, decision, user):
    """The version for `envsched explain` to show a plan of, even when it is not usable."""
    from ..chosen import choose_version
    from ..errors import EnvironmentBroken
    try:
        return choose_version(policy, decision, user)
    except EnvironmentBroken:
        return None


def cmd_exec(args: argparse.Namespace) -> int:
    from ..enter import enter_and_exec
    from ..errors import UsageError
    from ..exitcodes import ExitCode
    from ..service import plan_for_job
    from .common import split_command
    from .jobargs import job_context, logged_failure, require_root
    require_root("envsched exec")
    command = split_command(args.command)
    if not command:
        raise UsageError("exec: no command given")
    policy = policy_from(args)
    ctx = job_context(args)
    decision, plan = plan_for_job(policy, ctx)
    if decision.warning:
        say("warning: " + decision.warning)
    if args.request and not (args.partition or args.account or args.job or args.cwd):
        from ..runcache import remember_exec     # the plan for the C front's next run (plugins/chos)
        from ..service import _cwd
        remember_exec(policy, ctx.user, args.request, ctx.chos_var, decision, plan, _cwd())
    with logged_failure("exec", ctx, decision.name):
        enter_and_exec(plan, ctx.user, command, cwd=args.cwd)
    return ExitCode.INTERNAL  # not reached: enter_and_exec execs or raises


def cmd_validate(args: argparse.Namespace) -> int:
    """Submit-time check: silent and 0 when the request is fine, else the refusal on stderr."""
    from .jobargs import job_context
    policy = policy_from(args)
    ctx = job_context(args)
    caching = args.submit_cache and args.identity_only and policy.site.decision_cache
    if caching and ctx.read_user_file and not ctx.option and not ctx.chos_var:
        # read here, once, so that a kept answer records the very ~/.chos it was made from
        from ..records import replace
        from ..userfile import read_user_file
        ctx = replace(ctx, user_file=read_user_file(ctx.user, policy.site.user_file,
                                                                policy.site.user_file_timeout))
    out: List[str] = []
    err: List[str] = []
    code, outcome = _validate(args, policy, ctx, out, err)
    for line in err:
        say(line)
    for line in out:
        print(line)
    if caching:
        from .. import submitcache
        uses_user_file = ctx.read_user_file and not ctx.option and not ctx.chos_var
        pinned = outcome.environment if outcome is not None and args.pin and policy.site.pin_at_submit \
            and outcome.source in ("option", "CHOS variable") and not outcome.selector else None
        inputs = submitcache.inputs_line(ctx.user.uid, args.request, args.chos_var, policy.source)
        entry = submitcache.entry_lines(policy.source, inputs, ctx.user, ctx.user_file if uses_user_file else None,
                                        pinned, code, out, [PREFIX + line for line in err])
        if entry is not None:
            submitcache.write(ctx.user, inputs, entry)
    return code


def _validate(args, policy, ctx, out: List[str], err: List[str]) -> Tuple[int, Optional[Decision]]:
    """cmd_validate's answer: its exit code and the decision (None when refused), its stdout lines
    and its stderr lines (unprefixed)."""
    from ..errors import EnvironmentBroken
    from ..exitcodes import ExitCode
    from ..resolve import Refusal, resolve
    from ..service import request_for, usable_version
    outcome = resolve(policy, request_for(policy, ctx), identity_only=args.identity_only)
    if isinstance(outcome, Refusal):
        err.append(outcome.message())
        return ExitCode.REFUSED, None
    if outcome.environment is not None and not args.identity_only:
        # at submit time the tree may not be mounted on this host: it is checked on the node
        try:
            usable_version(policy, outcome, ctx.user)
        except EnvironmentBroken as e:
            err.append(f"environment {outcome.name} is not usable on this host: {e.message}")
            return ExitCode.ENV_BROKEN, None
    if outcome.warning:
        err.append("warning: " + outcome.warning)
    if args.pin:
        out.append(pinned_request(policy, outcome, ctx.user))
    elif args.print:
        out.append(outcome.name)
    return ExitCode.OK, outcome


def pinned_request(policy, decision: Decision, user) -> str:
    """What a job that asked for an environment by name carries to its node when the site pins
    at submit (site.pin_at_submit): NAME@<the digest of NAME's current version here>. The request
    as it is when the job named an exact version already, when the decision did not come from the
    job itself (~/.chos and the defaults are decided on the node), or when this host does not
    know the version (no store, no stamp): then the node decides, as without pinning."""
    from ..chosen import choose_version
    from ..errors import EnvironmentBroken
    name = decision.name
    if decision.environment is None or decision.source not in ("option", "CHOS variable"):
        return name
    if decision.selector:
        return f"{name}@{decision.selector}"
    if not policy.site.pin_at_submit:
        return name
    try:
        chosen = choose_version(policy, decision, user)
        digest = chosen.digest if chosen else ""
        if chosen is not None and chosen.environment.kind == "user-image" and os.getuid() == user.uid:
            from ..userimage import find_user_image
            from ..plan import build_plan as _plan
            digest = find_user_image(_plan(policy, name, chosen.environment, user, user.home,
                                           selector=None))[1]
    except EnvironmentBroken:
        return name
    return f"{name}@{digest}" if digest else name


def cmd_import_chos(args: argparse.Namespace) -> int:
    from ..exitcodes import ExitCode
    from ..policy.chos_import import import_chos
    sys.stdout.write(import_chos(args.file))
    return ExitCode.OK


# the commands of pin_cmds.py, imported when one runs
def cmd_prepare(args: argparse.Namespace) -> int:
    from .pin_cmds import cmd_prepare
    return cmd_prepare(args)


def cmd_join(args: argparse.Namespace) -> int:
    from .pin_cmds import cmd_join
    return cmd_join(args)


def cmd_release(args: argparse.Namespace) -> int:
    from .pin_cmds import cmd_release
    return cmd_release(args)


def cmd_gc(args: argparse.Namespace) -> int:
    from .pin_cmds import cmd_gc
    return cmd_gc(args)


def cmd_pins(args: argparse.Namespace) -> int:
    from .pin_cmds import cmd_pins
    return cmd_pins(args)


def build_parser(wanted: Optional[str] = None, record: bool = False) -> argparse.ArgumentParser:
    """The command line's parser; with `wanted` (the subcommand named, command_named) only that
    subcommand's (a shim's run pays for no other). `record`: against a common.Recorder, for
    quick_args (`wanted` must be one of OWN)."""
    from .jobargs import bind_arg, job_args
    p = parser("envsched", "Site policy, decisions and environment entry for batch jobs.", record)
    real = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub = OneCommand(real, wanted)

    s = sub.add_parser("check", help="validate the policy and every environment tree")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("explain", help="the decision and the plan for a user, without entering")
    job_args(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("exec", help="root: resolve, enter, drop to the user, exec CMD")
    job_args(s)
    s.add_argument("command", nargs=REMAINDER)
    s.set_defaults(func=cmd_exec)

    s = sub.add_parser("prepare", help="root: build a view once and pin it under a key")
    job_args(s)
    s.add_argument("--key", required=True, help="pin name, e.g. slurm-1234")
    s.add_argument("--owner-pid", type=int, help="the pin is stale once this process is gone "
                   "(default: the caller)")
    s.add_argument("--reuse", action="store_true",
                   help="reuse an existing pin under --key (or --fallback-key) holding the same view")
    s.add_argument("--fallback-key", help="key to use when --key holds another view (e.g. a step's own)")
    s.add_argument("--bind", action="append", type=bind_arg, default=[], metavar="SRC[:DST[:ro|rw]]",
                   help="extra host path for this view (shim configuration)")
    s.add_argument("--gc", action="store_true",
                   help="first release the pins whose owner process is gone (for hosts without an epilog "
                        "for every job, e.g. Grid Engine's qrsh and parallel slave tasks)")
    s.add_argument("--record-local", action="store_true",
                   help="also keep a decision for the host OS under --key (a record without a view), "
                        "for shims that look jobs up by key")
    s.add_argument("--format", choices=("json", "shim"), default="json")
    s.add_argument("--inputs", metavar="TEXT", help="the shim's raw request, stored with the pin so later "
                   "steps with identical inputs can join without running the resolver")
    s.add_argument("--shared-view", action="store_true",
                   help="bind a view other jobs may share from the node's shared one (kept site.view_hold "
                        "seconds after its last job)")
    s.add_argument("--decision-cache", action="store_true",
                   help="write the decision down for --inputs, so that a shim applies it to the same "
                        "inputs without the resolver (site.decision_cache)")
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("validate", help="check a request without preparing anything (submit time)")
    job_args(s)
    s.add_argument("--print", action="store_true", help="print the chosen environment")
    s.add_argument("--pin", action="store_true",
                   help="print the request to carry to the node: NAME@DIGEST of the version current now, when the "
                        "job named NAME and the site pins at submit (site.pin_at_submit)")
    s.add_argument("--identity-only", action="store_true",
                   help="submit time: ignore partition/account rules and the tree's state (both are "
                   "checked when the job starts)")
    s.add_argument("--submit-cache", action="store_true",
                   help="keep the answer in the user's ~/.cache/envsched/submit for the submit commands "
                        "to give again without the resolver while nothing it read changed")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("join", help="root: join a pinned view, drop to its user, exec CMD")
    s.add_argument("--key", required=True)
    s.add_argument("--user", help="must be the pin's user (default: the pin's user)")
    s.add_argument("--cwd")
    s.add_argument("command", nargs=REMAINDER)
    s.set_defaults(func=cmd_join)

    s = sub.add_parser("release", help="root: unpin a view and remove its pin")
    s.add_argument("--key", required=True)
    s.add_argument("--with-steps", action="store_true", help="also the pins KEY.* and KEY-* (per node, per step)")
    s.add_argument("--quiet", action="store_true", help="say nothing when there is no pin")
    s.set_defaults(func=cmd_release)

    s = sub.add_parser("gc", help="root: release pins whose owner process is gone, and the image mounts "
                       "idle for site.image_hold seconds, the shared views idle for site.view_hold")
    s.add_argument("--idle-images", action="store_true",
                   help="release every image mount no view uses, however recently used")
    s.add_argument("--idle-views", action="store_true",
                   help="release every shared view no job uses, however recently used")
    s.set_defaults(func=cmd_gc)

    s = sub.add_parser("pins", help="list the pins on this node")
    s.add_argument("--views", action="store_true",
                   help="list the shared views instead (environment, digest, the jobs using each, its hold)")
    s.set_defaults(func=cmd_pins)

    if wanted not in OWN:                               # (the others' commands are theirs to build)
        from . import env_cmds, image_cmds, metrics_cmd, site_cmds
        metrics_cmd.add_parser(sub)

    s = sub.add_parser("policy", help="policy tools")
    psub = s.add_subparsers(dest="policy_cmd", required=True, metavar="COMMAND")
    i = psub.add_parser("import-chos", help="print a policy equivalent to a CHOS /etc/chos")
    i.add_argument("file", nargs="?", default="/etc/chos")
    i.set_defaults(func=cmd_import_chos)

    if wanted not in OWN:
        env_cmds.add_parsers(sub)
        image_cmds.add_parsers(sub)
        site_cmds.add_parsers(sub)
    if wanted is not None and wanted not in real.choices:
        return build_parser(None)                       # argparse's message lists every choice
    policy_on_subcommands(real)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    import gc
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], GC_THRESHOLD), *threshold[1:])
    try:
        line = sys.argv[1:] if argv is None else argv
        wanted = command_named(line)
        if wanted in QUICK:
            args = quick_args(build_parser(wanted, record=True), line)
            if args is not None:
                return run_parsed(lambda a: a.func(a), args)
        p = build_parser(wanted)
        return run_main(lambda a: a.func(a), p, argv)
    finally:
        gc.set_threshold(*threshold)            # (for callers that live on: the plugins, tests)
        if argv is None:
            # this process's own command line (the entry point, -m): it exits now. The cyclic
            # collector's passes at exit over every object of every module imported cost it
            # ≈ 3.5 ms; frozen, they are not traversed (the modules are still torn down, the
            # streams flushed, atexit run; only cycles are left to the process's end)
            gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
