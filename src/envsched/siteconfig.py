"""`envsched site-config render`: a scheduler's configuration for this site, from templates.

Each scheduler is one entry in RENDERERS: a function that turns the loaded policy and the
command's options into template variables and renders that scheduler's templates,
`templates/<scheduler>/*.j2`. Slurm's renderer is here; every other scheduler's sits in
siteconfig_<scheduler>.py, imported when used. `envsched site-config render --scheduler` offers
exactly the keys of RENDERERS.

Where the templates live:
  * src/envsched/templates/<scheduler>/ is the canonical copy. It is package data
    (setup.cfg, [options.package_data]), so a pip-installed envsched renders without a checkout.
  * site-config/templates in a checkout is a symlink to ../src/envsched/templates, so the
    site-config tree shows them next to the example policy. It is found by a path relative to
    this file (a checkout: src/envsched/siteconfig.py -> ../../site-config/templates) and
    searched first; in an installed package that path does not exist and only the package copy
    is used.

Every `{{ value }}` a template writes passes `plugstack_safe` (jinja2's `finalize` hook), so no
template can emit a value that a scheduler's config parser would split or cut: Slurm reads
plugstack.conf as white-space separated words, cuts each line at '#', and has no quoting.

jinja2 is imported only when rendering (the optional extra `render`).
"""
from __future__ import annotations

import importlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import UsageError
from .policy.model import Policy

PACKAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"
CHECKOUT_TEMPLATES = Path(__file__).resolve().parents[2] / "site-config" / "templates"

# Slurm. The plugin's install path is the Makefile's: $(PREFIX)/lib/envsched, PREFIX=/usr/local.
DEFAULT_SLURM_PLUGIN = "/usr/local/lib/envsched/envsched_spank.so"
DEFAULT_SLURM_SPOOL_DIR = "/var/spool/slurmd"       # SlurmdSpoolDir's default
DEFAULT_MUNGE_SOCKET_DIR = "/run/munge"
NONE = "none"                                       # --spool-dir/--munge-socket-dir: no bind
PATH_MAX = 4096                                     # config.c: strlen(value) < PATH_MAX
SLURM_MAX_BINDS = 16                                # envsched_spank.h: ES_MAX_BINDS
PLUGSTACK_LINE_MAX = 4094                           # spank.c reads lines with fgets(buf[4096])


class SiteConfigError(UsageError):
    """A value that cannot be written into the scheduler's configuration (exit 64)."""


@dataclass(frozen=True)
class RenderOptions:
    """The command line of `site-config render`, scheduler-neutral; None = the renderer's default.

    `policy_path` is the path the scheduler's hooks will pass to the resolver; `resolver` the
    envsched command they run. `binds` are extra host paths for every view, as the resolver's
    `prepare --bind` takes them (SRC[:DST[:ro|rw]]). The rest is per scheduler (unused ones
    are ignored by the others).
    """
    policy_path: str
    resolver: str
    binds: Tuple[str, ...] = ()
    debug: bool = False
    plugin: Optional[str] = None              # slurm: the SPANK plugin (.so)
    spool_dir: Optional[str] = None           # slurm: SlurmdSpoolDir
    munge_socket_dir: Optional[str] = None    # slurm (and any munge-authenticated scheduler)
    host_tools: Optional[str] = None          # slurm: wrappers of the host's clients (hosttools.py)
    plugin_dir: Optional[str] = None          # uge: where the JSV, shims and starter are installed
    src: Optional[str] = None                 # uge: directory holding the envsched package, if not installed
    unprivileged: bool = False                # uge: user-namespace starter, no set-user-ID program
    tmpdirs: Tuple[str, ...] = ()             # uge: the queues' tmpdir (--tmpdir), bound read-write; () = ask qconf
    queues: Tuple[str, ...] = ()              # uge: whose tmpdir to ask qconf for (--queue); () = every queue
    service: Optional[str] = None             # pam: the PAM service the line is for (--pam SERVICE)


# ------------------------------------------------------------------------------------- checks
def plugstack_safe(value: Any) -> str:
    """A value as one plugstack.conf word, or SiteConfigError: it cannot be quoted there."""
    text = "" if value is None else str(value)
    if text == "":
        raise SiteConfigError("an empty value cannot be written to plugstack.conf")
    for c in text:
        if c.isspace():
            raise SiteConfigError(f"{text!r} contains white space: plugstack.conf splits arguments on "
                                  "white space and cannot quote them")
        if not c.isprintable():
            raise SiteConfigError(f"{text!r} contains a control character")
    if "#" in text:
        raise SiteConfigError(f"{text!r} contains '#', which starts a comment in plugstack.conf")
    return text


def check_path(what: str, value: str) -> str:
    """An absolute path the plugin's config parser (plugins/slurm-spank/config.c) accepts."""
    if not value.startswith("/"):
        raise SiteConfigError(f"{what}: not an absolute path: {value!r} (the scheduler's "
                              "daemons use it from other directories)")
    try:
        plugstack_safe(value)
    except SiteConfigError as e:
        raise SiteConfigError(f"{what}: {e.message}") from None
    if ".." in value.split("/"):
        raise SiteConfigError(f"{what}: '..' is not allowed in a path: {value!r}")
    if len(value.encode()) >= PATH_MAX:
        raise SiteConfigError(f"{what}: longer than {PATH_MAX - 1} bytes")
    return value


def check_bind(value: str) -> str:
    """SRC[:DST[:ro|rw]] as `envsched prepare --bind` takes it, each path checked."""
    parts = value.split(":")
    if not 1 <= len(parts) <= 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise SiteConfigError(f"--bind: expected PATH or SRC:DST[:ro|rw], got {value!r}")
    for p in parts[:2]:
        if p:
            check_path("--bind", p)
            if p.rstrip("/") == "":
                raise SiteConfigError(f"--bind: not a path below /: {value!r}")
    if parts[0] == "":
        raise SiteConfigError(f"--bind: no source path in {value!r}")
    return value


def default_resolver(argv0: Optional[str] = None,
                     which: Callable[[str], Optional[str]] = shutil.which) -> str:
    """The absolute path of the running `envsched` console script, else `envsched` on PATH."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    if argv0 and os.path.basename(argv0) == "envsched" and os.path.isfile(argv0) and os.access(argv0, os.X_OK):
        return os.path.realpath(argv0)
    found = which("envsched")
    if found:
        return os.path.realpath(found)
    raise SiteConfigError("cannot tell where the envsched command is installed: give --resolver PATH")


def host_warnings(scheduler: str, options: RenderOptions) -> List[str]:
    """What looks wrong on *this* host (rendering may happen elsewhere: warnings, not errors)."""
    found = []
    if not (os.path.isfile(options.resolver) and os.access(options.resolver, os.X_OK)):
        found.append(f"resolver {options.resolver} is not an executable file on this host")
    if scheduler == "slurm":
        plugin = options.plugin or DEFAULT_SLURM_PLUGIN
        if not os.path.isfile(plugin):
            found.append(f"plugin {plugin} does not exist on this host "
                         "(make -C plugins/slurm-spank && make -C plugins/slurm-spank install)")
        if options.host_tools and not os.path.isdir(os.path.join(options.host_tools, "bin")):
            found.append(f"host tools {options.host_tools}/bin does not exist on this host")
    if scheduler == "uge":
        from .siteconfig_uge import host_warnings as uge_warnings  # noqa: PLC0415
        found += uge_warnings(options)
    if scheduler == "openpbs":
        from .siteconfig_openpbs import host_warnings as openpbs_warnings  # noqa: PLC0415
        found += openpbs_warnings(options)
    return found


# ------------------------------------------------------------------------------------- jinja2
def _template_dirs() -> List[str]:
    dirs: List[str] = []
    for d in (CHECKOUT_TEMPLATES, PACKAGE_TEMPLATES):
        if d.is_dir() and os.path.realpath(d) not in map(os.path.realpath, dirs):
            dirs.append(str(d))
    return dirs


def render_template(name: str, **variables: Any) -> str:
    """Render templates/<name> with every `{{ value }}` checked by plugstack_safe."""
    try:
        import jinja2
    except ImportError:
        raise UsageError("site-config render needs jinja2: install envsched with its `render` extra "
                         "(pip install 'envsched[render]') or the package python3-jinja2") from None
    dirs = _template_dirs()
    if not dirs:
        raise UsageError(f"no templates found (looked in {PACKAGE_TEMPLATES} and {CHECKOUT_TEMPLATES})")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(dirs), autoescape=False,
                             undefined=jinja2.StrictUndefined, finalize=plugstack_safe,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    try:
        return env.get_template(name).render(**variables)
    except jinja2.TemplateNotFound:
        raise UsageError(f"template {name} not found in {', '.join(dirs)}") from None


# ------------------------------------------------------------------------------------- slurm
def slurm_spool_bind(spool_dir: str) -> str:
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


def render_slurm(policy: Policy, options: RenderOptions) -> str:
    """plugstack.conf: comment header and one `required` line for plugins/slurm-spank.

    Writes every argument of plugins/slurm-spank/config.c but `validate=`: that one (0) is
    only for the plugstack.conf that Slurm clients inside a view read (hosttools.py)."""
    plugin = check_path("--plugin", options.plugin or DEFAULT_SLURM_PLUGIN)
    policy_path = check_path("--policy", options.policy_path)
    resolver = check_path("--resolver", options.resolver)
    run_dir = check_path(f"{policy.source}: site.run_dir", policy.site.run_dir)
    spool_dir = options.spool_dir or DEFAULT_SLURM_SPOOL_DIR
    munge = options.munge_socket_dir or DEFAULT_MUNGE_SOCKET_DIR
    spool_bind = None if spool_dir == NONE else slurm_spool_bind(spool_dir)
    munge_bind = None if munge == NONE else check_path("--munge-socket-dir", munge)
    defaults = [b for b in (spool_bind, munge_bind) if b]
    extra = [b for b in dict.fromkeys(check_bind(b) for b in options.binds) if b not in defaults]
    binds = defaults + extra
    host_tools = check_path("--host-tools", options.host_tools) if options.host_tools else None
    if len(binds) > SLURM_MAX_BINDS:
        raise SiteConfigError(f"{len(binds)} binds: the plugin takes at most {SLURM_MAX_BINDS}")
    text = render_template("slurm/plugstack.conf.j2", plugin=plugin, policy=policy_path,
                           resolver=resolver, run_dir=run_dir, binds=binds,
                           spool_dir=None if spool_bind is None else spool_dir, spool_bind=spool_bind,
                           munge_bind=munge_bind, extra_binds=extra,
                           host_tools=host_tools, debug=options.debug)
    for line in text.splitlines():
        if len(line.encode()) > PLUGSTACK_LINE_MAX:
            raise SiteConfigError(f"the plugstack.conf line is {len(line.encode())} bytes: "
                                  f"Slurm reads at most {PLUGSTACK_LINE_MAX}")
    return text


def _lazy(module: str, function: str) -> Callable[[Policy, RenderOptions], str]:
    """A renderer kept in a module of its own (siteconfig_<scheduler>.py), imported when used."""
    def render_with(policy: Policy, options: RenderOptions) -> str:
        return getattr(importlib.import_module(f"envsched.{module}"), function)(policy, options)
    return render_with


# scheduler -> renderer, each with templates/<scheduler>/*.j2.
RENDERERS: Dict[str, Callable[[Policy, RenderOptions], str]] = {
    "slurm": render_slurm,
    "uge": _lazy("siteconfig_uge", "render_uge"),
    "openpbs": _lazy("siteconfig_openpbs", "render_openpbs"),
    "torque": _lazy("siteconfig_torque", "render_torque"),
    "pam": _lazy("siteconfig_pam", "render_pam"),
}


def section(text: str, name: str) -> str:
    """The lines of one `#### NAME: ...` section of a rendered document (UGE's has several)."""
    out: List[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("#### "):
            inside = line[5:].split(":", 1)[0] == name
            continue
        if inside:
            out.append(line)
    if not inside and not out:
        names = [ln[5:].split(":", 1)[0] for ln in text.splitlines() if ln.startswith("#### ")]
        raise SiteConfigError(f"no section {name!r} (have: {', '.join(names) or 'none'})")
    return "\n".join(out).strip("\n") + "\n"


def schedulers() -> Sequence[str]:
    return sorted(RENDERERS)


def render(scheduler: str, policy: Policy, options: RenderOptions) -> str:
    try:
        renderer = RENDERERS[scheduler]
    except KeyError:
        raise SiteConfigError(f"no renderer for scheduler {scheduler!r} (have: {', '.join(schedulers())})") \
            from None
    return renderer(policy, options)
