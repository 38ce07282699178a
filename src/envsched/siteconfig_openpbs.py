"""`envsched site-config render --scheduler openpbs`: OpenPBS's configuration for this site.

One document with sections (`#### NAME: where it goes`; `--section NAME` prints one):
the `chos` resource, the qmgr commands that create, import and configure the three hooks
(plugins/torque/openpbs/: queuejob, execjob_launch, execjob_end), the hooks' configuration
file (JSON, imported into each hook; the hooks read it through pbs.hook_config_filename), and
the set-user-ID joiner's configuration.

Install layout, under one directory (`--plugin-dir`, default /usr/local/libexec/envsched):
    envsched_queuejob.py, envsched_launch.py, envsched_end.py   copied from plugins/torque/openpbs/
    envsched-openpbs.json                                       the `hook_config` section
    pbs-join, pbs-join.conf                                     `make -C plugins/torque/openpbs/joiner
                                                                install`, the `joiner_conf` section
"""
from __future__ import annotations

import os
from typing import List

from .policy.model import Policy
from .siteconfig import RenderOptions, SiteConfigError, check_bind, check_path, render_template

DEFAULT_PLUGIN_DIR = "/usr/local/libexec/envsched"
DEFAULT_PBS_HOME = "/var/spool/pbs"      # PBS_HOME: the mom keeps job scripts below it (mom_priv/jobs)
NONE = "none"
HOOK_FILES = ("envsched_queuejob.py", "envsched_launch.py", "envsched_end.py")


def _json_safe(what: str, value: str) -> str:
    """A path written inside a JSON string and a qmgr command: no quotes, no backslashes."""
    if '"' in value or "\\" in value or "'" in value:
        raise SiteConfigError(f"{what}: quotes and backslashes are not allowed: {value!r}")
    return value


def render_openpbs(policy: Policy, options: RenderOptions) -> str:
    plugin_dir = _json_safe("--plugin-dir", check_path("--plugin-dir", options.plugin_dir
                                                       or DEFAULT_PLUGIN_DIR).rstrip("/"))
    policy_path = _json_safe("--policy", check_path("--policy", options.policy_path))
    run_dir = _json_safe("site.run_dir", check_path(f"{policy.source}: site.run_dir", policy.site.run_dir))
    src = _json_safe("--src", check_path("--src", options.src)) if options.src else None
    pbs_home = options.spool_dir or DEFAULT_PBS_HOME
    defaults = [] if pbs_home == NONE else [check_path("--spool-dir", pbs_home)]
    binds: List[str] = defaults + [b for b in dict.fromkeys(check_bind(b) for b in options.binds)
                                   if b not in defaults]
    for b in binds:
        _json_safe("--bind", b)
    return render_template("openpbs/site.conf.j2", policy=policy_path, run_dir=run_dir, src=src,
                           plugin_dir=plugin_dir, binds=binds, hook_config=f"{plugin_dir}/envsched-openpbs.json",
                           joiner=f"{plugin_dir}/pbs-join")


def host_warnings(options: RenderOptions) -> List[str]:
    plugin_dir = options.plugin_dir or DEFAULT_PLUGIN_DIR
    return [f"{plugin_dir}/{name} does not exist on this host" for name in HOOK_FILES + ("pbs-join",)
            if not os.path.exists(os.path.join(plugin_dir, name))]
