"""GPUs and devices (#12): the cost `gpus` adds, against the same environment without.

Per job per node: choosing the version (devices.py: the site's list, the loader's cache, the
trust checks) plus building the view (fork, build_view in the child, exit): median of N.
Per task: what a task joining the view does more (the two env operations it replays).
Stand-ins as in tests/ns/test_devices.py: /dev/nvidia0, /dev/nvidiactl (/dev/null's numbers),
a driver directory with 30 libraries (each a soname symlink) and nvidia-smi. Root only.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from envsched import devices, enter, view  # noqa: E402
from envsched.chosen import choose_version  # noqa: E402
from envsched.identity import UserInfo  # noqa: E402
from envsched.plan import build_plan  # noqa: E402
from envsched.policy.load import parse_policy_text  # noqa: E402
from envsched.resolve import Decision  # noqa: E402

N = int(os.environ.get("N", "60"))
ROOT = UserInfo(name="root", uid=0, gid=0, gids=(0,), groups=("root",), home="/root", shell="/bin/sh")


def main() -> None:
    if os.geteuid() != 0 or glob.glob("/dev/nvidia*"):
        sys.exit("bench/devices.sh: run as root on a node without an NVIDIA driver (it makes stand-ins)")
    tree = sys.argv[1]
    top = tempfile.mkdtemp(prefix="envsched-bench-gpu-", dir="/run")
    os.chmod(top, 0o755)
    made = []
    try:
        for node in ("/dev/nvidia0", "/dev/nvidiactl"):
            os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))
            made.append(node)
        names = [f"libnvidia-bench{i}.so" for i in range(30)]
        for n in names:
            open(f"{top}/{n}.999.1", "wb").close()
            os.symlink(f"{n}.999.1", f"{top}/{n}.1")
        with open(f"{top}/nvidia-smi", "w") as f:
            f.write("#!/bin/sh\n")
        with open(f"{top}/list.conf", "w") as f:
            f.write("\n".join(names + ["nvidia-smi", "libcuda.so"]) + "\n")
        site = f'[site]\ngpu_libraries = "{top}/list.conf"\ngpu_search_dirs = ["{top}"]\n'
        text = site + f'[environments.plain]\npath = "{tree}"\n[environments.gpu]\npath = "{tree}"\ngpus = "nvidia"\n'
        policy = parse_policy_text(text, "bench")
        res = {}
        for name in ("plain", "gpu"):
            env = policy.get(name)
            res[name, "choose"] = _times(lambda: devices._cache.clear() or choose_version(policy, Decision(name, "bench", env), ROOT))
            chosen = choose_version(policy, Decision(name, "bench", env), ROOT)
            plan = build_plan(policy, name, chosen.environment, ROOT, "/")
            res[name, "build"] = _times(lambda: _build(plan), n=N // 2)
            res[name, "task"] = _times(lambda: enter.apply_env_ops(plan, dict(os.environ)), n=N * 20)
            res[name, "files"] = len(chosen.environment.host_devices.files) if chosen.environment.host_devices else 0
        job = (res["gpu", "choose"] + res["gpu", "build"]) - (res["plain", "choose"] + res["plain", "build"])
        task = res["gpu", "task"] - res["plain", "task"]
        print(f"GPU stand-in: {res['gpu', 'files']} driver files, 2 device nodes; medians, {os.uname().release}")
        for what in ("choose", "build", "task"):
            print(f"  {what:7s} without gpus {res['plain', what] * 1e6:8.1f} us   with {res['gpu', what] * 1e6:8.1f} us")
        print(f"  added per job per node: {job * 1e3:.2f} ms (target <= 2 ms): {'ok' if job <= 2e-3 else 'MISSED'}")
        print(f"  added per task:         {task * 1e6:.1f} us (target <= 20 us): {'ok' if task <= 20e-6 else 'MISSED'}")
    finally:
        for node in made:
            os.unlink(node)
        shutil.rmtree(top)


def _build(plan) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            view.build_view(plan)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if status:
        raise SystemExit("build_view failed")


def _times(fn, n: int = N) -> float:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


if __name__ == "__main__":
    main()
