"""The line protocol between `envsched prepare --format shim` and the C shims.

One record per line, fields separated by one space, the last field running to the end of the
line (values never hold a newline: the schema refuses them). The C side
(plugins/slurm-spank/resolver.c) reads exactly these keys; unknown keys are ignored there so
the protocol can grow.

  environment NAME          the decision
  key KEY                   the pin's key ("-" for the host OS: nothing to join)
  pin PATH                  the namespace file to setns into ("-" for the host OS)
  reused 0|1                an existing pin of the same job was reused
  uid N                     the job user's uid (a joiner checks it against its own)
  warning TEXT              shown to the user (on_error fallback)
  env set NAME VALUE        environment operations, in order, for the task environment
  env prepend NAME VALUE
  env append NAME VALUE
  env unset NAME
  home PATH                 chdir fallback when the job's cwd is not in the view
  digest DIGEST             the version's identity (also in CHOS_DIGEST), when it has one
  launcher ARG              one line per argument, in order: every task's payload runs as
                            launcher ARGs + its own argv (the program is looked up in the view)
  userns 1                  the view is the user's own (a user image), for the log: every joiner
                            asks the kernel who owns the namespace (es_foreign_userns) and joins
                            such a view as the user, privileges dropped first
"""
from __future__ import annotations

from .identity import UserInfo
from .plan import Plan
from .resolve import Decision

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional


def shim_lines(decision: Decision, plan: Plan, key: Optional[str], pin: Optional[str], reused: bool,
               user: UserInfo) -> List[str]:
    out = [f"environment {decision.name}", f"key {key or '-'}", f"pin {pin or '-'}",
           f"reused {int(reused)}", f"uid {user.uid}"]
    if decision.warning:
        out.append(f"warning {decision.warning}")
    for op in plan.process_ops:
        if op["op"] == "env":
            tail = "" if op["action"] == "unset" else f" {op['value']}"
            out.append(f"env {op['action']} {op['name']}{tail}")
    out += [f"launcher {arg}" for arg in plan.launcher]
    out.append(f"home {user.home}")
    if plan.digest:
        out.append(f"digest {plan.digest}")
    if plan.kind == "user-image":
        out.append("userns 1")
    return out
