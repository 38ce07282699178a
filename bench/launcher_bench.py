#!/usr/bin/python3
"""Driver for bench/launcher.sh: what an environment's `launcher` (#12) costs per task, the
launcher's own exec apart from what envsched adds. Not a test: medians, p10/p90, ratios, paired
differences; every section runs its cases interleaved (one of each per round, shuffled, after
warm-up rounds that are not recorded).

Sections:
  micro    fork -> exec -> wait on this host (bench/launch_bench.c, N launches of each):
             payload    /usr/bin/true
             launcher   /usr/bin/env /usr/bin/true           (a trivial exec-through launcher)
             stub       envsched-launch -> env -> true       (Slurm before 23.11: the plugin's stub)
           launcher - payload is the launcher's exec, which any launcher costs; stub - launcher is
           envsched's own (the static stub: its exec, decoding, the PATH lookup).
  python   enter.launched_argv (chos run, envsched exec/join): the argv with the launcher, the
           program looked up in PATH, against the argv without one.
  prepare  `envsched prepare` + release, as root, with and without the stub's bind (what every view
           gets on a node whose Slurm has no spank_prepend_task_argv).
  slurm    srun -n N -O true, each its own job, in the same environment without (`plain`) and with
           (`launched`, launcher = ["/usr/bin/env"]) a launcher: per step, and per task (/ N).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slurm_bench as sb  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def fmt(xs, unit=1e3, name="ms"):
    s = sb.stats(xs)
    return f"{s['median'] * unit:8.2f} {name} [{s['p10'] * unit:7.2f} {s['p90'] * unit:7.2f}]"


def section_micro(a) -> dict:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
           "ENVSCHED_LAUNCH": "1:0:2:12:/usr/bin/env4:true"}     # launcher /usr/bin/env, program `true`
    argv = [a.launch_bench, "-n", str(a.micro_n), "-w", "50", "-s", "1", "-b", "payload,launcher",
            "payload=bare", "/usr/bin/true", "::", "launcher=cmd", "/usr/bin/env", "/usr/bin/true", "::",
            "stub=cmd", a.stub]
    p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"bench: launch_bench failed: {p.stderr.strip()[:500]}")
    res, paired = {}, {}
    for line in p.stdout.splitlines():
        f = line.split()
        if f[:1] == ["RESULT"]:
            res[f[1]] = dict(zip(("n", "median", "p10", "p90"), (int(f[2]), *map(float, f[3:6]))))
        elif f[:1] == ["PAIRED"]:
            paired[f[1], f[2]] = dict(zip(("median", "p10", "p90"), map(float, f[3:6])))
    print(f"**per task on this host: fork -> exec -> wait, {a.micro_n} launches each (us)**\n")
    print("| case | median | p10 | p90 | x payload | paired - payload | paired - launcher |")
    print("|---|---|---|---|---|---|---|")
    for k in ("payload", "launcher", "stub"):
        r = res[k]
        pp = paired.get((k, "payload"), {}).get("median", 0.0)
        pl = paired.get((k, "launcher"), {}).get("median", 0.0)
        print(f"| {k} | {r['median']:.0f} | {r['p10']:.0f} | {r['p90']:.0f} | {r['median'] / res['payload']['median']:.2f} "
              f"| {pp:+.0f} | {pl:+.0f} |")
    print(f"\n  the launcher's own exec (launcher - payload): {paired['launcher', 'payload']['median']:+.0f} us;"
          f" envsched's stub on top (stub - launcher): {paired['stub', 'launcher']['median']:+.0f} us per task\n",
          flush=True)
    return {"results": res, "paired": {f"{k[0]}-{k[1]}": v for k, v in paired.items()}}


def section_python(a) -> dict:
    sys.path.insert(0, str(REPO / "src"))
    from envsched.enter import launched_argv
    from envsched.plan import Plan
    with_l = Plan("e", "tree", "/x", [{"op": "launcher", "argv": ["/usr/bin/env"]}])
    without = Plan("e", "tree", "/x", [])
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    out = {}
    for name, plan, argv in (("without", without, ["true", "x"]), ("with, bare name", with_l, ["true", "x"]),
                             ("with, a path", with_l, ["/usr/bin/true", "x"])):
        xs = []
        for _ in range(2000):
            t = time.perf_counter()
            launched_argv(plan, argv, env)
            xs.append(time.perf_counter() - t)
        out[name] = xs
    print("**Python entry (chos run, envsched exec/join): enter.launched_argv per call**\n")
    for name, xs in out.items():
        print(f"  {name:16s} {fmt(xs, 1e6, 'us')}")
    print(flush=True)
    return {k: sb.stats(v) for k, v in out.items()}


def section_prepare(a) -> dict:
    base = [a.resolver, "--policy", a.policy]
    env = {"PATH": sb.CLEAN_PATH, "LANG": "C.UTF-8"}
    binds = ["--bind", f"{a.cluster}/spool", "--bind", f"{a.cluster}/munge"]
    cases = {"without the stub bind": [], "with the stub bind": ["--bind", f"{a.stub}:/.envsched/bin/envsched-launch:ro"]}
    times = {k: [] for k in cases}
    rng = random.Random(1)
    counter = 0
    for r in range(a.rounds + 2):
        order = list(cases)
        rng.shuffle(order)
        for name in order:
            counter += 1
            key = f"benchlaunch-{os.getpid()}-{counter}"
            t0 = time.perf_counter()
            p = subprocess.run([*base, "prepare", "--format", "shim", "--key", key, "--user", "0", "--owner-pid",
                                str(os.getpid()), "--chos-var", "", "--request", "launched", *binds, *cases[name]],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
            dt = time.perf_counter() - t0
            subprocess.run([*base, "release", "--key", key, "--quiet"], env=env, timeout=60)
            if p.returncode != 0:
                raise SystemExit(f"bench: prepare {name}: {p.stderr.strip()}")
            if r >= 2:
                times[name].append(dt)
    w, wo = times["with the stub bind"], times["without the stub bind"]
    paired = statistics.median([x - y for x, y in zip(w, wo)])
    print(f"**envsched prepare + its view, per job per node ({a.rounds} rounds)**\n")
    for name, xs in times.items():
        print(f"  {name:22s} {fmt(xs)}")
    print(f"  the stub's bind adds (paired median): {paired * 1e3:+.2f} ms per view\n", flush=True)
    return {"times": {k: sb.stats(v) for k, v in times.items()}, "paired_ms": paired * 1e3}


def section_slurm(a) -> dict:
    ns = argparse.Namespace(cluster=a.cluster, run_dir=a.run_dir, plugstack_line_file=a.plugstack_line_file,
                            env_name="plain", poll=0.05, pause=0.2)
    ctx = sb.Ctx(ns)
    ctx.plugstack(True)
    cases = {}
    for n in a.tasks:
        opt = ["-n", str(n), "-O"]
        for env in ("plain", "launched"):
            cases[f"{env} -n{n}"] = {"argv": ["srun", *opt, f"--chos={env}", "true"], "n": n}
    for name, c in cases.items():
        print(f"#   check {name:12s} -> {sb.where(ctx, c['argv'][:-1])}", flush=True)
        ctx.settle()

    def launch(name, c):
        dt, p = ctx.timed(c["argv"])
        sb.check_ok(ctx, name, p)
        return dt, ctx.settle()

    res = sb.interleave(ctx, "srun: each its own job", cases, a.rounds, 2, 1, launch, lambda: time.sleep(ctx.pause))
    print()
    print(sb.table("srun -n N -O true, each its own job (wall time of srun)", res, f"plain -n{a.tasks[0]}",
                   groups=lambda name, base: f"plain -n{cases[name]['n']}"))
    per = {}
    for n in a.tasks:
        d = statistics.median([x - y for x, y in zip(res["times"][f"launched -n{n}"], res["times"][f"plain -n{n}"])])
        per[n] = d
        print(f"  -n{n}: the launcher adds {d * 1e3:+.1f} ms per step (paired median), {d / n * 1e3:+.2f} ms per task")
    if ctx.failures:
        print("bench: FAILURES: " + "; ".join(ctx.failures), file=sys.stderr)
    print(flush=True)
    return {"per_step_ms": {n: d * 1e3 for n, d in per.items()},
            "times": {k: sb.stats(v) for k, v in res["times"].items()}, "failures": ctx.failures}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--plugstack-line-file", required=True)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--resolver", required=True)
    ap.add_argument("--stub", required=True)
    ap.add_argument("--launch-bench", required=True)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--micro-n", type=int, default=2000)
    ap.add_argument("--tasks", default="1,8")
    ap.add_argument("--sections", default="micro,python,prepare,slurm")
    a = ap.parse_args()
    a.tasks = [int(x) for x in a.tasks.split(",")]
    out = {}
    for s in a.sections.split(","):
        out[s] = globals()[f"section_{s}"](a)
    failures = out.get("slurm", {}).get("failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
