"""What a valid policy means for the jobs that name nothing: `envsched check`'s second pass.

The schema (schema.py) rejects unknown keys, wrong types and dangling references. A policy can
pass it and still refuse whole classes of jobs: a site default that is disabled or restricted
to some users, a default for a group, partition/queue or account that names an environment
those jobs may not use. Each such default is one line here, naming the key at fault.
"""
from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

from .model import Environment, Policy


def _default_problem(env: Optional[Environment], kind: str, value: str) -> Optional[str]:
    """Why jobs that `kind` (group/partition/account) `value` picks for `env` are refused, or None."""
    if env is None:
        return None                                 # the host OS, or a dangling name (the schema's)
    if not env.enabled:
        return f"environment {env.name} is disabled (enabled = false)"
    if kind == "group" and value in env.deny_groups:
        return f"environment {env.name} denies group {value} (deny_groups)"
    if kind == "group" and (env.allow_users or env.allow_groups) and value not in env.allow_groups:
        return f"environment {env.name} is restricted to other users or groups (allow_users/allow_groups)"
    if kind == "partition" and env.allow_partitions and value not in env.allow_partitions:
        return f"environment {env.name} is not allowed in partition {value} (allow_partitions)"
    if kind == "account" and env.allow_accounts and value not in env.allow_accounts:
        return f"environment {env.name} is not allowed for account {value} (allow_accounts)"
    return None


def _site_default_problem(policy: Policy) -> Optional[str]:
    name = policy.site.default
    env = policy.get(name)                          # None: the host OS (schema.py checks allow_local)
    if env is None:
        return None
    if not env.enabled:
        return f"environment {name} is disabled (enabled = false): every job that names nothing is refused"
    limits = [k for k in ("allow_users", "allow_groups", "allow_partitions", "allow_accounts")
              if getattr(env, k)]
    if limits:
        return (f"environment {name} is limited by {', '.join(limits)}: jobs of everyone else that name "
                "nothing are refused")
    return None


def _defaults(policy: Policy) -> Iterator[Tuple[str, str, str]]:
    for kind, table in (("group", policy.defaults.groups), ("partition", policy.defaults.partitions),
                        ("account", policy.defaults.accounts)):
        for value, name in sorted(table.items()):
            yield kind, value, name


def problems(policy: Policy) -> List[str]:
    """One line per default that refuses the jobs it is meant for."""
    out = []
    site = _site_default_problem(policy)
    if site:
        out.append(f"{policy.source}: site.default: {site}")
    keys = {"group": "defaults.groups", "partition": "defaults.partitions", "account": "defaults.accounts"}
    for kind, value, name in _defaults(policy):
        problem = _default_problem(policy.get(name), kind, value)
        if problem:
            out.append(f"{policy.source}: {keys[kind]}.{value}: {problem}")
    return out
