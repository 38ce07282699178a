"""A stand-in GPU for the tests (#12): device nodes with /dev/null's numbers named like NVIDIA's,
and a driver built here with gcc: lib/libnvidia-ml.so.999.1 (soname libnvidia-ml.so.1, reached
through a symlink as on a real node), bin/nvidia-smi (a script), the site's list, and a payload
linked against the library that also dlopen()s it (payload/gpu-payload, prints LINKED= and DLOPEN=
with MARKER)."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator, Sequence

MARKER = 4242
NODES = ("/dev/nvidia0", "/dev/nvidiactl")
PAYLOAD_C = r"""
#include <dlfcn.h>
#include <stdio.h>
int envsched_marker(void);
int main(void) {
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    int (*f)(void) = h ? (int (*)(void))dlsym(h, "envsched_marker") : 0;
    printf("LINKED=%d\nDLOPEN=%d\n", envsched_marker(), f ? f() : -1);
    return 0;
}
"""


def build_driver(top: Path) -> Path:
    """The stand-in driver under `top` (root's directories, 0755); returns `top`."""
    lib, bin_, payload = top / "lib", top / "bin", top / "payload"
    for d in (top, lib, bin_, payload):
        d.mkdir(mode=0o755)
    (top / "marker.c").write_text(f"int envsched_marker(void) {{ return {MARKER}; }}\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libnvidia-ml.so.1", "-o",
                    str(lib / "libnvidia-ml.so.999.1"), str(top / "marker.c")], check=True)
    (lib / "libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.999.1")
    (top / "payload.c").write_text(PAYLOAD_C)
    subprocess.run(["gcc", "-o", str(payload / "gpu-payload"), str(top / "payload.c"), "-L", str(lib),
                    "-l:libnvidia-ml.so.1", "-ldl"], check=True)
    smi = bin_ / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI stand-in'\n")
    smi.chmod(0o755)
    listing = top / "nvliblist.conf"
    listing.write_text("# stand-in list\nnvidia-smi\nlibnvidia-ml.so   # management\nlibcuda.so\n")
    listing.chmod(0o644)
    return top


@contextlib.contextmanager
def gpu_nodes(extra: Sequence[str] = ()) -> Iterator[None]:
    """NODES and `extra` as character devices with /dev/null's numbers, mode 0666, removed after."""
    made = []
    try:
        for node in tuple(NODES) + tuple(extra):
            os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))
            made.append(node)
            os.chmod(node, 0o666)
        yield
    finally:
        for node in made:
            os.unlink(node)


def gpu_environments(tree: Path) -> str:
    """Policy text: `gpu` needs the node's GPU (refused without one), `gpu-opt` runs without."""
    return f"""
[environments.gpu]
path = "{tree}"
gpus = "nvidia"
[environments.gpu-opt]
path = "{tree}"
gpus = "nvidia"
gpus_required = false
"""
