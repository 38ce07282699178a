"""`envsched site-config render | host-tools`: scheduler configuration for this site."""
from __future__ import annotations

import argparse
import os
import sys

from .. import siteconfig
from ..errors import UsageError
from ..exitcodes import ExitCode
from .common import policy_from, say
from .jobargs import require_root


def cmd_site_config_render(args: argparse.Namespace) -> int:
    policy = policy_from(args)
    options = siteconfig.RenderOptions(
        policy_path=policy.source, resolver=args.resolver or siteconfig.default_resolver(),
        binds=tuple(args.bind), debug=args.debug, plugin=args.plugin, spool_dir=args.spool_dir,
        munge_socket_dir=args.munge_socket_dir, host_tools=args.host_tools, plugin_dir=args.plugin_dir,
        src=args.src, unprivileged=args.unprivileged, service=args.pam, tmpdirs=tuple(args.tmpdir),
        queues=tuple(args.queue))
    text = siteconfig.render("pam" if args.pam else args.scheduler, policy, options)
    if args.section:
        text = siteconfig.section(text, args.section)
    for warning in siteconfig.host_warnings(args.scheduler, options):
        say("warning: " + warning)
    sys.stdout.write(text)
    return ExitCode.OK


def cmd_site_config_host_tools(args: argparse.Namespace) -> int:
    require_root("envsched site-config host-tools")
    from ..hosttools import write_slurm_host_tools, write_uge_host_tools
    policy = policy_from(args)
    dest = os.path.abspath(args.dir)
    if args.scheduler == "uge":
        if not args.sge_root:
            raise UsageError("--sge-root (or SGE_ROOT) is needed for --scheduler uge")
        written = write_uge_host_tools(dest, args.sge_root, policy.site.local_root)
        again = "upgrading Grid Engine"
        where = "give --host-tools " + dest + " to `site-config render --scheduler uge`"
    else:
        written = write_slurm_host_tools(dest, args.slurm_conf, policy.site.local_root)
        again = "changing slurm.conf, plugstack.conf or upgrading Slurm"
        where = f"add host_tools={dest} to the plugin's plugstack.conf line"
    print(f"{dest}/bin: {' '.join(written)}")
    print(f"{where}; run this again after {again}")
    return ExitCode.OK
