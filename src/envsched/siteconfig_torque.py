"""`envsched site-config render --scheduler torque`: Torque's configuration for this site.

One document with sections (`#### NAME: where it goes`, see siteconfig.section): the
mom_priv/config lines, the starter's configuration file, the prologue and epilogue launchers,
and the torque.cfg SUBMITFILTER line with its launcher. The Torque contract tests
(tests/torque/test_torque_mom.py) install the shims from exactly this output.

Install layout, under one directory (`--plugin-dir`, default /usr/local/libexec/envsched):
    envsched_torque.py                  copied from plugins/torque/torque/
    torque-starter                      `make -C plugins/torque/torque install` (set-user-ID root)
    torque-starter.conf                 the `starter_conf` section
    torque-submitfilter                 the `submitfilter` section
and in $PBS_HOME/mom_priv: prologue, prologue.parallel, epilogue, epilogue.parallel (the
sections of those names; root-owned, mode 0500: pbs_mom refuses root scripts writable by anyone
but root).
"""
from __future__ import annotations

from .policy.model import Policy
from .siteconfig import RenderOptions, SiteConfigError, check_bind, check_path, render_template

DEFAULT_PLUGIN_DIR = "/usr/local/libexec/envsched"
DEFAULT_PBS_HOME = "/var/spool/torque"          # TORQUE_HOME of the packages; jobs run from mom_priv/jobs
MAX_BINDS = 16                                  # plugins/uge/starter/starter.h: ES_MAX_BINDS (conf.c)
NONE = "none"


def render_torque(policy: Policy, options: RenderOptions) -> str:
    plugin_dir = check_path("--plugin-dir", options.plugin_dir or DEFAULT_PLUGIN_DIR).rstrip("/")
    pbs_home = options.spool_dir or DEFAULT_PBS_HOME
    # the job's script and spool files (mom_priv/jobs, spool) live under PBS_HOME: bind it
    defaults = [] if pbs_home == NONE else [check_path("--spool-dir", pbs_home)]
    binds = defaults + [b for b in dict.fromkeys(check_bind(b) for b in options.binds) if b not in defaults]
    if len(binds) > MAX_BINDS:
        raise SiteConfigError(f"{len(binds)} binds: the starter takes at most {MAX_BINDS}")
    return render_template(
        "torque/site.conf.j2", policy=check_path("--policy", options.policy_path),
        resolver=check_path("--resolver", options.resolver),
        run_dir=check_path(f"{policy.source}: site.run_dir", policy.site.run_dir),
        log_file=check_path(f"{policy.source}: site.log_file", policy.site.log_file) if policy.site.log_file else None,
        plugin_dir=plugin_dir, src=check_path("--src", options.src) if options.src else None, binds=binds,
        starter=f"{plugin_dir}/torque-starter", shim=f"{plugin_dir}/envsched_torque.py",
        submitfilter=f"{plugin_dir}/torque-submitfilter",
        mom_config=None if pbs_home == NONE else f"{pbs_home.rstrip('/')}/mom_priv/config")

