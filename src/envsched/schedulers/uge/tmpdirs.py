"""The queues' tmpdir, read with qconf, and the read-write binds it needs.

execd makes each job's TMPDIR, `<tmpdir>/<job>.<task>.<queue>`, below the queue's `tmpdir`
(queue_conf(5), default /tmp), and OpenMPI, PMIx and most tools write there, so it must be
writable in the view. The render reads `tmpdir` from `qconf -sq` of every queue (`qconf -sql`)
or of each `--queue`, when a cluster answers; `--tmpdir PATH` wins; with neither, Grid Engine's
default /tmp is assumed (a warning). Each tmpdir that the policy's `site.shared` (or a `--bind`)
already shows read-write from the host at the same path, and that no environment binds over,
needs nothing (the default /tmp: `site.shared` has /tmp, rw); every other one is bound
`PATH:PATH:rw` after the other binds (a `--bind` of the tmpdir itself, which would be read-only,
is replaced). What was found and done is in the document's header comment. The tmpdir comes from
the queue configuration (managers only), never from a job's $TMPDIR.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ...policy.model import Policy
from ..base import NONE, SiteConfigError
from ..rendering import check_path, comment_lines, parse_bind, under

DEFAULT_TMPDIR = "/tmp"                                 # queue_conf(5): tmpdir's default


@dataclass(frozen=True)
class Tmpdirs:
    """The queues' tmpdirs: path -> the queues that name it (empty for --tmpdir and the default)."""
    paths: Dict[str, Tuple[str, ...]]
    source: str                         # "--tmpdir", "qconf -sq", "default" (no cluster answered)
    warning: Optional[str] = None


def parse_queue_tmpdirs(text: str) -> List[str]:
    """The `tmpdir` values in `qconf -sq QUEUE` output, in order, without repeats: the default and
    each host's or host group's (`/tmp,[node7=/scratch/tmp],[@big=/local/tmp]`); qconf continues
    long lines with a backslash."""
    for line in re.sub(r"\\\n\s*", "", text).splitlines():
        words = line.split(None, 1)
        if words[:1] != ["tmpdir"]:
            continue
        value = words[1].strip() if len(words) > 1 else ""
        head = value.split("[", 1)[0].strip().rstrip(",").strip()
        found = ([head] if head else []) + [v.strip() for v in re.findall(r"\[[^=\]]*=([^\]]*)\]", value)]
        return list(dict.fromkeys(v for v in found if v))
    return []


def lookup_tmpdirs(run_qconf: Callable[[Sequence[str]], Tuple[Optional[int], str]], given: Tuple[str, ...],
                   queues: Tuple[str, ...]) -> Tmpdirs:
    """--tmpdir PATH..., else the tmpdir of each --queue or of every queue from qconf, else (no
    cluster answers `qconf -sql`) Grid Engine's default with a warning."""
    if given:
        if NONE in given:
            if len(given) > 1:
                raise SiteConfigError(f"--tmpdir {NONE} cannot be combined with other --tmpdir values")
            return Tmpdirs({}, "--tmpdir")
        return Tmpdirs({_tmpdir_path("--tmpdir", t): () for t in given}, "--tmpdir")
    if not queues:
        rc, out = run_qconf(["qconf", "-sql"])
        if rc != 0:
            return Tmpdirs({DEFAULT_TMPDIR: ()}, "default",
                           f"no Grid Engine cluster answered `qconf -sql` ({out}): assumed every queue's "
                           f"tmpdir is {DEFAULT_TMPDIR}, Grid Engine's default; give --tmpdir PATH "
                           "(or render where qconf works)")
        queues = tuple(out.split())
    paths: Dict[str, Tuple[str, ...]] = {}
    for q in queues:
        rc, out = run_qconf(["qconf", "-sq", q])
        if rc != 0:
            raise SiteConfigError(f"qconf -sq {q}: {out}; give --tmpdir PATH instead")
        values = parse_queue_tmpdirs(out)
        if not values:
            raise SiteConfigError(f"qconf -sq {q} shows no tmpdir; give --tmpdir PATH instead")
        for v in values:
            path = _tmpdir_path(f"tmpdir of queue {q}", v)
            paths[path] = paths.get(path, ()) + (q,)
    return Tmpdirs(paths, "qconf -sq")


def _tmpdir_path(what: str, value: str) -> str:
    path = check_path(what, value)
    path = re.sub("/+", "/", path).rstrip("/")
    if path == "" or ".." in path.split("/"):
        raise SiteConfigError(f"{what}: {value!r} is not a directory below / that can be bound")
    return path


def tmpdir_binds(policy: Policy, tmpdirs: Tmpdirs, binds: List[str]) -> Tuple[List[str], List[str]]:
    """(the binds with a read-write bind for each tmpdir that needs one, one note per tmpdir).

    A view mounts site.shared, then the environment's binds, then these binds, in that order, so
    the last of site.shared and the binds whose target is the tmpdir or above it is what the job
    sees there. The tmpdir needs no bind when that mount is read-write and shows the host's own
    tmpdir at the same path, and no environment binds over it; otherwise PATH:PATH:rw goes last.
    A --bind of the tmpdir itself (read-only, the old advice) is dropped for the read-write one."""
    out = list(binds)
    notes = []
    for path, queues in tmpdirs.paths.items():
        where = f"tmpdir {path}" + (f" ({', '.join(queues)})" if queues else "") + f" [{tmpdirs.source}]"
        dropped = [b for b in out if parse_bind(b)[:2] == (path, path) and not parse_bind(b)[2]]
        out = [b for b in out if b not in dropped]
        if dropped:
            where += f" (--bind {', '.join(dropped)} dropped: it would be read-only)"
        layers = [(m.source.rstrip("/") or "/", m.target.rstrip("/") or "/", m.writable, f"site.shared {m.target}")
                  for m in policy.site.shared]
        layers += [(*parse_bind(b), f"--bind {b}") for b in out]
        last = None
        for src, dst, writable, name in layers:
            if under(path, dst):
                last = (src, dst, writable, name)
        env_over = sorted(e.name for e in policy.environments.values()
                          for m in e.binds if under(path, m.target.rstrip("/") or "/"))
        if (last is not None and last[2] and not env_over
                and (last[0].rstrip("/") + path[len(last[1].rstrip("/")):] or "/") == path):
            notes.append(f"{where}: already read-write in every view through {last[3]}; no bind")
            continue
        why = (f"environments {', '.join(env_over)} bind over it" if env_over else
               f"{last[3]} is read-only there" if last is not None and not last[2] else
               f"{last[3]} shows another host path there" if last is not None else "not in the view otherwise")
        out.append(f"{path}:{path}:rw")
        notes.append(f"{where}: bound read-write ({why})")
    return out, notes


def tmpdir_header(notes: List[str], warning: Optional[str]) -> str:
    """Comment lines above the first section: what the render found about the queues' tmpdirs
    (written here, not by the template, whose values must be single words)."""
    lines = ["Each job's TMPDIR is <queue tmpdir>/<job>.<task>.<queue>, read-write in the view:"]
    lines += [f"  {n}" for n in notes] or ["  (--tmpdir none: no queue tmpdir is bound)"]
    if warning:
        lines.append(f"warning: {warning}")
    return comment_lines(lines)
