"""`envsched prepare | join | release | gc | pins`: one view per job, many tasks (root).

Each command imports what only it uses when it runs (#13): a shim's `release` needs the policy,
the pin store and the admin log, not the resolver, the job's context or json."""
from __future__ import annotations

import os

from .. import audit
from ..errors import UsageError
from ..exitcodes import ExitCode
from ..names import NAME_RULE, is_valid_name, show
from ..pin import PinStore
from .common import policy_from, require_root, say

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import List, Optional


def _check_keys(*keys: Optional[str]) -> None:
    """Keys are names, never paths (`../x`, `a/b`, `.hidden`): refused before anything is read."""
    for key in keys:
        if key is not None and not is_valid_name(key):
            raise UsageError(f"invalid pin key {show(key)} ({NAME_RULE})")


def cmd_prepare(args: argparse.Namespace) -> int:
    import json
    import time

    from .. import records
    from ..pin import process_start
    from ..service import plan_for_job
    from ..shim import shim_lines
    from .jobargs import job_context, logged_failure
    require_root("envsched prepare")
    _check_keys(args.key, args.fallback_key)
    # the owner decides only how long the pin lives (gc: pid and start time); it gives no rights
    owner = args.owner_pid if args.owner_pid is not None else os.getppid()
    if owner <= 0 or process_start(owner) is None:
        raise UsageError(f"--owner-pid {owner}: no such process (the pin would be stale at once)")
    policy = policy_from(args)
    ctx = job_context(args)
    caching = bool(args.decision_cache and policy.site.decision_cache and args.inputs is not None)
    if caching and ctx.read_user_file and not ctx.option and not ctx.chos_var:
        # read here, once, so that the cache entry records the very ~/.chos the decision used
        from ..userfile import read_user_file
        ctx = records.replace(ctx, user_file=read_user_file(ctx.user, policy.site.user_file,
                                                                policy.site.user_file_timeout))
    decision, plan = plan_for_job(policy, ctx)
    if decision.warning and args.format != "shim":
        say("warning: " + decision.warning)
    store = PinStore(policy.site.run_dir)
    if args.gc:
        for stale in store.gc():
            audit.log("released", key=stale, reason="owner gone (gc)")
        _release_idle_images(policy)
    key: Optional[str] = None
    reused = False
    if plan.mount_ops or args.record_local:
        keys = [args.key] + ([args.fallback_key] if args.fallback_key else [])
        for candidate in keys:
            if args.reuse and store.reusable(candidate, plan, ctx.user):
                key, reused = candidate, True
                break
            if not os.path.exists(store.path(candidate)):
                key = candidate
                break
        if key is None:
            raise UsageError(f"pin {' and '.join(keys)} exists already (release it first)"
                             if len(keys) == 1 else
                             f"pins {' and '.join(keys)} exist already with other views (release first)")
        if reused and plan.kind == "user-image":
            plan = store.plan(key)                      # as pinned: with what the user's builder found
        if not reused and plan.mount_ops:
            started = time.monotonic()
            with logged_failure("prepare", ctx, decision.name, key=key):
                _, plan = store.prepare(key, plan, ctx.user, owner, ctx.job,
                                        share_hold=policy.site.view_hold if args.shared_view else None)
            audit.log("prepared", job=ctx.job, user=ctx.user.name, env=decision.name, key=key, owner=owner,
                      digest=plan.digest or None, scheduler=ctx.scheduler,
                      setup_ms=round((time.monotonic() - started) * 1000))
        elif not reused:
            store.record(key, plan, ctx.user, owner)
            audit.log("recorded", job=ctx.job, user=ctx.user.name, env=decision.name, key=key, owner=owner,
                      scheduler=ctx.scheduler)
    pin = os.path.join(store.path(key), "mnt") if key and plan.mount_ops else None
    lines = shim_lines(decision, plan, key, pin, reused, ctx.user)
    if key and not reused and args.inputs is not None:
        # a shim that sees the same inputs again (a later step of the job) may join without us
        store.write_memo(key, args.inputs, "\n".join(lines) + "\n")
    if caching and not reused:
        _cache_decision(policy, args.inputs, ctx, decision, plan, key, lines)
    if args.format == "shim":
        print("\n".join(lines))
    else:
        print(json.dumps({"environment": decision.name, "key": key, "mnt": pin, "reused": reused,
                          "user": ctx.user.name, "uid": ctx.user.uid, "owner_pid": owner}))
    return ExitCode.OK


def _cache_decision(policy, inputs: str, ctx, decision, plan, key: Optional[str], lines: List[str]) -> None:
    """Write the decision down for the shims (decisioncache.py): only a host OS decision or one
    whose view is shared; the lines before `uid` are the job's own (key, pin, reused)."""
    from ..decisioncache import DecisionCache, entry_lines
    view = None
    if key and plan.mount_ops:
        try:
            with open(os.path.join(PinStore(policy.site.run_dir).path(key), "view")) as f:
                view = f.read().strip()
        except FileNotFoundError:
            return                                      # the job's own view: nothing to share
    tail = lines[next(i for i, line in enumerate(lines) if line.startswith("uid ")):]
    user_file = ctx.user_file if not ctx.option and not ctx.chos_var else None
    entry = entry_lines(policy.source, inputs, ctx.user, user_file, decision, plan, view, tail,
                        image_dir=policy.site.image_dir)
    cache = DecisionCache(policy.site.run_dir)
    if entry is None:
        cache.forget(inputs)
    else:
        cache.write(inputs, entry)


def cmd_join(args: argparse.Namespace) -> int:
    from ..errors import SetupError
    from ..identity import lookup_user
    from .common import split_command
    require_root("envsched join")
    _check_keys(args.key)
    command = split_command(args.command)
    if not command:
        raise UsageError("join: no command given")
    policy = policy_from(args)
    store = PinStore(policy.site.run_dir)
    try:
        user = lookup_user(args.user) if args.user else lookup_user(store.meta(args.key).uid)
    except FileNotFoundError:
        raise SetupError(f"no pin {args.key} on this node") from None
    store.join_and_exec(args.key, user, command, cwd=args.cwd)
    return ExitCode.INTERNAL


def cmd_release(args: argparse.Namespace) -> int:
    require_root("envsched release")
    _check_keys(args.key)
    policy = policy_from(args)
    audit.configure(policy.site.log_file)
    store = PinStore(policy.site.run_dir)
    keys = [args.key] + ([k for k in store.keys() if k.startswith((args.key + ".", args.key + "-"))]
                         if args.with_steps else [])
    released = [k for k in keys if store.release(k)]
    for key in released:
        audit.log("released", key=key)
    _release_idle_images(policy)
    if not released and not args.quiet:
        say(f"no pin {args.key} on this node (nothing to release)")
    return ExitCode.OK


def _release_idle_images(policy, hold: Optional[float] = None) -> List[str]:
    """Let go of the node's image mounts no view uses and none used for site.image_hold seconds
    (holders.py); `hold` overrides that (0: every idle one)."""
    from ..holders import Holders, digests_in_use
    run_dir = policy.site.run_dir
    holders = Holders(run_dir)
    if not os.path.isdir(holders.dir):
        return []
    out = holders.release_idle(digests_in_use(run_dir), policy.site.image_hold if hold is None else hold)
    for digest in out:
        audit.log("image_released", digest=digest)
    return out


def cmd_gc(args: argparse.Namespace) -> int:
    require_root("envsched gc")
    policy = policy_from(args)
    audit.configure(policy.site.log_file)
    for key in PinStore(policy.site.run_dir).gc():
        audit.log("released", key=key, reason="owner gone (gc)")
        print(f"released {key}")
    from ..decisioncache import DecisionCache
    from ..sharedviews import SharedViews
    for vid in SharedViews(policy.site.run_dir).release_idle(0.0 if args.idle_views else None, dangling=True):
        audit.log("view_released", view=vid)
        print(f"released view {vid}")
    DecisionCache(policy.site.run_dir).gc(policy.source)
    for digest in _release_idle_images(policy, 0.0 if args.idle_images else None):
        print(f"released image {digest}")
    return ExitCode.OK


def cmd_pins(args: argparse.Namespace) -> int:
    import json
    require_root("envsched pins")
    policy = policy_from(args)
    if args.views:
        from ..sharedviews import SharedViews
        entries = SharedViews(policy.site.run_dir).list()
    else:
        entries = PinStore(policy.site.run_dir).list()
    for entry in entries:
        print(json.dumps(entry))
    return ExitCode.OK
