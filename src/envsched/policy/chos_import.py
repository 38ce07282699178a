"""Turn a legacy CHOS `/etc/chos` into an envsched site policy (TOML text with comments).

The grammar mirrors check_chos() in NERSC CHOS (github.com/scanon/chos: pam_chos/pam_chos_helper.c,
utils/chos.c; format notes in config.h.in, INSTALL section 2.5 and conf/chos):
  * a line whose first character is '#', or an empty line, is skipped;
  * nothing counts until the line `%SHELLS`; the next line starting with '%' (conf/chos has
    `%ENV`) ends it, and CHOS never reads a later section, not even a second `%SHELLS`;
  * an entry is `<alias>:<path>`, split at the first ':'; CHOS silently skipped lines without ':'
    and let the first of two equal aliases win (here both are errors, as is a relative path);
  * the alias `default` (DEFAULT / DEFAULT_ENV_NAME) is what a user with no ~/.chos gets; when it
    is not defined CHOS stays on the host root. `local:/` / `root:/` name the host itself.
We strip surrounding blanks from lines (CHOS kept them and then failed to match). The `%ENV` list
(variables a CHOS login shell keeps; read from /etc/chos.conf inside each tree) has no envsched
equivalent (envsched only sets/prepends/appends/unsets), so it is reported in a comment.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

from ..errors import PolicyError
from ..names import LOCAL, NAME_RULE, is_valid_name, show
from .load import check_trusted_path, parse_policy_text, read_policy_text

CHOS_CONFIG = "/etc/chos"
SHELLS = "%SHELLS"
DEFAULT_ALIAS = "default"   # CHOS's DEFAULT_ENV_NAME
_IGNORED = {
    SHELLS: "CHOS reads only the first %SHELLS section",
    "%ENV": "variables a CHOS login shell keeps; utils/chos.c reads them from /etc/chos.conf",
    "%SHELLS entry": "in a later %SHELLS section, which CHOS never reads",
    "%ENV entry": "kept by a CHOS login shell; envsched has no keep-list, only env.set/unset",
}


def _esc(text: str) -> str:
    """Printable ASCII for a TOML comment (no control characters can end or break it)."""
    return text.encode("unicode_escape").decode("ascii")


def _string(text: str) -> str:
    """A TOML basic string; callers have already refused control characters."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key(name: str) -> str:
    return name if "." not in name else f'"{name}"'   # '.' would make a dotted TOML key


def _clean_path(value: str, where: str) -> str:
    if not value.startswith("/"):
        raise PolicyError(f"{where}: path is not absolute: {show(value, 60)}")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise PolicyError(f"{where}: path contains blanks or control characters: {show(value, 60)}")
    if {".", ".."} & set(value.split("/")):
        raise PolicyError(f"{where}: path must not contain '.' or '..' components: {show(value, 60)}")
    return "/" if not value.strip("/") else os.path.normpath(value).replace("//", "/")


def parse_chos_text(text: str, source: str = CHOS_CONFIG
                    ) -> Tuple[List[Tuple[str, str, int]], List[Tuple[int, str, str]]]:
    """The first %SHELLS section as [(alias, absolute path, line)]; what CHOS ignores as
    [(line, text, why)]."""
    shells: List[Tuple[str, str, int]] = []
    ignored: List[Tuple[int, str, str]] = []
    section = ""
    first_line: Dict[str, int] = {}
    state = "before"                                  # before -> in -> after the %SHELLS section
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        if state == "before" and line == SHELLS:
            state = "in"
            continue
        if state != "before" and line.startswith("%"):
            state, section = "after", line
            ignored.append((number, line, _IGNORED.get(line, "a section CHOS does not read")))
            continue
        if state != "in":
            why = ("before %SHELLS, ignored by CHOS" if state == "before" else
                   _IGNORED.get(section + " entry", f"in {section}, ignored by CHOS"))
            ignored.append((number, line, why))
            continue
        alias, colon, path = line.partition(":")
        alias = alias.strip()
        if not colon:
            raise PolicyError(f"{where}: missing ':' (expected alias:/path): {show(line, 60)}")
        if not is_valid_name(alias):
            hint = "; CHOS allowed paths as aliases, envsched names cannot hold '/'" if "/" in alias else ""
            raise PolicyError(f"{where}: alias is not a valid environment name ({NAME_RULE}{hint}): "
                              f"{show(alias, 60)}")
        if alias in first_line:
            raise PolicyError(f"{where}: duplicate alias (first at line {first_line[alias]}): {show(alias)}")
        first_line[alias] = number
        path = _clean_path(path.strip(), where)
        if alias == LOCAL and path != "/":
            raise PolicyError(f"{where}: alias 'local' is reserved for the host OS (path /): "
                              f"{show(path, 60)}")
        shells.append((alias, path, number))
    if state == "before":
        raise PolicyError(f"{source}: no {SHELLS} section: no line is exactly '{SHELLS}'")
    return shells, ignored


def convert_chos_text(text: str, source: str = CHOS_CONFIG) -> str:
    """CHOS config text -> envsched policy TOML (checked with parse_policy_text before returning)."""
    shells, ignored = parse_chos_text(text, source)
    notes = [f"# envsched site policy imported from the CHOS config {_esc(source)}.",
             "# CHOS had no access rules, shared paths or binds: envsched's defaults apply; review them."]
    for alias, path, number in shells:
        if path == "/" and alias != LOCAL:
            notes.append(f"# line {number}: '{alias}' is the host root, which envsched calls '{LOCAL}'"
                         f" ('{alias}' is no longer a name).")
    for number, line, why in ignored:
        notes.append(f"# not imported: line {number}: {_esc(line)} ({why})")
    envs = [(a, p, n) for a, p, n in shells if p != "/"]
    default: Optional[Tuple[str, str, int]] = next((s for s in shells if s[0] == DEFAULT_ALIAS), None)
    if default is None:
        site_default, why = LOCAL, "no 'default' alias in CHOS: a user with no choice stayed on the host"
    elif default[1] == "/":
        site_default, why = LOCAL, f"CHOS 'default' (line {default[2]}) was the host root"
    else:
        same = [a for a, p, _ in envs if p == default[1] and a != DEFAULT_ALIAS]
        site_default = same[0] if same else DEFAULT_ALIAS
        why = f"CHOS 'default' (line {default[2]}) is {_esc(default[1])}"
        if same:
            envs = [e for e in envs if e[0] != DEFAULT_ALIAS]
            why += f", the path of '{same[0]}' (envsched has no aliases)"
    out = notes + ["", "[site]", f"# {why}", f'default = "{site_default}"']
    for alias, path, number in envs:
        out += ["", f"[environments.{_key(alias)}]", f"# {_esc(source)} line {number}",
                f"path = {_string(path)}", 'kind = "tree"']
    result = "\n".join(out) + "\n"
    parse_policy_text(result, f"{source} (imported)")
    return result


def import_chos(path: str = CHOS_CONFIG) -> str:
    """Read a CHOS config (as root it must be root-owned, as CHOS required) and convert it."""
    if os.geteuid() == 0:
        check_trusted_path(path, "CHOS config")
    return convert_chos_text(read_policy_text(path), path)
