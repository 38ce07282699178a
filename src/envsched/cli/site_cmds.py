"""`envsched site-config render | install | host-tools` and `envsched doctor`: each scheduler's
configuration for this site, written in place, and this node checked end to end. The scheduler
knowledge is in envsched/schedulers/<name>/ (one adapter each); this module is the command line."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Tuple

from typing import TYPE_CHECKING

from .. import schedulers
from ..errors import PolicyError, UsageError
from ..exitcodes import ExitCode
from ..policy import load_policy
from .common import policy_from, say
from .jobargs import require_root

if TYPE_CHECKING:     # the rest is imported when a command below runs, not by every `envsched` start
    from ..policy.model import Policy
    from ..schedulers.base import Finding, RenderOptions, SchedulerAdapter, SiteFacts

DEFAULT_POLICY = "/etc/envsched/policy.toml"


# ------------------------------------------------------------------------------------ parsers
def _config_args(r: argparse.ArgumentParser, what: str) -> None:
    """The options `render` and `install` share."""
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--scheduler", choices=schedulers.names())
    which.add_argument("--pam", metavar="SERVICE",
                       help="the /etc/pam.d/SERVICE session line of pam_envsched.so (same as --scheduler pam, "
                       "naming the service)")
    r.add_argument("--plugin", metavar="PATH",
                   help="slurm: the SPANK plugin (default /usr/lib/envsched/envsched_spank.so for a packaged "
                   "envsched, else /usr/local/lib/envsched/envsched_spank.so); pam: the module (default "
                   "pam_envsched.so)")
    r.add_argument("--resolver", metavar="PATH",
                   help="the envsched command the scheduler runs (default: this envsched)")
    r.add_argument("--bind", action="append", default=[], metavar="PATH",
                   help="extra host path for every view, repeatable (SRC[:DST[:ro|rw]], default ro)")
    r.add_argument("--spool-dir", metavar="DIR",
                   help="slurm: SlurmdSpoolDir, uge: execd_spool_dir, torque/openpbs: PBS_HOME, bound into every "
                   "view (default: what the scheduler says: scontrol show config or slurm.conf, qconf -sconf, "
                   "the running pbs_mom, /etc/pbs.conf; a per-node .../%%n: its parent is bound; 'none': no bind)")
    r.add_argument("--munge-socket-dir", metavar="DIR",
                   help="munged's socket directory, bound into every view (default: AuthInfo's socket= in "
                   "Slurm's configuration, else /run/munge; 'none': no bind)")
    r.add_argument("--host-tools", metavar="DIR",
                   help="slurm, uge: directory of wrappers of the host's clients, bound into every "
                   "view and first in the job's PATH (default: none)")
    r.add_argument("--plugin-dir", metavar="DIR",
                   help="uge, torque, openpbs: where the shims and starters are installed (default "
                   "/usr/libexec/envsched for a packaged envsched, else /usr/local/libexec/envsched)")
    r.add_argument("--src", metavar="DIR",
                   help="directory holding the envsched package, for hooks run by /usr/bin/python3 "
                   "when envsched is not installed system-wide (default: none)")
    r.add_argument("--unprivileged", action="store_true",
                   help="uge: enter through a user namespace from a starter running as the user; no "
                   "prolog, no set-user-ID program (see docs/admin.md for the trade-off)")
    r.add_argument("--no-client-jsv", action="store_true",
                   help="uge: no client-side JSV in the cell's sge_request (qsub then costs what it does "
                   "without envsched; the server JSV still refuses at submission; `-w e` must ask with "
                   "-v CHOS=NAME instead of -l chos=NAME, and `chos submit` (DRMAA) needs the client JSV; "
                   "see docs/admin.md)")
    r.add_argument("--tmpdir", action="append", default=[], metavar="PATH",
                   help="uge: a queue's tmpdir (the parent of each job's TMPDIR), bound read-write into every "
                   "view, repeatable; wins over what `qconf -sq` says (default: the tmpdir of every queue, or "
                   "of each --queue, read with qconf; /tmp when no cluster answers; 'none': no bind)")
    r.add_argument("--queue", action="append", default=[], metavar="NAME",
                   help="uge: read the tmpdir of this queue only (qconf -sq NAME), repeatable (default: every "
                   "queue qconf -sql lists)")
    r.add_argument("--debug", action="store_true",
                   help="the plugin logs the resolver's output for every job, not only on failure")
    r.add_argument("--policy", metavar="FILE", default=argparse.SUPPRESS,
                   help=f"site policy (default {DEFAULT_POLICY}); its path goes into the {what}")


def add_parsers(sub: "argparse._SubParsersAction") -> None:
    """`site-config` (render, install, host-tools) and `doctor`, on `envsched`'s subcommands."""
    s = sub.add_parser("site-config", help="scheduler configuration for this site")
    ssub = s.add_subparsers(dest="site_config_cmd", required=True, metavar="COMMAND")
    r = ssub.add_parser("render", help="print the scheduler configuration for this policy "
                        "(Slurm: the plugstack.conf line; Grid Engine: complex, JSV, queue and starter settings), "
                        "from what the scheduler itself says")
    _config_args(r, "output")
    r.add_argument("--section", metavar="NAME",
                   help="print one section of a sectioned output (uge: complex, global, sge_request, jsv, "
                   "queue, interactive_queue, starter_conf, user_starter)")
    r.set_defaults(func=cmd_site_config_render)

    i = ssub.add_parser("install", help="root: write the rendered configuration in place (plugstack.conf, "
                        "starter configuration, ...), showing a diff first and keeping a backup of each file")
    _config_args(i, "files")
    i.add_argument("--yes", "-y", action="store_true",
                   help="write without asking (needed when not on a terminal)")
    i.add_argument("--dry-run", action="store_true", help="show the diff and what is left to do; write nothing")
    i.set_defaults(func=cmd_site_config_install)

    h = ssub.add_parser("host-tools", help="root: wrappers that run the host's scheduler clients "
                        "(srun, squeue, ...) from inside views")
    h.add_argument("--scheduler", required=True, choices=schedulers.names())
    h.add_argument("--sge-root", default=os.environ.get("SGE_ROOT"),
                   help="uge: the cell's SGE_ROOT (default: $SGE_ROOT)")
    h.add_argument("--slurm-conf", default=os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"),
                   help="the host's slurm.conf (default: $SLURM_CONF or /etc/slurm/slurm.conf)")
    h.add_argument("dir", help="where to write bin/ and the view's slurm.conf (root-owned, e.g. "
                   "/var/lib/envsched/slurm-tools)")
    h.add_argument("--policy", metavar="FILE", default=argparse.SUPPRESS,
                   help=f"site policy (default {DEFAULT_POLICY}): its local_root is used")
    h.set_defaults(func=cmd_site_config_host_tools)

    d = sub.add_parser("doctor", help="check this node end to end: the policy and trees, run_dir, the resolver, "
                       "and each scheduler's installed configuration against what the scheduler says; one line "
                       "per problem with its fix (exit 1 with problems)")
    d.add_argument("--scheduler", action="append", choices=schedulers.names(), default=[],
                   help="check this scheduler's integration, repeatable (default: every scheduler this host "
                   "looks part of)")
    d.add_argument("--pam", metavar="SERVICE", help="pam: check /etc/pam.d/SERVICE only")
    d.add_argument("--plugin-dir", metavar="DIR",
                   help="uge, torque, openpbs: where the shims are installed (default /usr/local/libexec/envsched)")
    d.add_argument("--unprivileged", action="store_true", help="uge: the site uses the unprivileged mode")
    d.add_argument("--policy", metavar="FILE", default=argparse.SUPPRESS,
                   help="site policy (default: the one the installed configuration names, else "
                   f"{DEFAULT_POLICY})")
    d.set_defaults(func=cmd_doctor)


# ------------------------------------------------------------------------------------ render, install
def _options(args: argparse.Namespace, policy_path: str, resolver: Optional[str] = None) -> "RenderOptions":
    from ..schedulers.base import RenderOptions
    from ..schedulers.rendering import default_resolver
    return RenderOptions(
        policy_path=policy_path, resolver=resolver or getattr(args, "resolver", None) or default_resolver(),
        binds=tuple(getattr(args, "bind", ())), debug=getattr(args, "debug", False),
        plugin=getattr(args, "plugin", None), spool_dir=getattr(args, "spool_dir", None),
        munge_socket_dir=getattr(args, "munge_socket_dir", None), host_tools=getattr(args, "host_tools", None),
        plugin_dir=getattr(args, "plugin_dir", None), src=getattr(args, "src", None),
        unprivileged=getattr(args, "unprivileged", False), service=getattr(args, "pam", None),
        tmpdirs=tuple(getattr(args, "tmpdir", ())), queues=tuple(getattr(args, "queue", ())),
        client_jsv=not getattr(args, "no_client_jsv", False))


def _rendered(args: argparse.Namespace) -> Tuple["SchedulerAdapter", "Policy", "RenderOptions", "SiteFacts", str]:
    policy = policy_from(args)
    options = _options(args, policy.source)
    adapter = schedulers.get("pam" if args.pam else args.scheduler)
    site = adapter.read_site(options)
    text = adapter.render(policy, options, site)
    return adapter, policy, options, site, text


def cmd_site_config_render(args: argparse.Namespace) -> int:
    adapter, policy, options, site, text = _rendered(args)
    if args.section:
        text = schedulers.section(text, args.section)
    for warning in adapter.host_warnings(policy, options, site):
        say("warning: " + warning)
    sys.stdout.write(text)
    return ExitCode.OK


def cmd_site_config_install(args: argparse.Namespace) -> int:
    require_root("envsched site-config install")
    from ..schedulers import install as installer
    adapter, policy, options, site, text = _rendered(args)
    targets, steps = adapter.install_targets(policy, options, site, text)
    changes = installer.plan(targets, adapter.name)
    for warning in adapter.host_warnings(policy, options, site):
        say("warning: " + warning)
    changed = [c for c in changes if c.changed]
    for c in changes:
        sys.stdout.write(c.diff() if c.changed else f"{c.target.path}: unchanged ({c.target.what})\n")
    sys.stdout.flush()

    def left_to_do() -> None:
        if steps:
            print(f"not done by install (do it yourself; `render --scheduler {adapter.name}` shows every section):")
            for st in steps:
                print(f"  {st.section}: {st.how}")
    if not changed:
        print("nothing to change")
        left_to_do()
        return ExitCode.OK
    if args.dry_run:
        print(f"dry run: {len(changed)} file(s) would change; nothing written")
        left_to_do()
        return ExitCode.OK
    if not args.yes:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise UsageError(f"not on a terminal: give --yes to write {len(changed)} file(s) "
                             "(the diff above shows what changes); nothing written")
        answer = input(f"write {len(changed)} file(s), keeping a backup of each? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError("not confirmed; nothing written")
    installer.apply(changed)
    left_to_do()
    return ExitCode.OK


def cmd_site_config_host_tools(args: argparse.Namespace) -> int:
    require_root("envsched site-config host-tools")
    policy = policy_from(args)
    dest = os.path.abspath(args.dir)
    written, where, again = schedulers.get(args.scheduler).host_tools(dest, policy, args)
    print(f"{dest}/bin: {' '.join(written)}")
    print(f"{where}; run this again after {again}")
    return ExitCode.OK


# ------------------------------------------------------------------------------------ doctor
def cmd_doctor(args: argparse.Namespace) -> int:
    from ..schedulers import doctor
    from ..schedulers.base import Finding
    from ..schedulers.rendering import default_resolver
    from .envsched import check_findings
    names = list(dict.fromkeys(args.scheduler + (["pam"] if args.pam else [])))
    if not names:
        names = [a.name for a in schedulers.adapters() if a.present()]
    found: List[Tuple[str, "Finding"]] = []
    probe = _options(args, getattr(args, "policy", None) or DEFAULT_POLICY, resolver="/")
    sites = {}
    policy_path = getattr(args, "policy", None)
    for name in names:
        adapter = schedulers.get(name)
        sites[name] = adapter.read_site(probe)
        if policy_path is None:
            policy_path = adapter.installed(probe, sites[name]).get("policy")
    policy_path = policy_path or DEFAULT_POLICY
    try:
        policy = load_policy(policy_path)
    except PolicyError as e:
        print(Finding("policy", e.message, f"fix the policy (envsched --policy {policy_path} check)").line("node"))
        print("envsched doctor: 1 problem")
        return ExitCode.CHECK_FAILED
    found += [("node", Finding("policy", line, f"fix the policy or the tree (envsched --policy {policy.source} "
                               "check)")) for line in check_findings(policy, run_dir=False)]
    found += [("node", f) for f in doctor.run_dir_findings(policy)]
    userns = doctor.userns_problem()
    if userns:
        found.append(("node", Finding("userns", f"unprivileged user namespaces are off ({userns}): users cannot "
                                      "`chos run` without root", "sysctl -w user.max_user_namespaces=15000 if "
                                      "users should", note=True)))
    if not names:
        found += [("node", f) for f in doctor.resolver_findings(default_resolver(), "this envsched")]
    options = _options(args, policy.source, resolver="/")
    for name in names:
        adapter = schedulers.get(name)
        found += [(name, f) for f in adapter.doctor(policy, options, sites[name])]
    if os.geteuid() != 0:
        found.append(("node", Finding("root", "not run as root: daemons' state (/proc/PID/maps) and root-only "
                                      "files were not checked", "run envsched doctor as root", note=True)))
    for scope, f in found:
        print(f.line(scope))
    problems = sum(1 for _s, f in found if not f.note)
    checked = ", ".join(names) or "no scheduler found on this host"
    if problems:
        print(f"envsched doctor: {problems} problem{'s' if problems != 1 else ''} (policy {policy.source}; {checked})")
        return ExitCode.CHECK_FAILED
    print(f"envsched doctor: ok (policy {policy.source}; {checked})")
    return ExitCode.OK
