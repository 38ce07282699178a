"""The run cache (#13): the plan `chos run NAME -- COMMAND` (a user's) or `envsched exec --user U
--request NAME -- COMMAND` (root's) was given, kept with every input it was decided from, so that
the next run of the same request builds the same view without starting Python (plugins/chos: the
C fronts installed as `chos` and `envsched`).

Python stays the only place that decides: after `chos run` (as a user, unprivileged) or `envsched
exec` (as root) decided and planned, it writes here what the C front needs to tell that a new run
would get exactly the same plan, and the plan itself in lines C applies (plugins/common/es_view.c,
view.py's twin):

  ~/.cache/envsched/run/            chos run: the user's, 0700
  ~root/.cache/envsched/exec/       envsched exec: root's, 0700
  .../<fnv64>                       the owner's, 0600: decisioncache.py's checks (inputs, the policy
                                    and the directories above it, the user, their groups, ~/.chos
                                    not read: the run named its environment), the tree's stat, its
                                    top directories and version stamps (as the node's cache), then:
  environment NAME                  the decision
  log PATH                          root's entries: the admin log (site.log_file), for a hit's line
  source PATH                       the tree
  mount env_dir NAME                the plan's mount ops, in order (plan.py), fields tab-separated:
  mount bind SOURCE TARGET REQUIRED RECURSIVE         host paths; flags 0 or 1
  mount remount TARGET RO NOSUID NODEV RECURSIVE
  mount login_env DIR NAME
  mount pivot_root
  login LINE                        the login shells' snippet (loginenv.py), one line each
  chdir DIR...                      the plan's directories after the run's own cwd (home, "/")
  shim LINE                         the env and launcher lines of shim.py's protocol, in order
  end

A user's entry is their own file and its view is built in their own user namespace: an entry the
user edits gives them nothing unshare(1) would not. Root's entries are root's, in root's home, and
applied by root only when root's alone. What is never written (Python runs every time): a
fallback, images and users' images, devices and GPUs, isolation namespaces, node hooks, writable
trees, a relative policy path, --partition/--account (and exec's --cwd, --job, --bind), the CHOS
compatibility form, and site.decision_cache = false.
"""
from __future__ import annotations

import os

from .decisioncache import _clean, _owner_or_absent, _same, common_lines, stamp_lines, write_owned

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional

    from .identity import UserInfo
    from .plan import Plan
    from .policy import Policy
    from .resolve import Decision

RUN_HEADER = "envsched-run 1"
EXEC_HEADER = "envsched-exec 1"
RUN_DIR = ".cache/envsched/run"
EXEC_DIR = ".cache/envsched/exec"
MOUNT_KINDS = ("env_dir", "bind", "remount", "login_env", "pivot_root")


def run_inputs(uid: int, name: str, chos: Optional[str], policy: str) -> str:
    """What chos.c keys a plan on; its own copy builds the same text."""
    return f"uid={uid}\tname={name}\tchos={chos or ''}\tpolicy={policy}"


def exec_inputs(uid: int, request: str, chos: Optional[str], policy: str) -> str:
    """What envsched.c keys a plan on; its own copy builds the same text."""
    return f"uid={uid}\trequest={request}\tchos={chos or ''}\tpolicy={policy}"


def _flag(value: object) -> str:
    return "1" if value else "0"


def _mount_line(op: dict) -> Optional[str]:
    kind = op["op"]
    if kind == "env_dir" and op["root"] == "host":
        fields = [op["name"]]
    elif kind == "bind" and op["root"] == "host":
        fields = [op["source"], op["target"], _flag(op["required"]), _flag(op["recursive"])]
    elif kind == "remount":
        fields = [op["target"], _flag(op.get("ro")), _flag(op.get("nosuid")), _flag(op.get("nodev")),
                  _flag(op["recursive"])]
    elif kind == "login_env":
        fields = [op["dir"], op["name"]]
    elif kind == "pivot_root":
        fields = []
    else:
        return None
    if not _clean(*fields) or any(not f for f in fields):
        return None
    return "\t".join(["mount", kind] + fields)


def entry_lines(header: str, policy: Policy, inputs: str, user: UserInfo, decision: Decision, plan: Plan,
                cwd: Optional[str], log_file: Optional[str] = None) -> Optional[List[str]]:
    """The entry, or None when this run must not be kept (see the module's list). Reads what it
    records now, after the decision: a change in between is a miss, never a wrong hit."""
    from . import loginenv
    from .shim import shim_lines

    env = decision.environment
    if (env is None or decision.warning or decision.source is None or plan.kind != "tree" or env.image
            or env.gpus or env.devices or env.host_devices or env.namespaces or env.node_prolog
            or env.node_epilog or getattr(env, "writable", "")):
        return None
    mounts = [_mount_line(op) for op in plan.mount_ops]
    if not mounts or None in mounts or plan.mount_ops[-1]["op"] != "pivot_root":
        return None
    chdir = next((op["candidates"] for op in plan.process_ops if op["op"] == "chdir"), None)
    if not chdir or chdir[0] != cwd or not _clean(*chdir[1:]):
        return None
    if not _clean(decision.name, plan.source, log_file or ""):
        return None
    lines = common_lines(header, policy.source, inputs, user, None)
    if lines is None:
        return None
    lines.append(_same("S", plan.source))
    lines += [_owner_or_absent(os.path.join(plan.source, d)) for d in env.dirs]
    lines += stamp_lines(policy.source, env.name)
    lines += [f"environment\t{decision.name}", f"source\t{plan.source}"]
    if log_file:
        lines.append(f"log\t{log_file}")
    lines += mounts
    if any(op["op"] == "login_env" for op in plan.mount_ops):
        text = loginenv.snippet(plan.process_ops)
        if not text.endswith("\n") or not _clean(*text[:-1].split("\n")):
            return None
        lines += [f"login\t{line}" if line else "login" for line in text[:-1].split("\n")]
    lines.append("\t".join(["chdir"] + chdir[1:]))
    shim = [line for line in shim_lines(decision, plan, None, None, False, user)
            if line.startswith(("env ", "launcher "))]
    if not _clean(*shim):
        return None
    lines += [f"shim\t{line}" for line in shim]
    lines.append("end")
    return lines


def write(owner: int, directory: str, inputs: str, lines: List[str]) -> None:
    """As `owner` (the user for chos run, root for exec), real and effective: decisioncache.write_owned."""
    if os.getuid() == owner:
        write_owned(owner, directory, inputs, lines)


def _cacheable(policy: Policy, *values: str) -> bool:
    source = policy.source
    return bool(policy.site.decision_cache and source and source.startswith("/") and _clean(source, *values))


def remember_run(policy: Policy, user: UserInfo, name: str, decision: Decision, plan: Plan,
                 cwd: Optional[str]) -> None:
    """After a user's `chos run NAME` decided and planned, before it builds the view: the entry
    for chos.c's next run."""
    chos = os.environ.get("CHOS") or None
    if os.geteuid() == 0 or not _cacheable(policy, name, chos or ""):
        return
    inputs = run_inputs(user.uid, name, chos, policy.source)
    lines = entry_lines(RUN_HEADER, policy, inputs, user, decision, plan, cwd)
    if lines is not None:
        write(user.uid, os.path.join(user.home, RUN_DIR), inputs, lines)


def remember_exec(policy: Policy, user: UserInfo, request: str, chos: Optional[str], decision: Decision,
                  plan: Plan, cwd: Optional[str]) -> None:
    """After root's `envsched exec --user U --request NAME` decided and planned, before it builds
    the view: the entry for envsched.c's next run, in root's home."""
    import pwd
    if os.geteuid() != 0 or not _cacheable(policy, request, chos or ""):
        return
    inputs = exec_inputs(user.uid, request, chos, policy.source)
    lines = entry_lines(EXEC_HEADER, policy, inputs, user, decision, plan, cwd, policy.site.log_file or None)
    if lines is not None:
        write(0, os.path.join(pwd.getpwuid(0).pw_dir, EXEC_DIR), inputs, lines)
