"""The one entry point every shim and command uses: from a job's request to a checked plan.

    ctx = JobContext(user=lookup_user("alice"), option="sl6", job="1234")
    decision, plan = plan_for_job(policy, ctx)      # or raises EnvschedError (refused/broken)
"""
from __future__ import annotations

import os
import syslog

from . import audit, trees
from .chosen import VersionNotHere, choose_version
from .errors import EnvironmentBroken, EnvschedError
from .exitcodes import ExitCode
from .records import dataclass     # dataclasses, without their import cost (#13)
from .resolve import Decision, Refusal, Request, check_name, resolve
from .userfile import read_user_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple

    from .chosen import ChosenVersion
    from .identity import UserInfo
    from .plan import Plan
    from .policy.model import Environment, Mount, Policy
    from .userfile import UserFile


class RequestRefused(EnvschedError):
    code = ExitCode.REFUSED


@dataclass(frozen=True)
class JobContext:
    user: UserInfo
    option: Optional[str] = None
    chos_var: Optional[str] = None
    account: Optional[str] = None
    partition: Optional[str] = None
    cwd: Optional[str] = None
    job: Optional[str] = None           # scheduler job id, for the admin log
    scheduler: Optional[str] = None     # whose job id that is: slurm, uge, torque, openpbs, pam
    read_user_file: bool = True
    user_file: Optional[UserFile] = None  # already read by the caller (e.g. a shim as the user)
    extra_binds: Tuple[Mount, ...] = ()   # shim-provided host paths (root callers only)


def request_for(policy: Policy, ctx: JobContext) -> Request:
    uf = ctx.user_file
    if uf is None and ctx.read_user_file and not ctx.option and not ctx.chos_var:
        uf = read_user_file(ctx.user, policy.site.user_file, policy.site.user_file_timeout)
    return Request(user=ctx.user.name, groups=ctx.user.groups, account=ctx.account,
                   partition=ctx.partition, option=ctx.option, chos_var=ctx.chos_var, user_file=uf)


def decide(policy: Policy, ctx: JobContext) -> Decision:
    """Resolve, or raise RequestRefused with the one line the user sees."""
    audit.configure(policy.site.log_file)
    outcome = resolve(policy, request_for(policy, ctx))
    if isinstance(outcome, Refusal):
        audit.log("refused", syslog.LOG_WARNING, job=ctx.job, user=ctx.user.name,
                  env=outcome.requested, source=outcome.source, reason=outcome.reason,
                  policy=policy.source, scheduler=ctx.scheduler)
        raise RequestRefused(outcome.message())
    if outcome.warning:
        audit.log("fallback", syslog.LOG_WARNING, job=ctx.job, user=ctx.user.name,
                  env=outcome.name, reason=outcome.warning, policy=policy.source, scheduler=ctx.scheduler)
    return outcome


def usable_version(policy: Policy, decision: Decision, user: UserInfo) -> Optional[ChosenVersion]:
    """The version the decision names, checked as every entry checks it (fail closed): the store's
    record and the file for an image, the tree's owners and modes; raises EnvironmentBroken."""
    chosen = choose_version(policy, decision, user)
    if chosen is not None and chosen.environment.kind != "user-image":   # the user's: checked as the user
        trees.require_usable(chosen.environment)
    return chosen


def plan_for_job(policy: Policy, ctx: JobContext) -> Tuple[Decision, Plan]:
    """Decide, check the chosen version (fail closed, or fall back per site.on_error), plan."""
    decision = decide(policy, ctx)
    if decision.environment is not None and decision.environment.kind == "user-image" and ctx.scheduler == "pam":
        # a login's session process stays root inside the view, and a user's own view is theirs
        raise RequestRefused(f"environment {decision.name} is not entered at login (your own images run "
                             f"in jobs and with `chos run {decision.name} -- CMD`)")
    chosen: Optional[ChosenVersion] = None
    if decision.environment is not None:
        try:
            chosen = usable_version(policy, decision, ctx.user)
        except EnvironmentBroken as e:
            audit.log("broken", syslog.LOG_ERR, job=ctx.job, user=ctx.user.name, env=decision.name,
                      selector=decision.selector, reason=e.detail or e.message, policy=policy.source,
                      scheduler=ctx.scheduler)
            fallback = None if isinstance(e, VersionNotHere) else _fallback(policy, ctx, decision, e)
            if fallback is None:
                raise
            decision, chosen = fallback
    if chosen is not None and chosen.environment.host_devices is not None:
        _check_devices(policy, ctx, decision.name, chosen.environment)
    cwd = ctx.cwd or _cwd()
    from .plan import build_plan            # (lazy: `validate` never plans)
    plan = build_plan(policy, decision.name, chosen.environment if chosen else None, ctx.user,
                      cwd or ctx.user.home, ctx.extra_binds,
                      digest=chosen.digest if chosen else "", image_env=chosen.image_env if chosen else (),
                      workdir=chosen.workdir if chosen else "", selector=decision.selector)
    audit.log("decided", job=ctx.job, user=ctx.user.name, env=decision.name, source=decision.source,
              path=plan.source or "/", digest=plan.digest or None,
              version=(chosen.version or None) if chosen else None, scheduler=ctx.scheduler)
    return decision, plan


def _check_devices(policy: Policy, ctx: JobContext, name: str, env: Environment) -> None:
    """What devices.py found on this node for `env` (gpus, devices): refuse a job whose driver
    files or device nodes are not root's, or that needs a GPU the node lacks (exit 69, never a
    fallback); log what the view goes without."""
    from .devices import NVIDIA_GPU, DevicesMissing      # (lazy: only environments with devices)
    found = env.host_devices
    assert found is not None
    if found.problems:
        detail = "; ".join(found.problems)
        audit.log("broken", syslog.LOG_ERR, job=ctx.job, user=ctx.user.name, env=name, reason=detail,
                  policy=policy.source, scheduler=ctx.scheduler)
        raise EnvironmentBroken(f"environment {name}: this node's GPU driver or devices cannot be used "
                                f"(not root's, or writable by others; the admin log says which)", detail=detail)
    if found.gpu_missing and env.gpus_required:
        reason = f"gpus = \"{env.gpus}\": no GPU on this node (no {NVIDIA_GPU})"
        audit.log("broken", syslog.LOG_ERR, job=ctx.job, user=ctx.user.name, env=name, reason=reason,
                  policy=policy.source, scheduler=ctx.scheduler)
        raise DevicesMissing(f"environment {name} needs a GPU and this node has none", detail=reason)
    notes = (["no GPU on this node: the view is built without (gpus_required = false)"] if found.gpu_missing
             else []) + [f"not on this node: {', '.join(found.missing)}"] * bool(found.missing)
    if notes:
        audit.log("devices", syslog.LOG_NOTICE, job=ctx.job, user=ctx.user.name, env=name,
                  reason="; ".join(notes), scheduler=ctx.scheduler)


def _fallback(policy: Policy, ctx: JobContext, decision: Decision, err: EnvironmentBroken
              ) -> Optional[Tuple[Decision, Optional[ChosenVersion]]]:
    site = policy.site
    if site.on_error != "default" or decision.name == site.default:
        return None
    req = request_for(policy, JobContext(ctx.user, account=ctx.account, partition=ctx.partition,
                                         read_user_file=False))
    outcome = check_name(policy, req, "site default (on_error)", site.default)
    if not isinstance(outcome, Decision):
        return None
    try:
        chosen = usable_version(policy, outcome, ctx.user)
    except EnvironmentBroken:
        return None
    return (Decision(outcome.name, outcome.source, outcome.environment, decision.steps,
                     warning=f"{err.message}; using the site default {site.default}"), chosen)


def _cwd() -> Optional[str]:
    try:
        return os.getcwd()
    except OSError:
        return None
