"""The submit-time check's cache (#13): the answer `envsched validate` gave a user, kept in that
user's own home with every input it was made from, so that srun, sbatch and salloc give the same
answer again without starting Python.

The submit-time check is advice: it refuses early, with the same line the job would end with at
start, and carries the pinned version (site.pin_at_submit) that the node checks again against the
policy. The authoritative decision is always the node's (decisioncache.py, or the resolver). So the
cache lives where only its user and root can write, and a user who edits their own entries only
changes what they are told early, never what their job may run (asking for NAME@sha256:... is
anyone's right; the node refuses what the policy does not allow).

  ~/.cache/envsched/submit/            the user's, 0700
  ~/.cache/envsched/submit/<fnv64>     the user's, 0600: the lines of decisioncache.py's checks
                                       (same, owner, absent, user, groups, userfile), then:
  exit N                               the check's exit code
  out LINE                             its stdout (the request to carry), at most one line
  err LINE                             its stderr, one line each (a refusal, a warning)
  end

The C reader is plugins/slurm-spank/local.c (with ../common/es_cache.c's checks); a miss, or any
doubt, runs `envsched validate` as before, which writes the entry again.
"""
from __future__ import annotations

import os

from .decisioncache import _clean, _same, common_lines, stamp_lines, write_owned

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Sequence

    from .identity import UserInfo
    from .userfile import UserFile

HEADER = "envsched-submit 1"
DIR = ".cache/envsched/submit"


def inputs_line(uid: int, option: Optional[str], chos: Optional[str], policy: str) -> str:
    """What local.c keys an answer on; its own copy builds the same text."""
    return f"uid={uid}\toption={option or ''}\tchos={chos or ''}\tpolicy={policy}"


def entry_lines(policy_source: str, inputs: str, user: UserInfo, user_file: Optional[UserFile],
                pinned_tree: Optional[object], code: int, out: Sequence[str], err: Sequence[str]
                ) -> Optional[List[str]]:
    """The entry, or None when the answer must not be kept (an input C cannot check).
    `pinned_tree`: the environment whose current version the answer names (or could name: a new
    stamp changes it), whose stamps and tree are inputs too."""
    if len(out) > 1 or not _clean(*out, *err):
        return None
    lines = common_lines(HEADER, policy_source, inputs, user, user_file)
    if lines is None:
        return None
    if pinned_tree is not None:
        env = pinned_tree
        if getattr(env, "kind", "") != "tree" or getattr(env, "image", ""):
            return None                                 # an image's version: the store's records
        lines += stamp_lines(policy_source, env.name)
        try:
            lines.append(_same("S", env.path))
        except OSError:
            lines.append(f"absent\t{env.path}")
    lines.append(f"exit\t{int(code)}")
    lines += [f"out\t{line}" for line in out]
    lines += [f"err\t{line}" for line in err]
    lines.append("end")
    return lines


def write(user: UserInfo, inputs: str, lines: Sequence[str]) -> None:
    """As the user (the check runs as the user): ~/.cache/envsched/submit/<fnv64>, atomically; quietly
    nothing where the home cannot hold it (full, read-only, not the user's)."""
    write_owned(user.uid, os.path.join(user.home, DIR), inputs, lines)
