"""`envsched`: the admin and shim command (check, explain, exec, prepare/join/release/gc)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from .. import trees
from ..enter import enter_and_exec
from ..errors import PolicyError, UsageError
from ..pin import run_dir_problem
from ..policy import meaning
from ..exitcodes import ExitCode
from ..plan import build_plan
from ..chosen import choose_version
from ..errors import EnvironmentBroken
from ..resolve import Decision, Refusal, resolve
from ..service import plan_for_job, request_for, usable_version
from .common import (
    OneCommand,
    command_named,
    describe_decision,
    format_steps,
    parser,
    policy_from,
    policy_on_subcommands,
    run_main,
    say,
    split_command,
)
from .jobargs import bind_arg, job_args, job_context, logged_failure, require_root
from . import env_cmds, image_cmds, metrics_cmd
from .pin_cmds import cmd_gc, cmd_join, cmd_pins, cmd_prepare, cmd_release
from . import site_cmds


def check_findings(policy, run_dir: bool = True) -> List[str]:
    """What `envsched check` finds, one line each (also `envsched doctor`'s first checks)."""
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
    try:
        return choose_version(policy, decision, user)
    except EnvironmentBroken:
        return None


def cmd_exec(args: argparse.Namespace) -> int:
    require_root("envsched exec")
    command = split_command(args.command)
    if not command:
        raise UsageError("exec: no command given")
    policy = policy_from(args)
    ctx = job_context(args)
    decision, plan = plan_for_job(policy, ctx)
    if decision.warning:
        say("warning: " + decision.warning)
    with logged_failure("exec", ctx, decision.name):
        enter_and_exec(plan, ctx.user, command, cwd=args.cwd)
    return ExitCode.INTERNAL  # not reached: enter_and_exec execs or raises


def cmd_validate(args: argparse.Namespace) -> int:
    """Submit-time check: silent and 0 when the request is fine, else the refusal on stderr."""
    policy = policy_from(args)
    ctx = job_context(args)
    outcome = resolve(policy, request_for(policy, ctx), identity_only=args.identity_only)
    if isinstance(outcome, Refusal):
        say(outcome.message())
        return ExitCode.REFUSED
    if outcome.environment is not None and not args.identity_only:
        # at submit time the tree may not be mounted on this host: it is checked on the node
        try:
            usable_version(policy, outcome, ctx.user)
        except EnvironmentBroken as e:
            say(f"environment {outcome.name} is not usable on this host: {e.message}")
            return ExitCode.ENV_BROKEN
    if outcome.warning:
        say("warning: " + outcome.warning)
    if args.pin:
        print(pinned_request(policy, outcome, ctx.user))
    elif args.print:
        print(outcome.name)
    return ExitCode.OK


def pinned_request(policy, decision: Decision, user) -> str:
    """What a job that asked for an environment by name carries to its node when the site pins
    at submit (site.pin_at_submit): NAME@<the digest of NAME's current version here>. The request
    as it is when the job named an exact version already, when the decision did not come from the
    job itself (~/.chos and the defaults are decided on the node), or when this host does not
    know the version (no store, no stamp): then the node decides, as without pinning."""
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
    from ..policy.chos_import import import_chos
    sys.stdout.write(import_chos(args.file))
    return ExitCode.OK


def build_parser(wanted: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line's parser; with `wanted` (the subcommand named, command_named) only that
    subcommand's (a shim's run pays for no other)."""
    p = parser("envsched", "Site policy, decisions and environment entry for batch jobs.")
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
    s.add_argument("command", nargs=argparse.REMAINDER)
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
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("join", help="root: join a pinned view, drop to its user, exec CMD")
    s.add_argument("--key", required=True)
    s.add_argument("--user", help="must be the pin's user (default: the pin's user)")
    s.add_argument("--cwd")
    s.add_argument("command", nargs=argparse.REMAINDER)
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
    s.set_defaults(func=cmd_pins)

    metrics_cmd.add_parser(sub)

    s = sub.add_parser("policy", help="policy tools")
    psub = s.add_subparsers(dest="policy_cmd", required=True, metavar="COMMAND")
    i = psub.add_parser("import-chos", help="print a policy equivalent to a CHOS /etc/chos")
    i.add_argument("file", nargs="?", default="/etc/chos")
    i.set_defaults(func=cmd_import_chos)

    env_cmds.add_parsers(sub)
    image_cmds.add_parsers(sub)
    site_cmds.add_parsers(sub)
    if wanted is not None and wanted not in real.choices:
        return build_parser(None)                       # argparse's message lists every choice
    policy_on_subcommands(real)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    p = build_parser(command_named(sys.argv[1:] if argv is None else argv))
    return run_main(lambda a: a.func(a), p, argv)


if __name__ == "__main__":
    sys.exit(main())
