"""Login shells: the view's environment settings, re-applied after the tree's /etc/profile.

A login shell (Grid Engine's `login_shells`, Torque's `-sh`, ssh and `su -l` through the PAM
module, `chos shell`) reads the environment's /etc/profile, and a real tree's profile resets
PATH (Debian: `PATH="/usr/local/bin:/usr/bin:/bin:..."`). What envsched and the shims put into
the environment before the exec would be gone: the policy's `env` operations on PATH (or on any
variable a profile sets) and the directories a shim puts first in PATH (the Grid Engine
starter's host tools).

So every view of a tree whose /etc/profile.d is a directory gets one more file there, in the
view only (never in the tree): /etc/profile.d/zz-envsched.sh, which /etc/profile sources last
(Debian, RHEL, SUSE and Alpine profiles run /etc/profile.d/*.sh at their end). It re-applies:

  1. the plan's env operations, in plan order: set and unset as such; prepend and append only
     when the value is not already one of the variable's ':'-separated parts, so reading the
     file twice (a login shell inside a login shell) or after a profile that kept the variable
     adds no duplicate;
  2. ENVSCHED_PATH_PREPEND, when set and not empty: put first in PATH the same way. A shim that
     prepends its own directories to PATH exports them here too, so they survive /etc/profile.

Values are single-quoted (`'` written as `'\\''`): they come from root's policy, but nothing in
them is ever expanded by the shell. Names outside [A-Za-z_][A-Za-z0-9_]* (the policy refuses
them) are left out. The file is POSIX sh: dash, bash, busybox ash, ksh, `zsh` in sh emulation.

Building it is pure; view.py puts it into the view (plan op `login_env`).
"""
from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List

PROFILE_DIR = "/etc/profile.d"
SNIPPET_NAME = "zz-envsched.sh"
PATH_PREPEND_VAR = "ENVSCHED_PATH_PREPEND"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

HEADER = """\
# /etc/profile.d/zz-envsched.sh: written by envsched into this view only (it is not a file of the
# environment's tree). Login shells read it at the end of /etc/profile; it puts back what the
# profile may have reset: the site's environment settings and $ENVSCHED_PATH_PREPEND.
"""


def sh_quote(value: str) -> str:
    """`value` as one single-quoted POSIX sh word: nothing in it is expanded."""
    return "'" + value.replace("'", "'\\''") + "'"


def _add_once(name: str, value_word: str, first: bool) -> str:
    """sh for "prepend (first) or append `value_word` to $name unless it is a part of it already"."""
    new = f"{value_word}${{{name}:+:${name}}}" if first else f"${{{name}:+${name}:}}{value_word}"
    return (f'case ":${{{name}-}}:" in *:{value_word}:*) ;; '
            f"*) {name}={new}; export {name} ;; esac\n")


def snippet(env_ops: Iterable[Dict[str, Any]]) -> str:
    """The file's text for these plan operations (those with op "env"; others are ignored)."""
    out: List[str] = [HEADER]
    for op in env_ops:
        if op.get("op") != "env" or not isinstance(op.get("name"), str) or not _NAME.match(op["name"]):
            continue
        name, action, value = op["name"], op.get("action"), op.get("value")
        if action == "unset":
            out.append(f"unset {name}\n")
        elif not isinstance(value, str):
            continue
        elif action == "set":
            out.append(f"{name}={sh_quote(value)}; export {name}\n")
        elif action in ("prepend", "append"):
            out.append(_add_once(name, sh_quote(value), first=action == "prepend"))
    v = PATH_PREPEND_VAR
    out.append(f"case ${{{v}:+set}} in set) " + _add_once("PATH", f'"${v}"', first=True).rstrip("\n")
               + " ;; esac\n")
    return "".join(out)
