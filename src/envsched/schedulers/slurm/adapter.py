"""Slurm's adapter: the plugstack.conf line of plugins/slurm-spank, read from what Slurm says.

render: plugstack.conf's comment header and one `required` line (every argument of
plugins/slurm-spank/config.c but `validate=`, which only the plugstack.conf that Slurm clients
inside a view read has: slurm/hosttools.py). The binds default to what Slurm says: SlurmdSpoolDir
(batch scripts run from <SlurmdSpoolDir>/job<ID>/slurm_script inside the view; a per-node
.../%n binds its parent) and munged's socket directory (AuthInfo socket=, else munge's default;
none when AuthType is not auth/munge); --spool-dir and --munge-socket-dir win.

install: the line goes where Slurm reads it: PlugStackConfig (default plugstack.conf next to
slurm.conf). An existing envsched line is replaced where it is (its own include file, or a marked
block in plugstack.conf); else a new `envsched.conf` in a directory plugstack.conf includes
(`include /etc/slurm/plugstack.conf.d/*.conf`, Debian's default), else a block at the end of
plugstack.conf.

doctor: the installed line (plugin, resolver, run_dir, binds) against what Slurm and the policy
say, and whether slurmd has loaded the plugin (its /proc/PID/maps): only a slurmd that saw the
plugin when it started runs the job prolog and epilog.
"""
from __future__ import annotations

import fnmatch
import glob
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ...policy.model import Policy
from .. import trust
from ..base import (CHECKOUT_LIB_DIR, NONE, default_lib_dir, Finding, InstallTarget, ManualStep, RenderOptions, SchedulerAdapter, SiteConfigError,
                    SiteFacts, read_text)
from ..rendering import PATH_MAX, check_bind, check_path, comment_lines, parse_bind, render_template, under
from . import config as slurm_config

# The plugin's install path: the Makefile's $(PREFIX)/lib/envsched (PREFIX=/usr/local), or the packages'.
DEFAULT_PLUGIN = CHECKOUT_LIB_DIR + "/envsched_spank.so"    # the packaged envsched: default_plugin()


def default_plugin() -> str:
    return default_lib_dir() + "/envsched_spank.so"
DEFAULT_SPOOL_DIR = "/var/spool/slurmd"             # SlurmdSpoolDir's default
DEFAULT_MUNGE_SOCKET_DIR = "/run/munge"             # munged's default socket /run/munge/munge.socket.2
MAX_BINDS = 16                                      # envsched_spank.h: ES_MAX_BINDS
PLUGSTACK_LINE_MAX = 4094                           # spank.c reads lines with fgets(buf[4096])
PLUGIN_NAME = "envsched_spank.so"
INCLUDED_FILE = "envsched.conf"


def spool_bind(spool_dir: str) -> str:
    """The directory to bind for SlurmdSpoolDir. A per-node one (%n, %h: /var/spool/slurmd/%n,
    /var/spool/slurmd.%n) is expanded by slurmd, not here: its parent directory is bound."""
    check_path("--spool-dir", spool_dir)
    if "%" not in spool_dir:
        return spool_dir
    parent = spool_dir[:spool_dir.index("%")].rsplit("/", 1)[0]
    if parent.rstrip("/") == "":
        raise SiteConfigError(f"--spool-dir: {spool_dir!r} is per node directly below /: "
                              "give the directory to bind with --spool-dir")
    return parent


def is_envsched_line(line: str) -> bool:
    """A plugstack.conf line that loads envsched's plugin (hand-written or rendered)."""
    words = line.split("#", 1)[0].split()
    return len(words) >= 2 and words[0] in ("required", "optional") and os.path.basename(words[1]) == PLUGIN_NAME


@dataclass
class PlugstackLine:
    file: str
    lineno: int
    words: List[str]

    @property
    def plugin(self) -> str:
        return self.words[1]

    def args(self) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {}
        for w in self.words[2:]:
            key, eq, value = w.partition("=")
            out.setdefault(key, []).append(value if eq else "")
        return out


@dataclass
class Plugstack:
    """plugstack.conf and the files it includes: envsched's lines, and the include patterns."""
    path: str
    exists: bool
    lines: List[PlugstackLine] = field(default_factory=list)
    includes: List[str] = field(default_factory=list)             # patterns, absolute
    files: Dict[str, List[str]] = field(default_factory=dict)     # file -> its lines


def read_plugstack(path: str, _depth: int = 0, _into: Optional[Plugstack] = None) -> Plugstack:
    ps = _into or Plugstack(path, os.path.isfile(path))
    text = read_text(path)
    if text is None:
        return ps
    ps.files[path] = text.splitlines()
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "include" and len(words) >= 2 and _depth < 8:
            pattern = words[1] if words[1].startswith("/") else os.path.join(os.path.dirname(path), words[1])
            ps.includes.append(pattern)
            for inc in sorted(glob.glob(pattern)):
                if os.path.isfile(inc):
                    read_plugstack(inc, _depth + 1, ps)
        elif is_envsched_line(line):
            ps.lines.append(PlugstackLine(path, n, words))
    return ps


def slurmd_processes(slurm_conf: Optional[str]) -> List[Tuple[int, str]]:
    """(pid, config file) of the slurmd daemons on this host using `slurm_conf` (all when None):
    the config is `-f FILE` on slurmd's command line, else SLURM_CONF in its environment, else
    /etc/slurm/slurm.conf."""
    found = []
    want = os.path.realpath(slurm_conf) if slurm_conf else None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "slurmd":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
        except OSError:
            continue
        conf = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-f"), None)
        if conf is None:
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = dict(v.decode(errors="replace").partition("=")[::2] for v in f.read().split(b"\0") if v)
                conf = env.get("SLURM_CONF")
            except OSError:
                pass
        conf = conf or slurm_config.DEFAULT_SLURM_CONF
        if want is None or os.path.realpath(conf) == want:
            found.append((int(entry), conf))
    return sorted(found)


def process_started(pid: int) -> Optional[float]:
    """A process's start time (seconds since the epoch), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        ticks = int(data[data.rindex(b")") + 2:].split()[19])
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, ValueError, StopIteration, IndexError):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def mapped(pid: int, path: str) -> Optional[Tuple[bool, bool]]:
    """(is `path` mapped into the process, is the mapped copy the file there now); None if the
    process's maps cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    real = os.path.realpath(path)
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        name = parts[5]
        deleted = name.endswith(" (deleted)")
        if deleted:
            name = name[:-len(" (deleted)")]
        if name != real:
            continue
        inode = int(parts[4])
        return True, (not deleted and st is not None and st.st_ino == inode)
    return False, False


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


class SlurmAdapter(SchedulerAdapter):
    name = "slurm"
    title = "Slurm"
    default_conf = slurm_config.DEFAULT_SLURM_CONF     # replaced by unit tests
    environ: Optional[Dict[str, str]] = None            # None: os.environ (unit tests give their own)

    # ------------------------------------------------------------------ what Slurm says
    def read_site(self, options: RenderOptions) -> SiteFacts:
        facts = SiteFacts()
        env = dict(os.environ if self.environ is None else self.environ)
        conf, source, tried = slurm_config.read_config(self.run, env, self.default_conf)
        facts.extra["conf"] = conf
        if conf.get("slurm_conf"):
            facts.set("slurm_conf", conf["slurm_conf"], source)
        else:
            facts.set("slurm_conf", env.get("SLURM_CONF") or self.default_conf, "default")
        # SlurmdSpoolDir
        if options.spool_dir:
            facts.set("spool_dir", options.spool_dir, "--spool-dir")
        elif conf.get("slurmdspooldir"):
            facts.set("spool_dir", conf["slurmdspooldir"], source)
        else:
            facts.set("spool_dir", DEFAULT_SPOOL_DIR, "Slurm's default" if conf else "default")
        # munged's socket directory
        munge, why = slurm_config.munge_socket_dir(conf)
        if options.munge_socket_dir:
            facts.set("munge_socket_dir", options.munge_socket_dir, "--munge-socket-dir")
        elif why and munge is None:
            facts.set("munge_socket_dir", NONE, f"{why}, {source}")
        elif munge:
            facts.set("munge_socket_dir", munge, f"{why} {conf['authinfo']}, {source}")
        else:
            facts.set("munge_socket_dir", DEFAULT_MUNGE_SOCKET_DIR, "munge's default" if conf else "default")
        # PlugStackConfig
        if conf.get("plugstackconfig"):
            facts.set("plugstack", conf["plugstackconfig"], source)
        else:
            facts.set("plugstack", os.path.join(os.path.dirname(facts.values["slurm_conf"]), "plugstack.conf"),
                      "Slurm's default, next to slurm.conf")
        facts.set("auth_type", conf.get("authtype", "auth/munge"), source if conf.get("authtype") else "default")
        if not conf and not (options.spool_dir and options.munge_socket_dir):
            facts.warnings.append(
                f"no Slurm configuration could be read ({'; '.join(tried)}): assumed SlurmdSpoolDir "
                f"{DEFAULT_SPOOL_DIR} and the munge socket in {DEFAULT_MUNGE_SOCKET_DIR}, the defaults; "
                "render where scontrol works (or SLURM_CONF names slurm.conf), or give --spool-dir and "
                "--munge-socket-dir")
        return facts

    # ------------------------------------------------------------------ render
    def binds(self, options: RenderOptions, site: SiteFacts) -> Tuple[Optional[str], Optional[str], List[str],
                                                                        List[str]]:
        """(spool bind, munge bind, extra binds, all binds) as the line has them."""
        spool_dir = site.values["spool_dir"]
        munge = site.values["munge_socket_dir"]
        sbind = None if spool_dir == NONE else spool_bind(spool_dir)
        mbind = None if munge == NONE else check_path("--munge-socket-dir", munge)
        defaults = [b for b in (sbind, mbind) if b]
        extra = [b for b in dict.fromkeys(check_bind(b) for b in options.binds) if b not in defaults]
        return sbind, mbind, extra, defaults + extra

    def render(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> str:
        plugin = check_path("--plugin", options.plugin or default_plugin())
        policy_path = check_path("--policy", options.policy_path)
        resolver = check_path("--resolver", options.resolver)
        run_dir = check_path(f"{policy.source}: site.run_dir", policy.site.run_dir)
        log_file = check_path(f"{policy.source}: site.log_file", policy.site.log_file) if policy.site.log_file else None
        sbind, mbind, extra, binds = self.binds(options, site)
        host_tools = check_path("--host-tools", options.host_tools) if options.host_tools else None
        if len(binds) > MAX_BINDS:
            raise SiteConfigError(f"{len(binds)} binds: the plugin takes at most {MAX_BINDS}")
        spool_dir = site.values["spool_dir"]
        text = render_template("slurm/plugstack.conf.j2", plugin=plugin, policy=policy_path,
                               resolver=resolver, run_dir=run_dir, log_file=log_file, binds=binds,
                               spool_dir=None if sbind is None else spool_dir, spool_bind=sbind,
                               munge_bind=mbind, extra_binds=extra,
                               host_tools=host_tools, debug=options.debug,
                               cache=1 if policy.site.decision_cache else 0)
        for line in text.splitlines():
            if len(line.encode()) > PLUGSTACK_LINE_MAX:
                raise SiteConfigError(f"the plugstack.conf line is {len(line.encode())} bytes: "
                                      f"Slurm reads at most {PLUGSTACK_LINE_MAX}")
        head, rest = text.split("\n", 2)[:2], text.split("\n", 2)[2]
        notes = ["What Slurm says (a flag wins):",
                 f"  SlurmdSpoolDir {spool_dir} [{site.source('spool_dir')}]",
                 f"  munge socket directory {site.values['munge_socket_dir']} [{site.source('munge_socket_dir')}]"]
        notes += [f"warning: {w}" for w in site.warnings]
        return "\n".join(head) + "\n" + comment_lines(notes) + rest

    def host_warnings(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> List[str]:
        found = super().host_warnings(policy, options, site)
        plugin = options.plugin or default_plugin()
        if not os.path.isfile(plugin):
            found.append(f"plugin {plugin} does not exist on this host "
                         "(make -C plugins/slurm-spank && make -C plugins/slurm-spank install)")
        if options.host_tools and not os.path.isdir(os.path.join(options.host_tools, "bin")):
            found.append(f"host tools {options.host_tools}/bin does not exist on this host")
        return found

    # ------------------------------------------------------------------ install
    def install_targets(self, policy: Policy, options: RenderOptions, site: SiteFacts,
                        text: str) -> Tuple[List[InstallTarget], List[ManualStep]]:
        path = check_path("PlugStackConfig", site.values["plugstack"])
        ps = read_plugstack(path)
        files = list(dict.fromkeys(line.file for line in ps.lines))
        targets: List[InstallTarget] = []
        own = [f for f in files if f != path and all(
            is_envsched_line(ln) or not ln.split("#", 1)[0].strip() for ln in ps.files.get(f, []))]
        if len(files) == 1 and own == files:
            targets.append(InstallTarget(files[0], text, 0o644, "the plugstack.conf line, an included file"))
        elif files:
            first, *others = files
            targets.append(InstallTarget(first, text, 0o644, "the plugstack.conf line", kind="block",
                                         legacy=is_envsched_line))
            targets += [InstallTarget(f, "", 0o644, "an older envsched line, removed", kind="block",
                                      legacy=is_envsched_line) for f in others]
        else:
            included = next((os.path.join(os.path.dirname(p), INCLUDED_FILE) for p in ps.includes
                             if os.path.isdir(os.path.dirname(p))
                             and fnmatch.fnmatch(INCLUDED_FILE, os.path.basename(p))), None)
            if included:
                targets.append(InstallTarget(included, text, 0o644, "the plugstack.conf line, included by " + path))
            else:
                targets.append(InstallTarget(path, text, 0o644, "the plugstack.conf line", kind="block",
                                             legacy=is_envsched_line))
        steps = [ManualStep("restart", "restart slurmd on every node the first time (job prolog and epilog run "
                                       "only when slurmd saw the plugin at its start; `envsched doctor` tells)"),
                 ManualStep("everywhere", "the same file on every node and submit host (srun, sbatch, salloc "
                                          "load the plugin there)")]
        return targets, steps

    # ------------------------------------------------------------------ this node
    def present(self) -> bool:
        env = os.environ if self.environ is None else self.environ
        return os.path.exists(env.get("SLURM_CONF") or self.default_conf) or bool(slurmd_processes(None))

    def installed(self, options: RenderOptions, site: SiteFacts) -> Dict[str, str]:
        ps = read_plugstack(site.values["plugstack"])
        if len(ps.lines) != 1:
            return {}
        args = ps.lines[0].args()
        return {k: v[0] for k, v in args.items() if k in ("policy", "resolver", "run_dir") and v}

    def doctor(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> List[Finding]:
        found: List[Finding] = []
        install = "envsched site-config install --scheduler slurm"
        if not site.extra.get("conf"):
            found.append(Finding("config", site.warnings[0] if site.warnings else "no Slurm configuration",
                                 "run doctor where `scontrol show config` works, or set SLURM_CONF"))
        path = site.values["plugstack"]
        ps = read_plugstack(path)
        if not ps.lines:
            found.append(Finding("plugstack", f"{path} (PlugStackConfig) and the files it includes load no "
                                 f"{PLUGIN_NAME}: jobs run without envsched", install))
            return found
        if len(ps.lines) > 1:
            where = ", ".join(f"{ln.file}:{ln.lineno}" for ln in ps.lines)
            found.append(Finding("plugstack", f"{PLUGIN_NAME} is loaded more than once ({where})",
                                 f"keep one line ({install} replaces them)"))
        line = ps.lines[0]
        args = line.args()
        where = f"{line.file}:{line.lineno}"
        why = trust.trusted_file(line.plugin)
        if why:
            found.append(Finding("plugin", f"{line.plugin} ({where}) cannot be loaded safely: {why}",
                                 "make -C plugins/slurm-spank install (root-owned, mode 0755), and name its "
                                 "path with --plugin"))
        if line.words[0] != "required":
            found.append(Finding("plugstack", f"{where}: `{line.words[0]}`: jobs run without envsched when the "
                                 "plugin fails to load", install))
        resolver = (args.get("resolver") or [""])[0]
        why = trust.trusted_program(resolver) if resolver else "no resolver= argument"
        if why:
            found.append(Finding("resolver", f"resolver {resolver or '?'} ({where}) is not trusted: {why} "
                                 "(the plugin refuses to run it: every job fails, exit 78)",
                                 "install envsched root-owned, not writable by others (docs/admin.md section 1)"))
        run_dir = (args.get("run_dir") or [""])[0]
        if run_dir != policy.site.run_dir:
            found.append(Finding("run_dir", f"{where}: run_dir={run_dir or '(none)'} but the policy's site.run_dir is "
                                 f"{policy.site.run_dir}", install))
        if (args.get("policy") or [""])[0] not in ("", policy.source) and os.path.realpath(
                args["policy"][0]) != os.path.realpath(policy.source):
            found.append(Finding("policy", f"{where}: policy={args['policy'][0]}, doctor checked {policy.source}",
                                 f"envsched doctor --policy {args['policy'][0]}"))
        binds = [parse_bind(b) for b in args.get("bind", []) if b]
        shared = [(m.source.rstrip("/") or "/", m.target.rstrip("/") or "/") for m in policy.site.shared]

        def visible(path: str) -> bool:
            return any(under(path, dst) and src == dst for src, dst, _ in binds) or \
                any(under(path, dst) and src == dst for src, dst in shared)
        spool = site.values["spool_dir"]
        if spool != NONE:
            need = spool_bind(spool)
            if not visible(need):
                found.append(Finding("spool", f"SlurmdSpoolDir {spool} [{site.source('spool_dir')}] is not bound "
                                     f"into views ({where} binds {', '.join(args.get('bind', [])) or 'nothing'}): "
                                     "batch scripts cannot start in a view", install))
        munge = site.values["munge_socket_dir"]
        if munge != NONE and not visible(munge):
            found.append(Finding("munge", f"munged's socket directory {munge} [{site.source('munge_socket_dir')}] "
                                 "is not bound into views: Slurm clients in jobs cannot authenticate", install))
        for src, _dst, _rw in binds:
            if not os.path.exists(src):
                found.append(Finding("bind", f"bind={src} ({where}) does not exist on this node: every job here "
                                     "fails at start (exit 71)",
                                     f"{install} (binds what Slurm says), or create {src}"))
        tools = (args.get("host_tools") or [""])[0]
        if tools and not os.path.isdir(os.path.join(tools, "bin")):
            found.append(Finding("host_tools", f"host_tools={tools}: no {tools}/bin on this node",
                                 f"envsched site-config host-tools --scheduler slurm {tools}"))
        found += self._slurmd(line, site)
        return found

    def _slurmd(self, line: PlugstackLine, site: SiteFacts) -> List[Finding]:
        """Has every slurmd of this cluster on this node loaded the plugin, and the current copy?"""
        found = []
        plugin = line.plugin
        try:
            plugin_mtime: Optional[float] = os.stat(plugin).st_mtime
        except OSError:
            plugin_mtime = None
        stack_mtime = max((os.stat(f).st_mtime for f in {site.values["plugstack"], line.file} if os.path.exists(f)),
                          default=None)
        for pid, _conf in slurmd_processes(site.values.get("slurm_conf")):
            started = process_started(pid)
            state = mapped(pid, plugin)
            if started is None or state is None:
                continue
            loaded, current = state
            since = f"slurmd pid {pid}, started {_clock(started)}"
            if not loaded:
                changed = (f"; plugstack.conf changed {_clock(stack_mtime)}, after it started"
                           if stack_mtime is not None and stack_mtime > started else "")
                found.append(Finding("slurmd", f"{since}, has not loaded {plugin}{changed}: the job prolog and "
                                     "epilog do not run, so every job step is refused and views are not released",
                                     "restart slurmd on this node (systemctl restart slurmd)"))
            elif not current or (plugin_mtime is not None and plugin_mtime > started):
                found.append(Finding("slurmd", f"{since}, runs an older copy of {plugin} (reinstalled "
                                     f"{_clock(plugin_mtime) if plugin_mtime else 'since'})",
                                     "restart slurmd on this node (systemctl restart slurmd)"))
        return found

    # ------------------------------------------------------------------ host tools
    def host_tools(self, dest: str, policy: Policy, args: Any) -> Tuple[List[str], str, str]:
        from .hosttools import write_slurm_host_tools
        written = write_slurm_host_tools(dest, args.slurm_conf, policy.site.local_root)
        return (written, f"add host_tools={dest} to the plugin's plugstack.conf line (render --host-tools {dest})",
                "changing slurm.conf, plugstack.conf or upgrading Slurm")


__all__ = ["SlurmAdapter", "spool_bind", "DEFAULT_PLUGIN", "DEFAULT_SPOOL_DIR", "DEFAULT_MUNGE_SOCKET_DIR",
           "PATH_MAX"]
