"""Grid Engine's clients from inside a view: wrappers (../hosttools.py) with SGE_ROOT pointing at a
shadow of the host's, without the cell's sge_request (it names the client JSV, which a view cannot run).

    envsched site-config host-tools --scheduler uge --sge-root SGE_ROOT DIR
"""
from __future__ import annotations

import os
import shutil
from typing import List, Sequence

from ...errors import EnvschedError
from ..hosttools import WRAPPER_MODE, check_local, loader_and_libdirs, wrapper, write_file

# Grid Engine: the clients a job uses from inside its view. qsub is left out on purpose: the
# cell's sge_request runs the client JSV, a Python program of the host, which a view has not.
UGE_CLIENTS = ("qrsh", "qstat", "qdel", "qacct", "qhold", "qrls", "qalter", "qhost")


def _shadow_sge_root(shadow: str, sge_root: str, local: str) -> None:
    """DIR/sge: the host's SGE_ROOT seen through `local`, by symlinks, but with every cell's
    common/sge_request left out: it names the client JSV, which a view cannot run, and the
    clients (even `qrsh -inherit`) refuse to start when a -jsv file is missing."""
    if os.path.isdir(shadow):
        shutil.rmtree(shadow)
    os.makedirs(shadow, mode=0o755)
    for entry in sorted(os.listdir(sge_root)):
        host_path = os.path.realpath(os.path.join(sge_root, entry))
        common = os.path.join(host_path, "common")
        if os.path.isdir(common) and os.path.exists(os.path.join(common, "bootstrap")):   # a cell
            os.makedirs(os.path.join(shadow, entry, "common"), mode=0o755)
            for name in sorted(os.listdir(common)):
                if name != "sge_request":
                    os.symlink(local + os.path.join(common, name), os.path.join(shadow, entry, "common", name))
        else:
            os.symlink(local + host_path, os.path.join(shadow, entry))


def write_uge_host_tools(dest: str, sge_root: str, local: str = "/local",
                         clients: Sequence[str] = UGE_CLIENTS) -> List[str]:
    """Wrappers running the host's Grid Engine clients (by the name they are called: qrsh is
    qsh's binary) with the host loader under `local`, and SGE_ROOT pointing at a shadow of the
    host's (DEST/sge, see _shadow_sge_root)."""
    check_local(local)
    sge_root = os.path.realpath(sge_root)
    arch_dirs = [d for d in ("lx-amd64", "lx-arm64", "lx-x86") if os.path.isdir(os.path.join(sge_root, "bin", d))]
    if not arch_dirs:
        raise EnvschedError(f"{sge_root}/bin has no lx-* architecture directory: not an SGE_ROOT")
    bindir = os.path.join(sge_root, "bin", arch_dirs[0])
    os.makedirs(os.path.join(dest, "bin"), mode=0o755, exist_ok=True)
    _shadow_sge_root(os.path.join(dest, "sge"), sge_root, local)
    written = []
    for name in clients:
        path = os.path.join(bindir, name)
        if not os.path.exists(path):
            continue
        binary = os.path.realpath(path)
        interp, dirs = loader_and_libdirs(binary)
        write_file(os.path.join(dest, "bin", name),
                   wrapper(name, binary, interp, dirs, local, {"SGE_ROOT": os.path.join(dest, "sge")}), WRAPPER_MODE)
        written.append(name)
    return written
