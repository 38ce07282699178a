"""GPUs and devices (#12): the cost `gpus` adds, against the same environment without.

Per job per node: choosing the version (devices.py: the site's list, the loader's cache, the
trust checks) plus building the view (fork, build_view in the child, exit): median of N.
Per task: what a task joining the view does more (the two env operations it replays).
First: choosing once in a new process (what one resolver run per job pays; interleaved).
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
        for name in ("plain", "gpu"):
            res[name, "first"] = []
        for _ in range(max(10, N // 4)):          # interleaved: each a new process, as a resolver run is
            for name in ("plain", "gpu"):
                out = subprocess.run([sys.executable, __file__, "--first", text, name], check=True,
                                     stdout=subprocess.PIPE, text=True).stdout
                res[name, "first"].append(float(out))
        res["plain", "first"].sort()
        res["gpu", "first"].sort()
        med = {k: statistics.median(v) for k, v in res.items() if k[1] != "files"}
        job = (med["gpu", "choose"] + med["gpu", "build"]) - (med["plain", "choose"] + med["plain", "build"])
        task = med["gpu", "task"] - med["plain", "task"]
        print(f"GPU stand-in: {res['gpu', 'files']} driver files, 2 device nodes; medians [p10 p90], {os.uname().release}")
        for what in ("choose", "build", "task", "first"):
            print(f"  {what:7s} without gpus {_fmt(res['plain', what])}   with {_fmt(res['gpu', what])}")
        fresh = (med["gpu", "first"] + med["gpu", "build"]) - (med["plain", "first"] + med["plain", "build"])
        print("  (first: choosing once in a new process, as each resolver run does)")
        print(f"  added per job per node: {job * 1e3:.2f} ms (target <= 2 ms): {'ok' if job <= 2e-3 else 'MISSED'}")
        print(f"    with first, not choose: {fresh * 1e3:.2f} ms (target <= 2 ms): {'ok' if fresh <= 2e-3 else 'MISSED'}")
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


def _times(fn, n: int = N) -> list:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return sorted(out)


def _fmt(times: list) -> str:
    """median [p10 p90] in microseconds"""
    p10, p90 = times[len(times) // 10], times[min(len(times) - 1, len(times) * 9 // 10)]
    return f"{statistics.median(times) * 1e6:8.1f} us [{p10 * 1e6:7.1f} {p90 * 1e6:7.1f}]"


def first(text: str, name: str) -> None:
    """Seconds of one choose_version in this new process, after what a resolver run imports."""
    import envsched.cli.envsched  # noqa: F401
    import envsched.service  # noqa: F401
    policy = parse_policy_text(text, "bench")
    t = time.perf_counter()
    choose_version(policy, Decision(name, "bench", policy.get(name)), ROOT)
    print(time.perf_counter() - t)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--first"]:
        first(sys.argv[2], sys.argv[3])
    else:
        main()
