"""`envsched doctor`: is this node ready to run jobs in their environments? One line per problem,
with its fix.

The checks every node needs (scheduler-neutral, here):
  policy     the policy loads, and `envsched check` finds nothing (trees, images, shared paths,
             the meaning of the rules, run_dir)
  run_dir    site.run_dir can be created safely (pin.run_dir_problem), and where it exists, holds
             pins and lies on a shared mount, the pins' mounts propagate (pin.make_private_if_shared
             gives it a private mount at the first prepare)
  resolver   the envsched the scheduler runs passes the C shims' trust rule (trust.py, es_run.c)
  userns     unprivileged user namespaces, where something needs them (`chos run`, Grid Engine's
             unprivileged mode)
then every adapter's own (SchedulerAdapter.doctor): what the installed configuration says against
what the scheduler and the policy say, set-user-ID programs, daemons that must be restarted.
"""
from __future__ import annotations

import os
import stat
from typing import Callable, Dict, List, Optional, Sequence

from ..pin import _mount_of, run_dir_problem
from ..policy.model import Policy
from . import trust
from .base import Finding, read_text
from .rendering import parse_bind, under

USERNS_FILES = {"/proc/sys/user/max_user_namespaces": "0",
                "/proc/sys/kernel/unprivileged_userns_clone": "0",            # Debian's, before 6.x
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1"}  # Ubuntu 23.10+


def parse_kv(text: str) -> Dict[str, List[str]]:
    """A shim's `key=value` configuration (starter conf, joiner conf): key -> values, in order."""
    out: Dict[str, List[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def run_dir_findings(policy: Policy) -> List[Finding]:
    run_dir = policy.site.run_dir
    found = []
    why = run_dir_problem(run_dir)
    if why:
        found.append(Finding("run_dir", f"site.run_dir {run_dir}: {why}: every job start stops (exit 78)",
                             f"make every existing directory on the way to {run_dir} root's, mode 0755"))
        return found
    if not os.path.isdir(run_dir):
        return found                                    # made, root's and private, at the first job
    fields = _mount_of(run_dir)
    if fields is None:
        return found
    optional = fields[6:fields.index("-")] if "-" in fields else []
    pins = [p for p in os.listdir(run_dir) if not p.startswith(".")]
    if any(f.startswith("shared:") for f in optional) and any(
            os.path.exists(os.path.join(run_dir, p, "mnt")) for p in pins):
        found.append(Finding("run_dir", f"site.run_dir {run_dir} lies on a shared mount ({fields[4]}) and holds "
                             "pinned views: their mounts propagate to other mount namespaces",
                             f"mount --bind {run_dir} {run_dir} && mount --make-private {run_dir} "
                             "(envsched does this itself before it pins the first view)"))
    return found


def userns_problem(read: Callable[[str], Optional[str]] = read_text) -> Optional[str]:
    """Why unprivileged users cannot create user namespaces here, or None."""
    for path, bad in USERNS_FILES.items():
        value = (read(path) or "").strip()
        if value == bad:
            return f"{path} is {bad}"
    return None


def userns_findings(needed_by: Sequence[str], read: Callable[[str], Optional[str]] = read_text) -> List[Finding]:
    why = userns_problem(read)
    if not why or not needed_by:
        return []
    return [Finding("userns", f"unprivileged user namespaces are off ({why}): {', '.join(needed_by)} cannot work",
                    "sysctl -w user.max_user_namespaces=15000 (and kernel.unprivileged_userns_clone=1 where it "
                    "exists); make it permanent in /etc/sysctl.d/")]


def resolver_findings(resolver: str, where: str) -> List[Finding]:
    why = trust.trusted_program(resolver)
    if not why:
        return []
    return [Finding("resolver", f"the resolver {resolver} ({where}) is not trusted: {why}; the shims refuse to run "
                    "it, so every job fails (exit 78)",
                    "install envsched root-owned and not writable by group or others, with a root-owned "
                    "interpreter (docs/admin.md section 1)")]


def conf_findings(conf_path: str, conf: Dict[str, List[str]], policy: Policy, fix: str,
                  need_binds: Sequence[str] = ()) -> List[Finding]:
    """What a shim's key=value configuration (starter, joiner) says, checked on this node: the
    file itself trusted, resolver trusted, run_dir the policy's, every bind's source present, and
    `need_binds` (host paths that must be visible in the view) covered by a bind or site.shared."""
    found = []
    why = trust.trusted_file(conf_path)
    if why:
        found.append(Finding("conf", f"{conf_path} is not trusted: {why}; the shim refuses to run",
                             f"chown root:root {conf_path}; chmod 0644 {conf_path} (and the directories above)"))
    if "resolver" in conf:
        found += resolver_findings(conf["resolver"][-1], conf_path)
    run_dir = (conf.get("run_dir") or [""])[-1]
    if run_dir != policy.site.run_dir:
        found.append(Finding("run_dir", f"{conf_path}: run_dir={run_dir or '(none)'} but the policy's site.run_dir "
                             f"is {policy.site.run_dir}", fix))
    binds = [parse_bind(b) for b in conf.get("bind", []) if b]
    for src, _dst, _rw in binds:
        if not os.path.exists(src):
            found.append(Finding("bind", f"{conf_path}: bind={src} does not exist on this node: every job here fails "
                                 "at start (exit 71)", f"{fix}, or create {src}"))
    shared = [(m.source.rstrip("/") or "/", m.target.rstrip("/") or "/") for m in policy.site.shared]
    for path in need_binds:
        if not any(under(path, dst) and src == dst for src, dst, _ in binds) and \
                not any(under(path, dst) and src == dst for src, dst in shared):
            found.append(Finding("bind", f"{conf_path}: {path} is not bound into views: jobs cannot start from it",
                                 fix))
    return found


def file_findings(path: str, what: str, fix: str, mode: Optional[int] = None) -> List[Finding]:
    """A root-run file: present, trusted, and (where given) of this mode."""
    if not os.path.lexists(path):
        return [Finding("missing", f"{path} ({what}) does not exist", fix)]
    why = trust.trusted_file(path)
    if why:
        return [Finding("trust", f"{path} ({what}) is not trusted: {why}", fix)]
    if mode is not None:
        actual = stat.S_IMODE(os.stat(path).st_mode)
        if actual != mode:
            return [Finding("mode", f"{path} ({what}) has mode {actual:04o}, not {mode:04o}",
                            f"chmod {mode:04o} {path}")]
    return []


def setuid_findings(path: str, what: str, fix: str) -> List[Finding]:
    if not os.path.lexists(path):
        return [Finding("missing", f"{path} ({what}, set-user-ID root) does not exist", fix)]
    why = trust.setuid_problem(path)
    if why:
        return [Finding("setuid", f"{path} ({what}): {why}", f"{fix} (it installs it root-owned, mode 4755)")]
    return []
