"""What Slurm says about this site: `scontrol show config`, else slurm.conf, else defaults.

Keys are kept lowercased, values as Slurm prints them ("(null)" dropped). scontrol reports what
the controller uses (configless sites included); a node's slurm.conf must say the same.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..base import read_text

DEFAULT_SLURM_CONF = "/etc/slurm/slurm.conf"
MAX_INCLUDES = 32

_SHOW_LINE = re.compile(r"^(\S+?)\s*=\s?(.*)$")
_CONF_WORD = re.compile(r'(\w+)\s*=\s*("[^"]*"|\S+)')


def parse_show_config(text: str) -> Dict[str, str]:
    """`scontrol show config` output: `Key = Value` lines -> {key (lowercased): value}."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        m = _SHOW_LINE.match(line.strip())
        if not m:
            continue
        value = m.group(2).strip()
        if value and value != "(null)":
            out.setdefault(m.group(1).lower(), value)
    return out


def parse_slurm_conf(path: str, read: Callable[[str], Optional[str]] = read_text,
                     _depth: int = 0) -> Optional[Dict[str, str]]:
    """slurm.conf's simple `Key=Value` settings (first one wins, as for Slurm's scalar keys),
    following `Include` lines (relative to the file's directory, globs allowed); None when the file
    cannot be read. Keys lowercased; a comment starts at '#'."""
    text = read(path)
    if text is None:
        return None
    out: Dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split(None, 1)
        if words[0].lower() == "include" and len(words) == 2 and _depth < MAX_INCLUDES:
            pattern = words[1].strip().strip('"')
            if not pattern.startswith("/"):
                pattern = os.path.join(os.path.dirname(path), pattern)
            for inc in sorted(glob.glob(pattern)) or [pattern]:
                sub = parse_slurm_conf(inc, read, _depth + 1)
                for k, v in (sub or {}).items():
                    out.setdefault(k, v)
            continue
        m = _CONF_WORD.match(line)
        if m and m.start() == 0:
            out.setdefault(m.group(1).lower(), m.group(2).strip('"'))
    return out


def munge_socket_dir(conf: Dict[str, str]) -> Tuple[Optional[str], str]:
    """(munged's socket directory, why) from AuthType/AuthInfo; (None, why) when Slurm does not
    authenticate with munge; the directory is None with why "" when the config does not say."""
    auth = conf.get("authtype", "")
    if auth and auth != "auth/munge":
        return None, f"AuthType {auth}: no munge socket"
    for opt in conf.get("authinfo", "").split(","):
        key, _, value = opt.strip().partition("=")
        if key.strip().lower() == "socket" and value.startswith("/"):
            return os.path.dirname(value.strip()) or "/", "AuthInfo"
    return None, ""


def read_config(run: Callable[[Sequence[str]], Tuple[Optional[int], str]],
                environ: Dict[str, str], default_conf: str = DEFAULT_SLURM_CONF,
                read: Callable[[str], Optional[str]] = read_text) -> Tuple[Dict[str, str], str, List[str]]:
    """(settings, where they came from, why nothing could be read); settings {} when neither
    scontrol nor slurm.conf answered."""
    tried: List[str] = []
    rc, out = run(["scontrol", "show", "config"])
    if rc == 0:
        conf = parse_show_config(out)
        if conf:
            return conf, "scontrol show config", []
        tried.append("scontrol show config: no settings in its output")
    else:
        tried.append(f"scontrol show config: {out}")
    path = environ.get("SLURM_CONF") or default_conf
    conf = parse_slurm_conf(path, read)
    if conf is not None:
        conf.setdefault("slurm_conf", path)
        return conf, path, []
    tried.append(f"{path}: cannot be read")
    return {}, "", tried
