"""Slurm's clients from inside a view: wrappers (../hosttools.py) and the view's slurm.conf and
plugstack.conf, which include the host's and point PluginDir and the plugins under /local.

    envsched site-config host-tools --scheduler slurm DIR

writes DIR/bin/<client> wrappers, DIR/slurm.conf and DIR/plugstack.conf.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
from typing import List, Optional, Sequence

from ...errors import EnvschedError
from ..hosttools import WRAPPER_MODE, check_local, loader_and_libdirs, wrapper, write_file

SLURM_CLIENTS = ("srun", "sbatch", "salloc", "squeue", "scontrol", "scancel", "sinfo", "sacct",
                 "sattach", "sstat", "sprio", "sshare")


def _slurm_conf_value(conf: str, key: str) -> Optional[str]:
    try:
        with open(conf) as f:
            for line in f:
                m = re.match(r"\s*%s\s*=\s*(\S+)" % key, line, re.IGNORECASE)
                if m:
                    return m.group(1)
    except OSError:
        pass
    return None


def view_plugstack(host_plugstack: str, local: str, _depth: int = 0) -> str:
    """The host's plugstack.conf with plugin paths under /local and submit-time checks off
    (inside a view the resolver cannot run; slurmstepd still checks every job and step). Included
    files (`include DIR/*.conf`, Debian's default) are read on the host and inlined, rewritten the
    same way: a plugin line in them would otherwise name a host path the view does not have."""
    out = [] if _depth else ["# envsched: the host's plugstack.conf as seen from inside a view (generated; do not edit)"]
    with open(host_plugstack) as f:
        for line in f:
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] == "include" and len(words) >= 2:
                pattern = words[1] if words[1].startswith("/") else os.path.join(os.path.dirname(host_plugstack),
                                                                                   words[1])
                for inc in sorted(glob.glob(pattern)):
                    if _depth < 8 and os.path.isfile(inc):
                        out.append(f"# from {inc}")
                        text = view_plugstack(inc, local, _depth + 1)
                        out += text.splitlines()
                continue
            if len(words) >= 2 and words[1].startswith("/"):
                words[1] = local + words[1]
                if "envsched_spank" in words[1]:
                    words.append("validate=0")
            out.append(" ".join(words))
    return "\n".join(out) + "\n" if out else ""


def write_slurm_host_tools(dest: str, slurm_conf: str, local: str = "/local",
                           clients: Sequence[str] = SLURM_CLIENTS) -> List[str]:
    """Write the wrappers and the view's Slurm configuration into `dest`; returns the clients."""
    check_local(local)
    slurm_conf = os.path.realpath(slurm_conf)
    if not os.path.isfile(slurm_conf):
        raise EnvschedError(f"{slurm_conf}: no such Slurm configuration")
    srun = shutil.which("srun")
    if srun is None:
        raise EnvschedError("srun is not installed on this host")
    _interp, libdirs = loader_and_libdirs(srun)
    slurmfull = next((d for d in libdirs if os.path.exists(os.path.join(d, "libslurmfull.so"))), None)
    plugin_dir = _slurm_conf_value(slurm_conf, "PluginDir") or slurmfull
    if plugin_dir is None:
        raise EnvschedError("cannot tell Slurm's PluginDir (not in slurm.conf, no libslurmfull.so)")
    os.makedirs(os.path.join(dest, "bin"), mode=0o755, exist_ok=True)
    conf_lines = ["# envsched: the host's slurm.conf as seen from inside a view (generated; do not edit)",
                  f"Include {local}{slurm_conf}", f"PluginDir={local}{plugin_dir}"]
    plugstack = _slurm_conf_value(slurm_conf, "PlugStackConfig") or os.path.join(
        os.path.dirname(slurm_conf), "plugstack.conf")
    if os.path.exists(plugstack):
        write_file(os.path.join(dest, "plugstack.conf"), view_plugstack(plugstack, local), 0o644)
        conf_lines.append(f"PlugStackConfig={dest}/plugstack.conf")
    write_file(os.path.join(dest, "slurm.conf"), "\n".join(conf_lines) + "\n", 0o644)
    written = []
    for name in clients:
        binary = shutil.which(name)
        if binary is None:
            continue
        binary = os.path.realpath(binary)
        interp, dirs = loader_and_libdirs(binary)
        dirs += [d for d in (plugin_dir,) if d not in dirs]
        write_file(os.path.join(dest, "bin", name),
                   wrapper(name, binary, interp, dirs, local, {"SLURM_CONF": f"{dest}/slurm.conf"}), WRAPPER_MODE)
        written.append(name)
    return written
