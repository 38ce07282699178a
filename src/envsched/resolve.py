"""Decide which environment a job gets: a pure function of the policy and the request.

Precedence: explicit option > the job's CHOS variable > ~/.chos > partition/queue default >
account default > group default > site default. The first source that says something
decides; a bad value there is refused, never skipped over (a user who asked for sl5 must not
silently get deb12). With `site.on_error = "default"`, a refused or broken request falls back
to the site default, with a warning the user sees.
"""
from __future__ import annotations

from .names import LOCAL, REQUEST_RULE, USER_PREFIX, EnvRequest, parse_request, show
from .policy.model import Environment, Policy, UserImages
from .records import dataclass, field     # dataclasses, without their import cost (#13)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple, Union

    from .userfile import UserFile


@dataclass(frozen=True)
class Request:
    """Everything a shim gathers about a job (all optional but the user)."""
    user: str
    groups: Tuple[str, ...] = ()
    account: Optional[str] = None
    partition: Optional[str] = None
    option: Optional[str] = None          # --chos=NAME / -l chos=NAME
    chos_var: Optional[str] = None        # the job's CHOS variable
    user_file: Optional[UserFile] = None  # ~/.chos, read as the user


@dataclass(frozen=True)
class Step:
    source: str          # "option", "CHOS variable", "~/.chos", "partition default", ...
    value: Optional[str]
    note: str            # "chosen", "not set", ...


@dataclass(frozen=True)
class Decision:
    name: str                             # environment name, or "local"
    source: str                           # which step chose it
    environment: Optional[Environment]    # None for the host OS
    steps: Tuple[Step, ...] = ()
    warning: Optional[str] = None         # set when on_error=default replaced a refused request
    selector: Optional[str] = None        # NAME@SELECTOR: that exact version (a digest or a label)

    @property
    def is_local(self) -> bool:
        return self.environment is None


@dataclass(frozen=True)
class Refusal:
    requested: str                        # what was asked, already escaped for display
    source: str
    reason: str
    allowed: Tuple[str, ...] = ()
    steps: Tuple[Step, ...] = field(default=())

    def message(self) -> str:
        allowed = ", ".join(self.allowed) if self.allowed else "none"
        return (f"environment {self.requested} ({self.source}) refused: {self.reason}; "
                f"allowed for you: {allowed}")


Outcome = "Union[Decision, Refusal]"      # (a type, for annotations)


@dataclass(frozen=True)
class _Wording:
    """How a refusal by one set of access rules reads (an environment's, or [user_images])."""
    disabled: str
    user: str                 # .format(user)
    group: str                # .format(group)
    restricted: str
    prefix: str = ""          # before "not allowed for account/in partition ..."


ENVIRONMENT_WORDS = _Wording("disabled by the site", "user {} is denied", "group {} is denied",
                             "restricted to other users or groups")
USER_IMAGE_WORDS = _Wording("this site does not run users' own images", "user {} may not run their own images",
                            "group {} may not run its own images",
                            "users' own images are restricted to other users or groups", "users' own images are ")


def _denial(rules: Union[Environment, UserImages], req: Request, identity_only: bool, w: _Wording) -> Optional[str]:
    """The access rules both environments and [user_images] have, in one order: enabled, deny
    lists, allow lists, then (unless `identity_only`) accounts and partitions."""
    if not rules.enabled:
        return w.disabled
    if req.user in rules.deny_users:
        return w.user.format(req.user)
    denied = [g for g in req.groups if g in rules.deny_groups]
    if denied:
        return w.group.format(denied[0])
    if (rules.allow_users or rules.allow_groups) and req.user not in rules.allow_users \
            and not any(g in rules.allow_groups for g in req.groups):
        return w.restricted
    if identity_only:
        return None
    if rules.allow_accounts and req.account not in rules.allow_accounts:
        return f"{w.prefix}not allowed for account {show(req.account) if req.account else '(none)'}"
    if rules.allow_partitions and req.partition not in rules.allow_partitions:
        return f"{w.prefix}not allowed in partition {show(req.partition) if req.partition else '(none)'}"
    return None


def denial_reason(env: Environment, req: Request, identity_only: bool = False) -> Optional[str]:
    """Why this user/job may not use `env`, or None if allowed. `identity_only` ignores the
    account and partition rules (for a choice made outside any job, e.g. `chos set`)."""
    return _denial(env, req, identity_only, ENVIRONMENT_WORDS)


def user_image_denial(ui: UserImages, req: Request, identity_only: bool = False) -> Optional[str]:
    """Why this user/job may not run an image of their own ([user_images]), or None."""
    return _denial(ui, req, identity_only, USER_IMAGE_WORDS)


def user_image_environment(ui: UserImages, request: EnvRequest) -> Environment:
    """A user's own image as an environment: what of the host it sees comes from [user_images];
    the file is found in the user's store, as the user, when the view is built."""
    return Environment(name=USER_PREFIX + request.name, path="", kind="user-image",
                       description="your own image", dirs=ui.dirs, binds=ui.binds, env=ui.env,
                       writable=ui.writable, image=request.name)


def allowed_names(policy: Policy, req: Request) -> Tuple[str, ...]:
    names = [n for n in policy.names() if denial_reason(policy.environments[n], req) is None]
    if policy.site.allow_local:
        names.append(LOCAL)
    if user_image_denial(policy.user_images, req) is None:
        names.append(USER_PREFIX + "NAME (your own images)")
    return tuple(names)


def _candidates(policy: Policy, req: Request) -> List[Tuple[str, Optional[str], Optional[str]]]:
    """(source, value, error) in precedence order; value None = this source says nothing."""
    uf = req.user_file
    out: List[Tuple[str, Optional[str], Optional[str]]] = [
        ("option", req.option or None, None),
        ("CHOS variable", req.chos_var or None, None),
    ]
    label = "~/" + policy.site.user_file
    if uf is None or not uf.present:
        out.append((label, None, None))
    elif uf.error:
        out.append((label, "", f"{label} {uf.error}"))
    elif uf.value == "":
        out.append((label, "", f"{label} is empty"))
    else:
        out.append((label, uf.value, None))
    d = policy.defaults
    out.append(("partition default", d.partitions.get(req.partition or "", None), None))
    out.append(("account default", d.accounts.get(req.account or "", None), None))
    group = next((g for g in d.groups if g in req.groups), None)
    out.append((f"group default ({group})" if group else "group default",
                d.groups.get(group) if group else None, None))
    out.append(("site default", policy.site.default, None))
    return out


def check_name(policy: Policy, req: Request, source: str, value: str, error: Optional[str] = None,
               identity_only: bool = False) -> Outcome:
    """Is `value` (from `source`) a usable environment for this request?"""
    allowed = allowed_names(policy, req)
    if error:
        return Refusal(show(value) if value else "from " + source.split()[0], source, error, allowed)
    request = parse_request(value)
    if request is None:
        return Refusal(show(value), source, f"not a valid name ({REQUEST_RULE})", allowed)
    if request.user:
        why = user_image_denial(policy.user_images, req, identity_only)
        if why:
            return Refusal(show(value), source, why, allowed)
        return Decision(USER_PREFIX + request.name, source, user_image_environment(policy.user_images, request),
                        selector=request.selector)
    if request.name == LOCAL:
        if not policy.site.allow_local:
            return Refusal(show(value), source, "the host OS is not offered at this site", allowed)
        return Decision(LOCAL, source, None)
    env = policy.get(request.name)
    if env is None:
        return Refusal(show(value), source, "no such environment at this site", allowed)
    why = denial_reason(env, req, identity_only)
    if why:
        return Refusal(show(value), source, why, allowed)
    return Decision(request.name, source, env, selector=request.selector)


def resolve(policy: Policy, req: Request, identity_only: bool = False) -> Outcome:
    steps: List[Step] = []
    outcome: Optional[Outcome] = None
    for source, value, error in _candidates(policy, req):
        if outcome is not None:
            steps.append(Step(source, value, "overridden" if value is not None else "not set"))
            continue
        if value is None:
            steps.append(Step(source, None, "not set"))
            continue
        outcome = check_name(policy, req, source, value, error, identity_only)
        steps.append(Step(source, value, "chosen" if isinstance(outcome, Decision) else "refused"))
    assert outcome is not None  # the site default always says something
    if isinstance(outcome, Refusal) and policy.site.on_error == "default" and outcome.source != "site default":
        fallback = check_name(policy, req, "site default", policy.site.default, None)
        if isinstance(fallback, Decision):
            return Decision(fallback.name, "site default (on_error)", fallback.environment, tuple(steps),
                            warning=outcome.message() + f"; using the site default {policy.site.default}")
    if isinstance(outcome, Decision):
        return Decision(outcome.name, outcome.source, outcome.environment, tuple(steps),
                        selector=outcome.selector)
    return Refusal(outcome.requested, outcome.source, outcome.reason, outcome.allowed, tuple(steps))
