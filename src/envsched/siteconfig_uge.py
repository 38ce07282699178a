"""`envsched site-config render --scheduler uge`: Grid Engine's configuration for this site.

One document with sections (`#### NAME: where it goes`): the `chos` complex, the global
jsv_url, the cell's sge_request (client-side JSV), the JSV launcher, the queue attributes
(prolog, epilog, starter_method), the attributes of interactive queues, and the set-user-ID
starter's configuration, or in unprivileged mode the user-namespace starter. The test cluster
(tests/uge/conftest.py) is configured from exactly this output.

Install layout, under one directory (`--plugin-dir`, default /usr/local/libexec/envsched):
    envsched_jsv.py, envsched_uge.py   copied from plugins/uge/
    uge-jsv                            the `jsv` section (launches envsched_jsv.py with the site's settings)
    uge-starter, uge-epilog            `make -C plugins/uge/starter install`
    uge-starter.conf                   the `starter_conf` section (read by both)
    uge-user-starter                   unprivileged mode: the `user_starter` section
"""
from __future__ import annotations

import os

from .policy.model import Policy
from .siteconfig import RenderOptions, SiteConfigError, check_bind, check_path, render_template

DEFAULT_PLUGIN_DIR = "/usr/local/libexec/envsched"
DEFAULT_EXECD_SPOOL = "/var/spool/gridengine/execd"     # Debian's; job scripts live below it
NONE = "none"
MAX_BINDS = 16                                          # plugins/uge/starter/starter.h: ES_MAX_BINDS


def render_uge(policy: Policy, options: RenderOptions) -> str:
    plugin_dir = check_path("--plugin-dir", options.plugin_dir or DEFAULT_PLUGIN_DIR).rstrip("/")
    policy_path = check_path("--policy", options.policy_path)
    resolver = check_path("--resolver", options.resolver)
    run_dir = check_path(f"{policy.source}: site.run_dir", policy.site.run_dir)
    src = check_path("--src", options.src) if options.src else None
    spool = options.spool_dir or DEFAULT_EXECD_SPOOL
    # the execd spool holds each job's script (job_scripts/<id>), which runs inside the view
    defaults = [] if spool == NONE else [check_path("--spool-dir", spool)]
    binds = defaults + [b for b in dict.fromkeys(check_bind(b) for b in options.binds) if b not in defaults]
    host_tools = check_path("--host-tools", options.host_tools) if options.host_tools else None
    if len(binds) > MAX_BINDS:
        raise SiteConfigError(f"{len(binds)} binds: the starter takes at most {MAX_BINDS}")
    return render_template("uge/site.conf.j2", policy=policy_path, resolver=resolver, run_dir=run_dir,
                           plugin_dir=plugin_dir, src=src, binds=binds,
                           jsv=f"{plugin_dir}/uge-jsv", starter=f"{plugin_dir}/uge-starter",
                           epilog=f"{plugin_dir}/uge-epilog",
                           log_file=check_path(f"{policy.source}: site.log_file", policy.site.log_file)
                           if policy.site.log_file else None,
                           user_starter=f"{plugin_dir}/uge-user-starter",
                           unprivileged=options.unprivileged, host_tools=host_tools)


def host_warnings(options: RenderOptions) -> list:
    plugin_dir = options.plugin_dir or DEFAULT_PLUGIN_DIR
    found = []
    for name in ("envsched_jsv.py", "envsched_uge.py") + (() if options.unprivileged else ("uge-starter",
                                                                                          "uge-epilog")):
        if not os.path.exists(os.path.join(plugin_dir, name)):
            found.append(f"{plugin_dir}/{name} does not exist on this host")
    return found
