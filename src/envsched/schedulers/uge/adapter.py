"""Grid Engine's adapter (`--scheduler uge`).

render: one document with sections (`#### NAME: where it goes`): the `chos` complex, the global
jsv_url, the cell's sge_request (client-side JSV), the JSV launcher, the queue attributes
(prolog, epilog, starter_method), the attributes of interactive queues, and the set-user-ID
starter's configuration, or in unprivileged mode the user-namespace starter. The test cluster
(tests/uge/conftest.py) is configured from exactly this output. What qconf says is used: each
queue's tmpdir (tmpdirs.py) and the global execd_spool_dir; flags win.

Install layout, under one directory (`--plugin-dir`, default /usr/local/libexec/envsched):
    envsched_jsv.py, envsched_uge.py   copied from plugins/uge/
    uge-jsv                            the `jsv` section (launches envsched_jsv.py with the site's settings)
    uge-starter, uge-prolog, uge-epilog  `make -C plugins/uge/starter install`
    uge-starter.conf                   the `starter_conf` section (read by all three)
    uge-user-starter                   unprivileged mode: the `user_starter` section
`site-config install` writes the files (uge-jsv, uge-starter.conf or uge-user-starter, and a
block in $SGE_ROOT/$SGE_CELL/common/sge_request) and prints the qconf commands for the cluster's
settings (complex, global, queues), which it does not change.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Tuple

from ...policy.model import Policy
from ..base import (CHECKOUT_PLUGIN_DIR, NONE, default_plugin_dir, Finding, InstallTarget, ManualStep, RenderOptions, SchedulerAdapter, SiteConfigError,
                    SiteFacts, read_text)
from ..doctor import conf_findings, file_findings, parse_kv, setuid_findings, userns_findings
from ..rendering import check_bind, check_path, comment_lines, render_template, section
from .tmpdirs import Tmpdirs, lookup_tmpdirs, tmpdir_binds, tmpdir_header

DEFAULT_PLUGIN_DIR = CHECKOUT_PLUGIN_DIR                # the packaged envsched: default_plugin_dir()
DEFAULT_EXECD_SPOOL = "/var/spool/gridengine/execd"     # Debian's; job scripts live below it
DEFAULT_SGE_ROOT = "/var/lib/gridengine"                 # Debian's
MAX_BINDS = 16                                          # plugins/uge/starter/starter.h: ES_MAX_BINDS


def conf_value(text: str, key: str) -> Optional[str]:
    """A `key value` line of qconf's output (-sconf, -sq), continuation lines joined."""
    for line in re.sub(r"\\\n\s*", "", text).splitlines():
        words = line.split(None, 1)
        if words[:1] == [key]:
            return words[1].strip() if len(words) > 1 else ""
    return None


def _is_our_jsv_line(line: str) -> bool:
    words = line.split("#", 1)[0].split()
    return len(words) == 2 and words[0] == "-jsv" and os.path.basename(words[1]) == "uge-jsv"


class UgeAdapter(SchedulerAdapter):
    name = "uge"
    title = "Grid Engine"
    sections = ("complex", "global", "sge_request", "jsv", "queue", "interactive_queue", "starter_conf",
                "user_starter")
    environ: Optional[Dict[str, str]] = None            # None: os.environ (unit tests give their own)

    def _env(self) -> Dict[str, str]:
        return dict(os.environ if self.environ is None else self.environ)

    # ------------------------------------------------------------------ what qconf says
    def read_site(self, options: RenderOptions) -> SiteFacts:
        facts = SiteFacts()
        env = self._env()
        facts.set("sge_root", env.get("SGE_ROOT") or DEFAULT_SGE_ROOT, "SGE_ROOT" if env.get("SGE_ROOT") else "default")
        facts.set("sge_cell", env.get("SGE_CELL") or "default", "SGE_CELL" if env.get("SGE_CELL") else "default")
        facts.set("plugin_dir", (options.plugin_dir or default_plugin_dir()).rstrip("/") or "/",
                  "--plugin-dir" if options.plugin_dir else "default")
        if options.spool_dir:
            facts.set("spool_dir", options.spool_dir, "--spool-dir")
        else:
            rc, out = self.run(["qconf", "-sconf", "global"])
            spool = conf_value(out, "execd_spool_dir") if rc == 0 else None
            if spool:
                facts.set("spool_dir", spool, "qconf -sconf global")
                rc, hosts = self.run(["qconf", "-sconfl"])
                for host in (hosts.split() if rc == 0 else [])[:64]:
                    rc, local = self.run(["qconf", "-sconf", host])
                    other = conf_value(local, "execd_spool_dir") if rc == 0 else None
                    if other and other != spool:
                        facts.warnings.append(f"host {host} has its own execd_spool_dir {other}: render with "
                                              f"--spool-dir {other} for that host")
            else:
                facts.set("spool_dir", DEFAULT_EXECD_SPOOL, "default")
        tmpdirs = lookup_tmpdirs(self.run, tuple(options.tmpdirs), tuple(options.queues))
        facts.extra["tmpdirs"] = tmpdirs
        if tmpdirs.warning:
            facts.warnings.append(tmpdirs.warning)
        return facts

    # ------------------------------------------------------------------ render
    def render(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> str:
        plugin_dir = check_path("--plugin-dir", site.values["plugin_dir"])
        policy_path = check_path("--policy", options.policy_path)
        resolver = check_path("--resolver", options.resolver)
        run_dir = check_path(f"{policy.source}: site.run_dir", policy.site.run_dir)
        src = check_path("--src", options.src) if options.src else None
        spool = site.values["spool_dir"]
        # the execd spool holds each job's script (job_scripts/<id>), which runs inside the view
        defaults = [] if spool == NONE else [check_path("execd_spool_dir (--spool-dir)", spool)]
        binds = defaults + [b for b in dict.fromkeys(check_bind(b) for b in options.binds) if b not in defaults]
        tmpdirs: Tmpdirs = site.extra["tmpdirs"]
        binds, tmpdir_notes = tmpdir_binds(policy, tmpdirs, binds)
        host_tools = check_path("--host-tools", options.host_tools) if options.host_tools else None
        if len(binds) > MAX_BINDS:
            raise SiteConfigError(f"{len(binds)} binds: the starter takes at most {MAX_BINDS}")
        text = render_template("uge/site.conf.j2", policy=policy_path, resolver=resolver, run_dir=run_dir,
                               plugin_dir=plugin_dir, src=src, binds=binds,
                               jsv=f"{plugin_dir}/uge-jsv", starter=f"{plugin_dir}/uge-starter",
                               epilog=f"{plugin_dir}/uge-epilog", prolog=f"{plugin_dir}/uge-prolog",
                               cache=policy.site.decision_cache,
                               log_file=check_path(f"{policy.source}: site.log_file", policy.site.log_file)
                               if policy.site.log_file else None,
                               user_starter=f"{plugin_dir}/uge-user-starter",
                               unprivileged=options.unprivileged, host_tools=host_tools,
                               client_jsv=options.client_jsv)
        first = text.index("\n#### ") + 1                  # above the first section
        spool_note = (f"execd_spool_dir {spool} [{site.source('spool_dir')}]: bound into every view (job "
                      "scripts run from it)" if spool != NONE else "execd_spool_dir: not bound (--spool-dir none)")
        other = [w for w in site.warnings if w != tmpdirs.warning]
        return (text[:first] + tmpdir_header(tmpdir_notes, tmpdirs.warning)
                + comment_lines([spool_note] + [f"warning: {w}" for w in other]) + text[first:])

    def host_warnings(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> List[str]:
        found = super().host_warnings(policy, options, site)
        plugin_dir = site.values["plugin_dir"]
        for name in ("envsched_jsv.py", "envsched_uge.py") + (() if options.unprivileged else ("uge-starter",
                                                                                              "uge-prolog", "uge-epilog")):
            if not os.path.exists(os.path.join(plugin_dir, name)):
                found.append(f"{plugin_dir}/{name} does not exist on this host")
        return found

    # ------------------------------------------------------------------ install
    def install_targets(self, policy: Policy, options: RenderOptions, site: SiteFacts,
                        text: str) -> Tuple[List[InstallTarget], List[ManualStep]]:
        plugin_dir = site.values["plugin_dir"]
        common = os.path.join(site.values["sge_root"], site.values["sge_cell"], "common")
        targets = [InstallTarget(f"{plugin_dir}/uge-jsv", section(text, "jsv"), 0o755, "jsv")]
        if options.unprivileged:
            targets.append(InstallTarget(f"{plugin_dir}/uge-user-starter", section(text, "user_starter"), 0o755,
                                         "user_starter"))
        else:
            targets.append(InstallTarget(f"{plugin_dir}/uge-starter.conf", section(text, "starter_conf"), 0o644,
                                         "starter_conf"))
        targets.append(InstallTarget(os.path.join(common, "sge_request"), section(text, "sge_request"), 0o644,
                                     "sge_request", kind="block", legacy=_is_our_jsv_line))
        complex_line = section(text, "complex").strip()
        steps = [ManualStep("complex", f"qconf -sc > f; add `{complex_line}` to f (unless a chos line is "
                                       "there); qconf -Mc f"),
                 ManualStep("global", "qconf -mconf global: " + section(text, "global").strip())]
        for name, what in (("queue", "each batch queue Q"), ("interactive_queue", "each qrsh queue Q")):
            for line in section(text, name).splitlines():
                if line.strip():
                    attr, value = line.split(None, 1)
                    steps.append(ManualStep(name, f"{what}: qconf -mattr queue {attr} \"{value}\" Q"))
        return targets, steps

    # ------------------------------------------------------------------ this node
    def present(self) -> bool:
        """SGE_ROOT set (an admin's shell, settings.sh), or a Grid Engine daemon running here."""
        if self._env().get("SGE_ROOT"):
            return True
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/comm") as f:
                        if f.read().strip() in ("sge_execd", "sge_qmaster"):
                            return True
                except OSError:
                    continue
        return False

    def installed(self, options: RenderOptions, site: SiteFacts) -> Dict[str, str]:
        if options.unprivileged:
            return {}
        conf = parse_kv(read_text(os.path.join(site.values["plugin_dir"], "uge-starter.conf")) or "")
        return {k: v[-1] for k, v in conf.items() if k in ("policy", "resolver", "run_dir") and v}

    def doctor(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> List[Finding]:
        found: List[Finding] = []
        d = site.values["plugin_dir"]
        make = "make -C plugins/uge/starter install"
        install = "envsched site-config install --scheduler uge" + (" --unprivileged" if options.unprivileged else "")
        for name in ("envsched_jsv.py", "envsched_uge.py"):
            found += file_findings(f"{d}/{name}", "copied from plugins/uge/",
                                   f"install -m 0755 plugins/uge/{name} {d}/")
        found += file_findings(f"{d}/uge-jsv", "the jsv section", install)
        spool = site.values["spool_dir"]
        need = [] if spool == NONE else [spool]
        if options.unprivileged:
            found += file_findings(f"{d}/uge-user-starter", "the user_starter section", install, 0o755)
            found += userns_findings(["Grid Engine's unprivileged mode (uge-user-starter)"])
        else:
            found += setuid_findings(f"{d}/uge-starter", "the queues' starter_method", make)
            found += file_findings(f"{d}/uge-prolog", "the queues' prolog", make)
            found += file_findings(f"{d}/uge-epilog", "the queues' epilog", make)
            conf_path = f"{d}/uge-starter.conf"
            text = read_text(conf_path)
            if text is None:
                found.append(Finding("missing", f"{conf_path} (starter_conf) does not exist: every job fails", install))
            else:
                found += conf_findings(conf_path, parse_kv(text), policy, install, need)
        rc, out = self.run(["qconf", "-sconf", "global"])
        if rc == 0:
            jsv = conf_value(out, "jsv_url")
            if jsv != f"{d}/uge-jsv":
                found.append(Finding("jsv_url", f"the global jsv_url is {jsv or 'none'}, not {d}/uge-jsv: requests "
                                     "are not checked at submission", f"qconf -mconf global: jsv_url {d}/uge-jsv"))
            rc, out = self.run(["qconf", "-sc"])
            if rc == 0 and not any(line.split()[:1] == ["chos"] for line in out.splitlines()):
                found.append(Finding("complex", "no `chos` complex: qsub -l chos=NAME is refused",
                                     "qconf -sc > f; add `chos chos STRING == YES NO NONE 0`; qconf -Mc f"))
        return found

    # ------------------------------------------------------------------ host tools
    def host_tools(self, dest: str, policy: Policy, args: Any) -> Tuple[List[str], str, str]:
        from ...errors import UsageError
        from .hosttools import write_uge_host_tools
        if not getattr(args, "sge_root", None):
            raise UsageError("--sge-root (or SGE_ROOT) is needed for --scheduler uge")
        written = write_uge_host_tools(dest, args.sge_root, policy.site.local_root)
        return written, f"give --host-tools {dest} to `site-config render --scheduler uge`", "upgrading Grid Engine"
