"""`envsched site-config render --scheduler uge`: Grid Engine's configuration for this site.

One document with sections (`#### NAME: where it goes`): the `chos` complex, the global
jsv_url, the cell's sge_request (client-side JSV), the JSV launcher, the queue attributes
(prolog, epilog, starter_method), the attributes of interactive queues, and the set-user-ID
starter's configuration, or in unprivileged mode the user-namespace starter. The test cluster
(tests/uge/conftest.py) is configured from exactly this output.

Install layout, under one directory (`--plugin-dir`, default /usr/local/libexec/envsched):
    envsched_jsv.py, envsched_uge.py   copied from plugins/uge/
    uge-jsv                            the `jsv` section (launches envsched_jsv.py with the site's settings)
    uge-starter, uge-epilog            `make -C plugins/uge/starter install`
    uge-starter.conf                   the `starter_conf` section (read by both)
    uge-user-starter                   unprivileged mode: the `user_starter` section

The queues' tmpdir. execd makes each job's TMPDIR, `<tmpdir>/<job>.<task>.<queue>`, below the
queue's `tmpdir` (queue_conf(5), default /tmp), and OpenMPI, PMIx and most tools write there, so
it must be writable in the view. The render reads `tmpdir` from `qconf -sq` of every queue
(`qconf -sql`) or of each `--queue`, when a cluster answers; `--tmpdir PATH` wins; with neither,
Grid Engine's default /tmp is assumed (a warning). Each tmpdir that the policy's `site.shared`
(or a `--bind`) already shows read-write from the host at the same path, and that no
environment binds over, needs nothing (the default /tmp: `site.shared` has /tmp, rw); every other
one is bound `PATH:PATH:rw` after the other binds (a `--bind` of the tmpdir itself, which would
be read-only, is replaced). What was found and done is in the document's header comment. The
tmpdir comes from the queue configuration (managers only), never from a job's $TMPDIR.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .policy.model import Policy
from .siteconfig import RenderOptions, SiteConfigError, check_bind, check_path, render_template

DEFAULT_PLUGIN_DIR = "/usr/local/libexec/envsched"
DEFAULT_EXECD_SPOOL = "/var/spool/gridengine/execd"     # Debian's; job scripts live below it
NONE = "none"
MAX_BINDS = 16                                          # plugins/uge/starter/starter.h: ES_MAX_BINDS
DEFAULT_TMPDIR = "/tmp"                                 # queue_conf(5): tmpdir's default
QCONF_TIMEOUT = 30                                      # seconds for one qconf call


# ------------------------------------------------------------------------------ queue tmpdirs
@dataclass(frozen=True)
class Tmpdirs:
    """The queues' tmpdirs: path -> the queues that name it (empty for --tmpdir and the default)."""
    paths: Dict[str, Tuple[str, ...]]
    source: str                         # "--tmpdir", "qconf -sq", "default" (no cluster answered)
    warning: Optional[str] = None


def run_qconf(args: Sequence[str]) -> Tuple[Optional[int], str]:
    """(exit status, stdout) of `qconf ARGS` with our environment's SGE_ROOT/SGE_CELL/ports; status
    None (and the reason) when there is no qconf or it does not answer within QCONF_TIMEOUT."""
    qconf = shutil.which("qconf")
    if qconf is None:
        return None, "no qconf on PATH"
    try:
        p = subprocess.run([qconf, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, errors="replace", timeout=QCONF_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, f"qconf {' '.join(args)} did not answer within {QCONF_TIMEOUT} s"
    except OSError as e:
        return None, f"{qconf}: {e.strerror}"
    if p.returncode != 0:
        return p.returncode, " ".join((p.stderr.strip() or p.stdout.strip()).split())[:300]
    return 0, p.stdout


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


_looked_up: Dict[Tuple[Tuple[str, ...], Tuple[str, ...]], Tmpdirs] = {}


def queue_tmpdirs(options: RenderOptions) -> Tmpdirs:
    """--tmpdir PATH..., else the tmpdir of each --queue or of every queue from qconf, else (no
    cluster answers `qconf -sql`) Grid Engine's default with a warning. Asked once per process."""
    key = (tuple(options.tmpdirs), tuple(options.queues))
    if key not in _looked_up:
        _looked_up[key] = _lookup_tmpdirs(*key)
    return _looked_up[key]


def _lookup_tmpdirs(given: Tuple[str, ...], queues: Tuple[str, ...]) -> Tmpdirs:
    if given:
        if NONE in given:
            if len(given) > 1:
                raise SiteConfigError(f"--tmpdir {NONE} cannot be combined with other --tmpdir values")
            return Tmpdirs({}, "--tmpdir")
        return Tmpdirs({_tmpdir_path("--tmpdir", t): () for t in given}, "--tmpdir")
    if not queues:
        rc, out = run_qconf(["-sql"])
        if rc != 0:
            return Tmpdirs({DEFAULT_TMPDIR: ()}, "default",
                           f"no Grid Engine cluster answered `qconf -sql` ({out}): assumed every queue's "
                           f"tmpdir is {DEFAULT_TMPDIR}, Grid Engine's default; give --tmpdir PATH "
                           "(or render where qconf works)")
        queues = tuple(out.split())
    paths: Dict[str, Tuple[str, ...]] = {}
    for q in queues:
        rc, out = run_qconf(["-sq", q])
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


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _parse_bind(value: str) -> Tuple[str, str, bool]:
    """SRC[:DST[:ro|rw]] (already checked) -> (source, target, writable), as jobargs.bind_arg."""
    parts = value.split(":")
    src = parts[0].rstrip("/") or "/"
    dst = (parts[1] if len(parts) > 1 and parts[1] else parts[0]).rstrip("/") or "/"
    return src, dst, len(parts) == 3 and parts[2] == "rw"


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
        dropped = [b for b in out if _parse_bind(b)[:2] == (path, path) and not _parse_bind(b)[2]]
        out = [b for b in out if b not in dropped]
        if dropped:
            where += f" (--bind {', '.join(dropped)} dropped: it would be read-only)"
        layers = [(m.source.rstrip("/") or "/", m.target.rstrip("/") or "/", m.writable, f"site.shared {m.target}")
                  for m in policy.site.shared]
        layers += [(*_parse_bind(b), f"--bind {b}") for b in out]
        last = None
        for src, dst, writable, name in layers:
            if _under(path, dst):
                last = (src, dst, writable, name)
        env_over = sorted(e.name for e in policy.environments.values()
                          for m in e.binds if _under(path, m.target.rstrip("/") or "/"))
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


def render_uge(policy: Policy, options: RenderOptions) -> str:
    plugin_dir = check_path("--plugin-dir", options.plugin_dir or DEFAULT_PLUGIN_DIR).rstrip("/")
    policy_path = check_path("--policy", options.policy_path)
    resolver = check_path("--resolver", options.resolver)
    run_dir = check_path(f"{policy.source}: site.run_dir", policy.site.run_dir)
    src = check_path("--src", options.src) if options.src else None
    spool = options.spool_dir or DEFAULT_EXECD_SPOOL
    # the execd spool holds each job's script (job_scripts/<id>), which runs inside the view
    defaults = [] if spool == NONE else [check_path("--spool-dir", spool)]
    binds = defaults + [b for b in dict.fromkeys(check_bind(b) for b in options.binds) if b not in defaults]
    tmpdirs = queue_tmpdirs(options)
    binds, tmpdir_notes = tmpdir_binds(policy, tmpdirs, binds)
    host_tools = check_path("--host-tools", options.host_tools) if options.host_tools else None
    if len(binds) > MAX_BINDS:
        raise SiteConfigError(f"{len(binds)} binds: the starter takes at most {MAX_BINDS}")
    text = render_template("uge/site.conf.j2", policy=policy_path, resolver=resolver, run_dir=run_dir,
                           plugin_dir=plugin_dir, src=src, binds=binds,
                           jsv=f"{plugin_dir}/uge-jsv", starter=f"{plugin_dir}/uge-starter",
                           epilog=f"{plugin_dir}/uge-epilog",
                           log_file=check_path(f"{policy.source}: site.log_file", policy.site.log_file)
                           if policy.site.log_file else None,
                           user_starter=f"{plugin_dir}/uge-user-starter",
                           unprivileged=options.unprivileged, host_tools=host_tools)
    first = text.index("\n#### ") + 1                  # above the first section
    return text[:first] + tmpdir_header(tmpdir_notes, tmpdirs.warning) + text[first:]


def tmpdir_header(notes: List[str], warning: Optional[str]) -> str:
    """Comment lines above the first section: what the render found about the queues' tmpdirs
    (written here, not by the template, whose values must be single words)."""
    lines = ["Each job's TMPDIR is <queue tmpdir>/<job>.<task>.<queue>, read-write in the view:"]
    lines += [f"  {n}" for n in notes] or ["  (--tmpdir none: no queue tmpdir is bound)"]
    if warning:
        lines.append(f"warning: {warning}")
    return "".join("# " + "".join(c if c.isprintable() else "?" for c in ln) + "\n" for ln in lines)


def host_warnings(options: RenderOptions) -> list:
    plugin_dir = options.plugin_dir or DEFAULT_PLUGIN_DIR
    found = []
    warning = queue_tmpdirs(options).warning
    if warning:
        found.append(warning)
    for name in ("envsched_jsv.py", "envsched_uge.py") + (() if options.unprivileged else ("uge-starter",
                                                                                          "uge-epilog")):
        if not os.path.exists(os.path.join(plugin_dir, name)):
            found.append(f"{plugin_dir}/{name} does not exist on this host")
    return found
