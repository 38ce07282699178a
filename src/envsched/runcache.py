"""The run cache (#13): the plan `chos run NAME -- COMMAND` was given, kept in the user's own home
with every input it was decided from, so that the next run of the same request builds the same
view without starting Python (plugins/chos/chos.c, the C front installed as `chos`).

Python stays the only place that decides: after `chos run` (as a user, unprivileged) decided and
planned, it writes here what the C front needs to tell that a new run would get exactly the same
plan, and the plan itself in lines C applies (plugins/common/es_view.c, view.py's twin):

  ~/.cache/envsched/run/            the user's, 0700
  ~/.cache/envsched/run/<fnv64>     the user's, 0600: decisioncache.py's checks (inputs, the policy
                                    and the directories above it, the user, their groups, ~/.chos
                                    not read: the run named its environment), the tree's stat, its
                                    top directories and version stamps (as the node's cache), then:
  environment NAME                  the decision
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

It is the user's own file and the view is built in the user's own user namespace: an entry the
user edits gives them nothing unshare(1) would not. What is never written (Python runs every
time): root's runs, a fallback, images and users' images, devices and GPUs, isolation namespaces,
node hooks, writable trees, a relative policy path, --partition/--account, the CHOS compatibility
form, and site.decision_cache = false.
"""
from __future__ import annotations

import os

from .decisioncache import _clean, _owner_or_absent, _same, common_lines, fnv1a64, stamp_lines, write_whole

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional

    from .identity import UserInfo
    from .plan import Plan
    from .policy import Policy
    from .resolve import Decision

HEADER = "envsched-run 1"
DIR = ".cache/envsched/run"
MOUNT_KINDS = ("env_dir", "bind", "remount", "login_env", "pivot_root")


def inputs_line(uid: int, name: str, chos: Optional[str], policy: str) -> str:
    """What chos.c keys a plan on; its own copy builds the same text."""
    return f"uid={uid}\tname={name}\tchos={chos or ''}\tpolicy={policy}"


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


def entry_lines(policy: Policy, inputs: str, user: UserInfo, decision: Decision, plan: Plan,
                cwd: Optional[str]) -> Optional[List[str]]:
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
    if not _clean(decision.name, plan.source):
        return None
    lines = common_lines(HEADER, policy.source, inputs, user, None)
    if lines is None:
        return None
    lines.append(_same("S", plan.source))
    lines += [_owner_or_absent(os.path.join(plan.source, d)) for d in env.dirs]
    lines += stamp_lines(policy.source, env.name)
    lines += [f"environment\t{decision.name}", f"source\t{plan.source}"]
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


def write(user: UserInfo, inputs: str, lines: List[str]) -> None:
    """As the user: ~/.cache/envsched/run/<fnv64>, atomically; quietly nothing where the home
    cannot hold it (full, read-only, not the user's)."""
    if os.geteuid() != user.uid or os.getuid() != user.uid:
        return
    directory = os.path.join(user.home, DIR)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
        if st.st_uid != user.uid or st.st_mode & 0o077:
            return
        write_whole(os.path.join(directory, fnv1a64(inputs)), lines)
    except OSError:
        return


def remember(policy: Policy, user: UserInfo, name: str, decision: Decision, plan: Plan,
             cwd: Optional[str]) -> None:
    """After `chos run NAME` decided and planned, before it builds the view: the entry for next time."""
    source = policy.source
    if not policy.site.decision_cache or not source or not source.startswith("/") or os.geteuid() == 0:
        return
    chos = os.environ.get("CHOS") or None
    if not _clean(name, chos or "", source):
        return
    inputs = inputs_line(user.uid, name, chos, source)
    lines = entry_lines(policy, inputs, user, decision, plan, cwd)
    if lines is not None:
        write(user, inputs, lines)
