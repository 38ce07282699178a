"""OpenPBS's adapter (`--scheduler openpbs`).

render: one document with sections (`#### NAME: where it goes`; `--section NAME` prints one):
the `chos` resource, the qmgr commands that create, import and configure the three hooks
(plugins/torque/openpbs/: queuejob, execjob_launch, execjob_end), the hooks' configuration
file (JSON, imported into each hook; the hooks read it through pbs.hook_config_filename), the
set-user-ID joiner's configuration, and that of pbs-prepare (the C program the launch and end hooks
run: the decision cache, else the resolver; the release; and, on the server host, the queuejob
hook's warm submissions from root's run_dir/.submit). PBS_HOME (bound into every view: the mom
keeps job scripts below it, mom_priv/jobs) is --spool-dir, else PBS_HOME in /etc/pbs.conf
($PBS_CONF_FILE), else /var/spool/pbs (a warning).

Install layout, under one directory (`--plugin-dir`, default /usr/local/libexec/envsched):
    envsched_queuejob.py, envsched_launch.py, envsched_end.py   copied from plugins/torque/openpbs/
    envsched-openpbs.json                                       the `hook_config` section
    pbs-join, pbs-join.conf                                     `make -C plugins/torque/openpbs/joiner
                                                                install`, the `joiner_conf` section
    pbs-prepare, pbs-prepare.conf                               the same `make install`, the
                                                                `prepare_conf` section
`site-config install` writes the three files and prints the qmgr commands (resource, qmgr), which
it does not run.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

from ...policy.model import Policy
from ..base import (CHECKOUT_PLUGIN_DIR, NONE, default_plugin_dir, Finding, InstallTarget, ManualStep, RenderOptions, SchedulerAdapter, SiteConfigError,
                    SiteFacts, read_text)
from ..doctor import conf_findings, file_findings, parse_kv, setuid_findings
from ..rendering import check_bind, check_path, render_template, section

DEFAULT_PLUGIN_DIR = CHECKOUT_PLUGIN_DIR                # the packaged envsched: default_plugin_dir()
DEFAULT_PBS_HOME = "/var/spool/pbs"      # PBS_HOME: the mom keeps job scripts below it (mom_priv/jobs)
DEFAULT_PBS_CONF = "/etc/pbs.conf"
HOOK_FILES = ("envsched_queuejob.py", "envsched_launch.py", "envsched_end.py")
MAX_BINDS = 16                           # pbs-prepare's (plugins/uge/starter/conf.c ES_MAX_BINDS)


def _json_safe(what: str, value: str) -> str:
    """A path written inside a JSON string and a qmgr command: no quotes, no backslashes."""
    if '"' in value or "\\" in value or "'" in value:
        raise SiteConfigError(f"{what}: quotes and backslashes are not allowed: {value!r}")
    return value


def parse_pbs_conf(text: str) -> Dict[str, str]:
    """/etc/pbs.conf: `NAME=value` lines."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip().strip('"')
    return out


class OpenpbsAdapter(SchedulerAdapter):
    name = "openpbs"
    title = "OpenPBS"
    sections = ("resource", "qmgr", "hook_config", "joiner_conf", "prepare_conf")
    environ: Optional[Dict[str, str]] = None

    def _pbs_conf(self) -> str:
        env = os.environ if self.environ is None else self.environ
        return env.get("PBS_CONF_FILE") or DEFAULT_PBS_CONF

    def read_site(self, options: RenderOptions) -> SiteFacts:
        facts = SiteFacts()
        facts.set("plugin_dir", (options.plugin_dir or default_plugin_dir()).rstrip("/") or "/",
                  "--plugin-dir" if options.plugin_dir else "default")
        conf_path = self._pbs_conf()
        text = read_text(conf_path)
        conf = parse_pbs_conf(text) if text is not None else {}
        facts.extra["pbs_conf"] = conf
        if options.spool_dir:
            facts.set("pbs_home", options.spool_dir, "--spool-dir")
        elif conf.get("PBS_HOME"):
            facts.set("pbs_home", conf["PBS_HOME"], conf_path)
        else:
            facts.set("pbs_home", DEFAULT_PBS_HOME, "default")
            facts.warnings.append(f"{conf_path} names no PBS_HOME{' (cannot be read)' if text is None else ''}: "
                                  f"assumed {DEFAULT_PBS_HOME}; give --spool-dir PBS_HOME")
        return facts

    def render(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> str:
        plugin_dir = _json_safe("--plugin-dir", check_path("--plugin-dir", site.values["plugin_dir"]))
        policy_path = _json_safe("--policy", check_path("--policy", options.policy_path))
        run_dir = _json_safe("site.run_dir", check_path(f"{policy.source}: site.run_dir", policy.site.run_dir))
        src = _json_safe("--src", check_path("--src", options.src)) if options.src else None
        pbs_home = site.values["pbs_home"]
        defaults = [] if pbs_home == NONE else [check_path("PBS_HOME (--spool-dir)", pbs_home)]
        binds: List[str] = defaults + [b for b in dict.fromkeys(check_bind(b) for b in options.binds)
                                       if b not in defaults]
        for b in binds:
            _json_safe("--bind", b)
        if len(binds) > MAX_BINDS:
            raise SiteConfigError(f"{len(binds)} binds: pbs-prepare takes at most {MAX_BINDS}")
        text = render_template("openpbs/site.conf.j2", policy=policy_path, run_dir=run_dir, src=src,
                               plugin_dir=plugin_dir, binds=binds,
                               hook_config=f"{plugin_dir}/envsched-openpbs.json", joiner=f"{plugin_dir}/pbs-join")
        text = text.rstrip("\n") + "\n" + _prepare_conf(policy, options, plugin_dir, run_dir, binds)
        first = text.index("\n#### ") + 1
        note = f"# PBS_HOME {pbs_home} [{site.source('pbs_home')}]\n" + "".join(
            f"# warning: {w}\n" for w in site.warnings)
        return text[:first] + note + text[first:]

    def host_warnings(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> List[str]:
        d = site.values["plugin_dir"]
        return list(site.warnings) + [f"{d}/{name} does not exist on this host"
                                      for name in HOOK_FILES + ("pbs-join", "pbs-prepare")
                                      if not os.path.exists(os.path.join(d, name))]

    def install_targets(self, policy: Policy, options: RenderOptions, site: SiteFacts,
                        text: str) -> Tuple[List[InstallTarget], List[ManualStep]]:
        d = site.values["plugin_dir"]
        targets = [InstallTarget(f"{d}/envsched-openpbs.json", section(text, "hook_config"), 0o644, "hook_config"),
                   InstallTarget(f"{d}/pbs-join.conf", section(text, "joiner_conf"), 0o644, "joiner_conf"),
                   InstallTarget(f"{d}/pbs-prepare.conf", section(text, "prepare_conf"), 0o644, "prepare_conf")]
        steps = [ManualStep(name, line) for name in ("resource", "qmgr")
                 for line in section(text, name).splitlines() if line.strip()]
        return targets, steps

    def present(self) -> bool:
        return os.path.exists(self._pbs_conf())

    def installed(self, options: RenderOptions, site: SiteFacts) -> Dict[str, str]:
        try:
            conf = json.loads(read_text(os.path.join(site.values["plugin_dir"], "envsched-openpbs.json")) or "{}")
        except ValueError:
            return {}
        return {"policy": conf["policy"]} if isinstance(conf, dict) and isinstance(conf.get("policy"), str) else {}

    def doctor(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> List[Finding]:
        found: List[Finding] = []
        d = site.values["plugin_dir"]
        install = "envsched site-config install --scheduler openpbs"
        found += setuid_findings(f"{d}/pbs-join", "the joiner", "make -C plugins/torque/openpbs/joiner install")
        found += file_findings(f"{d}/pbs-prepare", "run by the launch and end hooks",
                               "make -C plugins/torque/openpbs/joiner install")
        for name in HOOK_FILES:
            found += file_findings(f"{d}/{name}", "a hook, imported with qmgr",
                                   f"install -m 0644 plugins/torque/openpbs/{name} {d}/")
        conf_path = f"{d}/pbs-join.conf"
        text = read_text(conf_path)
        if text is None:
            found.append(Finding("missing", f"{conf_path} (joiner_conf) does not exist: every job fails", install))
        else:
            found += conf_findings(conf_path, parse_kv(text), policy, install)
        conf_path = f"{d}/pbs-prepare.conf"
        text = read_text(conf_path)
        if text is None:
            found.append(Finding("missing", f"{conf_path} (prepare_conf) does not exist: every job fails", install))
        else:
            found += conf_findings(conf_path, parse_kv(text), policy, install)
        hook = f"{d}/envsched-openpbs.json"
        text = read_text(hook)
        try:
            conf = json.loads(text) if text is not None else None
        except ValueError as e:
            conf = None
            found.append(Finding("hook_config", f"{hook}: not JSON ({e})", install))
        if text is None:
            found.append(Finding("missing", f"{hook} (hook_config) does not exist", install))
        elif isinstance(conf, dict):
            for b in conf.get("binds", []):
                src = str(b).split(":", 1)[0]
                if not os.path.exists(src):
                    found.append(Finding("bind", f"{hook}: bind {src} does not exist on this node: every job here "
                                         "fails at start (exit 71)", f"{install}, or create {src}"))
        return found


def _prepare_conf(policy: Policy, options: RenderOptions, plugin_dir: str, run_dir: str, binds: List[str]) -> str:
    """The `prepare_conf` section: pbs-prepare.conf, in the format of the Grid Engine and Torque
    starters' configuration (plugins/uge/starter/conf.c), which pbs-prepare reads."""
    lines = [f"#### prepare_conf: the file {plugin_dir}/pbs-prepare.conf (root-owned, mode 0644), read by pbs-prepare "
             "(the launch and end hooks run it) on every execution host, and on the server host (the queuejob hook asks it "
             "for warm submissions)",
             f"policy={check_path('--policy', options.policy_path)}",
             f"resolver={check_path('--resolver', options.resolver)}",
             f"run_dir={run_dir}"]
    if policy.site.log_file:
        lines.append(f"log_file={check_path(f'{policy.source}: site.log_file', policy.site.log_file)}")
    lines += [f"bind={b}" for b in binds]
    if not policy.site.decision_cache:
        lines.append("cache=0")
    return "\n".join(lines) + "\n"
