"""Torque's adapter (`--scheduler torque`).

render: one document with sections (`#### NAME: where it goes`): the mom_priv/config lines, the
starter's configuration file, the prologue and epilogue launchers, and the torque.cfg SUBMITFILTER
line with its launcher. The Torque contract tests (tests/torque/test_torque_mom.py) install the
shims from exactly this output.

PBS_HOME (the job scripts and spool files live below it, so it is bound into every view, and the
starter reads mom_priv/config there): --spool-dir, else the running pbs_mom's (its `-d DIR`, else
its working directory, mom_priv), else the first of the usual homes that has mom_priv, else the
packages' /var/spool/torque (a warning).

Install layout, under one directory (`--plugin-dir`, default /usr/local/libexec/envsched):
    envsched_torque.py                  copied from plugins/torque/torque/
    torque-starter                      `make -C plugins/torque/torque install` (set-user-ID root)
    torque-pelog                        the same: the prologue and epilogue in C (the Python shim's
                                        command line follows it, for what it leaves to Python)
    torque-starter.conf                 the `starter_conf` section
    torque-submitfilter                 the `submitfilter` section
and in $PBS_HOME/mom_priv: prologue, prologue.parallel, epilogue, epilogue.parallel (the
sections of those names; root-owned, mode 0500: pbs_mom refuses root scripts writable by anyone
but root). `site-config install` writes all of these and envsched's lines in mom_priv/config and
torque.cfg (blocks).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

from ...policy.model import Policy
from ..base import (CHECKOUT_PLUGIN_DIR, NONE, default_plugin_dir, Finding, InstallTarget, ManualStep, RenderOptions, SchedulerAdapter, SiteConfigError,
                    SiteFacts, read_text)
from ..doctor import conf_findings, file_findings, parse_kv, setuid_findings
from ..rendering import check_bind, check_path, render_template, section

DEFAULT_PLUGIN_DIR = CHECKOUT_PLUGIN_DIR                # the packaged envsched: default_plugin_dir()
DEFAULT_PBS_HOME = "/var/spool/torque"          # TORQUE_HOME of the packages; jobs run from mom_priv/jobs
HOMES = ("/var/spool/torque", "/var/lib/torque", "/usr/spool/PBS", "/var/spool/pbs")
MAX_BINDS = 16                                  # plugins/uge/starter/starter.h: ES_MAX_BINDS (conf.c)
SCRIPTS = ("prologue", "prologue.parallel", "epilogue", "epilogue.parallel")


def mom_home_of_process(pid: int) -> Optional[str]:
    """PBS_HOME of a running pbs_mom: `-d DIR` on its command line, else its working directory's
    parent when that is mom_priv (pbs_mom works there)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
    except OSError:
        return None
    for i, a in enumerate(argv):
        if a == "-d" and i + 1 < len(argv) and argv[i + 1].startswith("/"):
            return argv[i + 1].rstrip("/") or "/"
        if a.startswith("-d/"):
            return a[2:].rstrip("/") or "/"
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    return os.path.dirname(cwd) if os.path.basename(cwd) == "mom_priv" else None


def running_moms() -> List[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == "pbs_mom":
                        pids.append(int(entry))
            except OSError:
                continue
    return sorted(pids)


def mom_config_lines(text: str) -> Dict[str, str]:
    """mom_priv/config: `$name value` lines -> {"$name": value} (the last one wins, as pbs_mom reads it)."""
    out = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(None, 1)
        if words and words[0].startswith("$"):
            out[words[0]] = words[1].strip() if len(words) > 1 else ""
    return out


def _is_starter_line(line: str) -> bool:
    words = line.split("#", 1)[0].split()
    return bool(words) and words[0] in ("$job_starter", "$job_starter_run_privileged")


def _is_submitfilter_line(line: str) -> bool:
    words = line.split("#", 1)[0].split()
    return bool(words) and words[0].upper() == "SUBMITFILTER"


class TorqueAdapter(SchedulerAdapter):
    name = "torque"
    title = "Torque"
    sections = ("mom_config", "starter_conf", "prologue", "prologue_parallel", "epilogue", "epilogue_parallel",
                "submitfilter", "torque_cfg")
    homes = HOMES                                   # replaced by unit tests

    def moms(self) -> List[int]:
        return running_moms()

    def read_site(self, options: RenderOptions) -> SiteFacts:
        facts = SiteFacts()
        facts.set("plugin_dir", (options.plugin_dir or default_plugin_dir()).rstrip("/") or "/",
                  "--plugin-dir" if options.plugin_dir else "default")
        if options.spool_dir:
            facts.set("pbs_home", options.spool_dir, "--spool-dir")
        else:
            for pid in self.moms():
                home = mom_home_of_process(pid)
                if home:
                    facts.set("pbs_home", home, f"pbs_mom pid {pid}")
                    break
            else:
                home = next((h for h in self.homes if os.path.isdir(os.path.join(h, "mom_priv"))), None)
                if home:
                    facts.set("pbs_home", home, f"{home}/mom_priv exists")
                else:
                    facts.set("pbs_home", DEFAULT_PBS_HOME, "default")
                    facts.warnings.append(f"no pbs_mom runs here and no mom_priv was found in {', '.join(self.homes)}: "
                                          f"assumed PBS_HOME {DEFAULT_PBS_HOME}; give --spool-dir PBS_HOME")
        home = facts.values["pbs_home"]
        if home != NONE:
            text = read_text(os.path.join(home, "mom_priv", "config"))
            facts.extra["mom_config"] = mom_config_lines(text) if text is not None else None
        return facts

    def render(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> str:
        plugin_dir = check_path("--plugin-dir", site.values["plugin_dir"])
        pbs_home = site.values["pbs_home"]
        # the job's script and spool files (mom_priv/jobs, spool) live under PBS_HOME: bind it
        defaults = [] if pbs_home == NONE else [check_path("PBS_HOME (--spool-dir)", pbs_home)]
        binds = defaults + [b for b in dict.fromkeys(check_bind(b) for b in options.binds) if b not in defaults]
        if len(binds) > MAX_BINDS:
            raise SiteConfigError(f"{len(binds)} binds: the starter takes at most {MAX_BINDS}")
        text = render_template(
            "torque/site.conf.j2", policy=check_path("--policy", options.policy_path),
            resolver=check_path("--resolver", options.resolver),
            run_dir=check_path(f"{policy.source}: site.run_dir", policy.site.run_dir),
            log_file=check_path(f"{policy.source}: site.log_file", policy.site.log_file) if policy.site.log_file
            else None,
            plugin_dir=plugin_dir, src=check_path("--src", options.src) if options.src else None, binds=binds,
            starter=f"{plugin_dir}/torque-starter", shim=f"{plugin_dir}/envsched_torque.py",
            pelog=f"{plugin_dir}/torque-pelog", cache=policy.site.decision_cache,
            submitfilter=f"{plugin_dir}/torque-submitfilter",
            mom_config=None if pbs_home == NONE else f"{pbs_home.rstrip('/')}/mom_priv/config")
        first = text.index("\n#### ") + 1
        note = f"# PBS_HOME {pbs_home} [{site.source('pbs_home')}]\n" + "".join(
            f"# warning: {w}\n" for w in site.warnings)
        return text[:first] + note + text[first:]

    def host_warnings(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> List[str]:
        found = super().host_warnings(policy, options, site)
        d = site.values["plugin_dir"]
        found += [f"{d}/{n} does not exist on this host" for n in ("envsched_torque.py", "torque-starter", "torque-pelog")
                  if not os.path.exists(os.path.join(d, n))]
        return found

    def install_targets(self, policy: Policy, options: RenderOptions, site: SiteFacts,
                        text: str) -> Tuple[List[InstallTarget], List[ManualStep]]:
        d = site.values["plugin_dir"]
        home = site.values["pbs_home"]
        if home == NONE:
            raise SiteConfigError("install needs PBS_HOME: give --spool-dir PBS_HOME")
        mom_priv = os.path.join(home, "mom_priv")
        mom_lines = "\n".join(ln for ln in section(text, "mom_config").splitlines() if not ln.startswith("#")) + "\n"
        targets = [InstallTarget(f"{d}/torque-starter.conf", section(text, "starter_conf"), 0o644, "starter_conf"),
                   InstallTarget(f"{d}/torque-submitfilter", section(text, "submitfilter"), 0o755, "submitfilter")]
        targets += [InstallTarget(os.path.join(mom_priv, s), section(text, s.replace(".", "_")), 0o500,
                                  s.replace(".", "_")) for s in SCRIPTS]
        targets += [InstallTarget(os.path.join(mom_priv, "config"), mom_lines, 0o644, "mom_config", kind="block",
                                  legacy=_is_starter_line),
                    InstallTarget(os.path.join(home, "torque.cfg"), section(text, "torque_cfg"), 0o644, "torque_cfg",
                                  kind="block", legacy=_is_submitfilter_line)]
        return targets, [ManualStep("restart", "restart pbs_mom on every node (it reads mom_priv/config at start)"),
                         ManualStep("submit hosts", "torque-submitfilter and torque.cfg on every submit host too")]

    def present(self) -> bool:
        return bool(self.moms()) or any(os.path.isdir(os.path.join(h, "mom_priv")) for h in self.homes)

    def installed(self, options: RenderOptions, site: SiteFacts) -> Dict[str, str]:
        conf = parse_kv(read_text(os.path.join(site.values["plugin_dir"], "torque-starter.conf")) or "")
        return {k: v[-1] for k, v in conf.items() if k in ("policy", "resolver", "run_dir") and v}

    def doctor(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> List[Finding]:
        found: List[Finding] = []
        d = site.values["plugin_dir"]
        home = site.values["pbs_home"]
        install = "envsched site-config install --scheduler torque"
        found += setuid_findings(f"{d}/torque-starter", "mom_priv/config $job_starter",
                                 "make -C plugins/torque/torque install")
        found += file_findings(f"{d}/torque-pelog", "mom_priv's prologue and epilogue",
                               "make -C plugins/torque/torque install")
        found += file_findings(f"{d}/envsched_torque.py", "copied from plugins/torque/torque/",
                               f"install -m 0755 plugins/torque/torque/envsched_torque.py {d}/")
        conf_path = f"{d}/torque-starter.conf"
        text = read_text(conf_path)
        if text is None:
            found.append(Finding("missing", f"{conf_path} (starter_conf) does not exist: every job fails", install))
        else:
            found += conf_findings(conf_path, parse_kv(text), policy, install, [] if home == NONE else [home])
        if home == NONE:
            return found
        for s in SCRIPTS:
            found += file_findings(os.path.join(home, "mom_priv", s), "run by pbs_mom as root", install, 0o500)
        mom = site.extra.get("mom_config")
        if mom is None:
            found.append(Finding("mom_config", f"{home}/mom_priv/config cannot be read", install))
        else:
            if mom.get("$job_starter") != f"{d}/torque-starter":
                found.append(Finding("mom_config", f"{home}/mom_priv/config: $job_starter is "
                                     f"{mom.get('$job_starter') or 'not set'}, not {d}/torque-starter: jobs run "
                                     "without envsched", f"{install}, then restart pbs_mom"))
            if mom.get("$job_starter_run_privileged", "").lower() in ("t", "true", "y", "yes", "1", "on"):
                found.append(Finding("mom_config", f"{home}/mom_priv/config turns $job_starter_run_privileged on: "
                                     "the starter refuses every job", f"{install}, then restart pbs_mom"))
        return found
