"""The scheduler-neutral part of `site-config render`: value checks, templates, sections.

Where the templates live:
  * src/envsched/templates/<scheduler>/ is the canonical copy of the shipped schedulers'. It is
    package data (setup.cfg, [options.package_data]), so a pip-installed envsched renders without
    a checkout. An adapter may instead keep its templates in its own folder,
    src/envsched/schedulers/<scheduler>/templates/ (also package data), found under the same
    `<scheduler>/NAME.j2` names.
  * site-config/templates in a checkout is a symlink to ../src/envsched/templates, so the
    site-config tree shows them next to the example policy. It is found by a path relative to
    this file and searched first; in an installed package that path does not exist and only the
    package copy is used.

Every `{{ value }}` a template writes passes `plugstack_safe` (jinja2's `finalize` hook), so no
template can emit a value that a scheduler's config parser would split or cut: Slurm reads
plugstack.conf as white-space separated words, cuts each line at '#', and has no quoting.

jinja2 is imported only when rendering (the optional extra `render`).
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

from ..errors import UsageError
from .base import SiteConfigError

PACKAGE_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
CHECKOUT_TEMPLATES = Path(__file__).resolve().parents[3] / "site-config" / "templates"
ADAPTERS_DIR = Path(__file__).resolve().parent
PATH_MAX = 4096                                     # config.c: strlen(value) < PATH_MAX


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


def parse_bind(value: str):
    """SRC[:DST[:ro|rw]] (already checked) -> (source, target, writable), as jobargs.bind_arg."""
    parts = value.split(":")
    src = parts[0].rstrip("/") or "/"
    dst = (parts[1] if len(parts) > 1 and parts[1] else parts[0]).rstrip("/") or "/"
    return src, dst, len(parts) == 3 and parts[2] == "rw"


def under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


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


def comment_lines(lines: List[str]) -> str:
    """Lines as `# ...` comments, control characters shown as '?' (values read from a cluster)."""
    return "".join("# " + "".join(c if c.isprintable() else "?" for c in ln) + "\n" for ln in lines)


# ------------------------------------------------------------------------------------- jinja2
def _template_dirs() -> List[str]:
    dirs: List[str] = []
    for d in (CHECKOUT_TEMPLATES, PACKAGE_TEMPLATES):
        if d.is_dir() and os.path.realpath(d) not in map(os.path.realpath, dirs):
            dirs.append(str(d))
    return dirs


def _adapter_template_dirs() -> dict:
    """scheduler -> its own templates/ folder, for adapters that keep them there."""
    return {d.name: str(d / "templates") for d in ADAPTERS_DIR.iterdir()
            if (d / "templates").is_dir() and (d / "__init__.py").is_file()}


def render_template(name: str, **variables: Any) -> str:
    """Render templates/<name> with every `{{ value }}` checked by plugstack_safe."""
    try:
        import jinja2
    except ImportError:
        raise UsageError("site-config render needs jinja2: install envsched with its `render` extra "
                         "(pip install 'envsched[render]') or the package python3-jinja2") from None
    dirs = _template_dirs()
    own = _adapter_template_dirs()
    if not dirs and not own:
        raise UsageError(f"no templates found (looked in {PACKAGE_TEMPLATES} and {CHECKOUT_TEMPLATES})")
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(dirs),
                                  jinja2.PrefixLoader({k: jinja2.FileSystemLoader(v) for k, v in own.items()})])
    env = jinja2.Environment(loader=loader, autoescape=False,
                             undefined=jinja2.StrictUndefined, finalize=plugstack_safe,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    try:
        return env.get_template(name).render(**variables)
    except jinja2.TemplateNotFound:
        raise UsageError(f"template {name} not found in {', '.join(dirs + list(own.values()))}") from None


def section(text: str, name: str) -> str:
    """The lines of one `#### NAME: ...` section of a rendered document (UGE's has several)."""
    out: List[str] = []
    inside = found = False
    for line in text.splitlines():
        if line.startswith("#### "):
            inside = line[5:].split(":", 1)[0] == name
            found = found or inside
            continue
        if inside:
            out.append(line)
    if not found:
        names = section_names(text)
        raise SiteConfigError(f"no section {name!r} (have: {', '.join(names) or 'none'})")
    body = "\n".join(out).strip("\n")
    return body + "\n" if body else ""                  # "": a section with nothing to add


def section_names(text: str) -> List[str]:
    return [ln[5:].split(":", 1)[0] for ln in text.splitlines() if ln.startswith("#### ")]
