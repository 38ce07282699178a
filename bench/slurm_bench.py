#!/usr/bin/python3
"""Driver for bench/slurm.sh: times srun / sbatch on a throwaway cluster with and without the
envsched SPANK plugin. Not a test: it prints medians, ratios and paired differences.

Every section runs its cases interleaved: one launch of each case per round, in a shuffled order
each round (fixed seed), after warm-up rounds that are not recorded. Between two launches the
driver waits until the node is quiet (the job has left squeue -- its epilog has finished -- and no
pin is left under run_dir; or, for steps inside an allocation, a fixed pause), so one launch's
epilog never overlaps the next launch.

Cases per section ("bare" = plugstack.conf empty: Slurm alone; "plain" = plugin loaded, no
--chos, policy default `local`; "chos" = plugin loaded, --chos=A):

  jobs       srun true outside an allocation: each srun is its own job; with the decision cache
             warm (chos, plain), the first job after a policy edit (cold: the resolver runs at
             submit and on the node; cold-novalidate: the same with the plugstack's validate=0, the
             resolver on the node only), and the plugin with cache=0 (nocache: the resolver always)
  tasks      the same with -n N -O, N = 1, 2, 8, 32
  steps      srun -n1 true inside one allocation (`salloc -N1 --chos=A`, which runs this script's
             `steps` sub-command, so the steps see the allocation's environment)
  steptasks  srun -n N true inside `salloc -N1 -n32 -O --chos=A`
  sbatch     sbatch submit -> JobState COMPLETED (scontrol polled every POLL s)
  direct     the resolver started directly: envsched prepare (+ release) and validate, python3 -I -S
  timeline   srun true / srun --chos=A true with the resolver behind a wrapper that logs its start
             and end: where one srun-as-its-own-job spends its time
  burst      16 standalone jobs started at once (srun -p burst, a partition whose CPUs jobs share,
             OverSubscribe=FORCE) against the same job alone, bare, plain and chos (warm): does a
             job in the burst wait for the others' envsched setup (a lock held across a Python start)?

bench/slurm.sh sets the cluster up and calls this with `all`; see that script for the layout.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


# ------------------------------------------------------------------ plumbing
class Ctx:
    def __init__(self, a: argparse.Namespace):
        self.dir = Path(a.cluster)
        self.run_dir = Path(a.run_dir)
        self.line = Path(a.plugstack_line_file).read_text()
        self.env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "SLURM_CONF": str(self.dir / "slurm.conf"),
                    "HOME": "/root", "USER": "root", "LOGNAME": "root"}
        self.env_name = a.env_name
        self.poll = a.poll
        self.pause = a.pause
        self.plugin_on = None           # False, True, or the text of another plugstack line
        self.log = self.dir / "envsched.log"
        self.failures: List[str] = []

    def plugstack(self, on, line: Optional[str] = None) -> None:
        """Rewrite plugstack.conf (atomically) when the wanted state differs from the current one.
        srun, sbatch and slurmstepd read it at every start; the job epilog at every job."""
        if line is not None:
            on = line
        if self.plugin_on == on:
            return
        p = self.dir / "plugstack.conf"
        tmp = p.with_name(".plugstack.conf.bench")
        tmp.write_text(on if isinstance(on, str) else self.line if on else "")
        tmp.chmod(0o644)
        os.replace(tmp, p)
        self.plugin_on = on

    def cmd(self, argv: Sequence[str], extra_env: Optional[Dict[str, str]] = None):
        env = dict(self.env)
        env.update(extra_env or {})
        argv = list(argv)
        # /tmp: a cwd that exists in the views too (shared by default), as /home would for users
        return argv, env, "/tmp"

    def run(self, argv: Sequence[str], timeout: float = 120, extra_env=None) -> subprocess.CompletedProcess:
        argv, env, cwd = self.cmd(argv, extra_env)
        return subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)

    def timed(self, argv: Sequence[str], extra_env=None, timeout: float = 120):
        """(seconds, CompletedProcess): wall time of one client command, from spawn to reaped."""
        argv, env, cwd = self.cmd(argv, extra_env)
        t0 = time.perf_counter()
        p = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        return time.perf_counter() - t0, p

    def queue_empty(self) -> bool:
        p = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=30)
        return p.returncode == 0 and p.stdout.strip() == ""

    def pins(self) -> List[str]:
        """Pins under run_dir, and the job records (run_dir/.jobs/*) no job epilog has removed yet."""
        try:
            # .images: holders; .views: shared views kept warm (site.view_hold); .decisions: the cache
            names = sorted(n for n in os.listdir(self.run_dir) if n not in (".jobs", ".images", ".views", ".decisions"))
        except FileNotFoundError:
            return []
        try:
            names += sorted(".jobs/" + n for n in os.listdir(self.run_dir / ".jobs"))
        except FileNotFoundError:
            pass
        return names

    def settle(self, timeout: float = 60) -> float:
        """Wait until no job is in the queue (COMPLETING included: the epilog has run) and no pin
        is left; return how long that took."""
        t0 = time.perf_counter()
        deadline = t0 + timeout
        while True:
            if not self.pins() and self.queue_empty():
                return time.perf_counter() - t0
            if time.perf_counter() > deadline:
                raise SystemExit(f"bench: not settled after {timeout}s: pins {self.pins()}")
            time.sleep(self.poll)


def resolver_runs(ctx: Ctx) -> int:
    """event=decided lines in envsched.log: one per resolver run that decided (prepare, exec)."""
    try:
        return ctx.log.read_text(errors="replace").count("event=decided")
    except FileNotFoundError:
        return 0


def stats(xs: List[float]) -> Dict[str, float]:
    s = sorted(xs)
    q = statistics.quantiles(s, n=10, method="inclusive") if len(s) >= 2 else [s[0]] * 9
    return {"n": len(s), "median": statistics.median(s), "p10": q[0], "p90": q[8], "min": s[0]}


def interleave(ctx: Ctx, title: str, cases: Dict[str, dict], rounds: int, warmup: int, seed: int,
               launch, between) -> Dict[str, List[float]]:
    """Run every case once per round in a shuffled order; return the recorded times per case
    (index = round, so rounds can be paired)."""
    rng = random.Random(seed)
    names = list(cases)
    times: Dict[str, List[float]] = {n: [] for n in names}
    extra: Dict[str, List[float]] = {n: [] for n in names}
    t0 = time.monotonic()
    decided0 = resolver_runs(ctx)
    for r in range(warmup + rounds):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            dt, aux = launch(name, cases[name])
            if r >= warmup:
                times[name].append(dt)
                if aux is not None:
                    extra[name].append(aux)
            between()
    decided = resolver_runs(ctx) - decided0
    print(f"# {title}: {rounds} rounds (+{warmup} warm-up) of {len(names)} cases in "
          f"{time.monotonic() - t0:.0f}s; resolver decisions logged meanwhile: {decided}", flush=True)
    return {"times": times, "extra": extra, "decided": decided}


def table(title: str, res: dict, base: str, unit: float = 1e3, unit_name: str = "ms",
          extra_name: Optional[str] = None, ref2: Optional[str] = None, groups=None) -> str:
    """Markdown table: median p10 p90, ratio of medians to `base` (and `ref2`), paired diff."""
    times = res["times"]
    hdr = f"| case | n | median {unit_name} | p10 | p90 | x {base} |"
    if ref2:
        hdr += f" x {ref2} |"
    hdr += f" paired - {base} ({unit_name}) |"
    if extra_name:
        hdr += f" {extra_name} |"
    lines = [f"**{title}**", "", hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for name, xs in times.items():
        b = groups(name, base) if groups else base
        s = stats(xs)
        sb = stats(times[b])
        paired = statistics.median([x - y for x, y in zip(xs, times[b])])
        row = (f"| {name} | {s['n']} | {s['median'] * unit:.1f} | {s['p10'] * unit:.1f} | "
               f"{s['p90'] * unit:.1f} | {s['median'] / sb['median']:.3f} |")
        if ref2:
            r2 = groups(name, ref2) if groups else ref2
            row += f" {s['median'] / stats(times[r2])['median']:.3f} |"
        row += f" {paired * unit:+.1f} |"
        if extra_name:
            ex = res["extra"].get(name) or []
            row += f" {statistics.median(ex) * unit:.0f} |" if ex else " - |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def check_ok(ctx: Ctx, what: str, p: subprocess.CompletedProcess) -> None:
    if p.returncode != 0:
        msg = f"{what}: exit {p.returncode}: {p.stderr.strip()[:300]}"
        ctx.failures.append(msg)
        print("bench: FAILED " + msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ sanity: where does each case land
def where(ctx: Ctx, argv: Sequence[str]) -> str:
    p = ctx.run([*argv, "sh", "-c", "cat /etc/envsched-mini-release 2>/dev/null || echo host; echo CHOS=$CHOS"])
    return (p.stdout.strip().replace("\n", " ") or "?") + ("" if p.returncode == 0 else f" (exit {p.returncode}: {p.stderr.strip()})")


# ------------------------------------------------------------------ sections
def section_jobs(ctx: Ctx, a) -> str:
    A = ctx.env_name
    cases = {}
    for n in a.tasks:
        opt = [] if n == 1 else ["-n", str(n), "-O"]
        sfx = "" if n == 1 else f" -n{n}"
        cases[f"bare{sfx}"] = {"plugin": False, "argv": ["srun", *opt, "true"], "n": n}
        if n == 1:
            cases[f"plain{sfx}"] = {"plugin": True, "argv": ["srun", *opt, "true"], "n": n}
        cases[f"chos{sfx}"] = {"plugin": True, "argv": ["srun", *opt, f"--chos={A}", "true"], "n": n}
        if n == 1:
            # the first job after a policy edit (every cache entry stale: the resolver runs at submit
            # and on the node, and writes the entries again), and the plugin with no cache at all
            # (a copy of the policy, the plugin line naming it: touching it leaves the other cases'
            # entries alone, as an edit of another site's policy would)
            if a.cold_line_file:
                cold_line = Path(a.cold_line_file).read_text()
                cases["cold"] = {"plugin": cold_line, "argv": ["srun", f"--chos={A}", "true"],
                                 "n": n, "cold": a.cold_policy}
                # the same without the submit-time check (plugstack validate=0): one resolver run,
                # on the node, and a refusal shown at start instead of at submission
                cases["cold-novalidate"] = {"plugin": cold_line.rstrip("\n") + " validate=0\n",
                                            "argv": ["srun", f"--chos={A}", "true"], "n": n, "cold": a.cold_policy}
            cases["nocache"] = {"plugin": ctx.line.rstrip("\n") + " cache=0\n",
                                "argv": ["srun", f"--chos={A}", "true"], "n": n}
    for name, c in cases.items():
        ctx.plugstack(c["plugin"])
        print(f"#   check {name:10s} -> {where(ctx, c['argv'][:-1])}", flush=True)
        ctx.settle()

    def launch(name, c):
        ctx.plugstack(c["plugin"])
        if c.get("cold"):
            # edited: a new text (a comment line that changes every launch), so that neither the
            # decision cache (the file's stat) nor the parsed policy kept as root (its text) holds
            with open(c["cold"], "a") as f:
                f.write(f"# bench edit {time.monotonic_ns()}\n")
            # policy/load.py reads a policy changed less than 100 ms ago again once it settled: the
            # job comes after that (the cold decision's cost, not the wait for an edit to settle)
            time.sleep(0.15)
        dt, p = ctx.timed(c["argv"])
        check_ok(ctx, name, p)
        return dt, ctx.settle()

    rounds = a.rounds if a.tasks == [1] else a.task_rounds
    res = interleave(ctx, "jobs: each srun its own job", cases, rounds, a.warmup, a.seed, launch,
                     lambda: time.sleep(ctx.pause))
    res["cases"] = {k: {kk: vv for kk, vv in v.items()} for k, v in cases.items()}
    return res


def section_steps(ctx: Ctx, a) -> dict:
    """Runs inside `salloc`: SLURM_JOB_ID etc. are in our environment and passed to every srun."""
    A = ctx.env_name
    passthrough = {k: v for k, v in os.environ.items() if k.startswith(("SLURM_", "SPANK_", "_SLURM_SPANK"))}
    ctx.env.update(passthrough)
    # the allocation's first step runs the job prolog on the node: it must see the plugin, which
    # writes there the job record the plugin's later steps need (plugins/slurm-spank/jobrec.c)
    ctx.plugstack(True)
    check_ok(ctx, "first step", ctx.timed(["srun", "true"])[1])
    cases = {}
    for n in a.tasks:
        sfx = "" if n == 1 else f" -n{n}"
        cases[f"bare{sfx}"] = {"plugin": False, "argv": ["srun", "-n", str(n), "true"], "n": n}
        cases[f"plain{sfx}"] = {"plugin": True, "argv": ["srun", "-n", str(n), "true"], "n": n}
        if n == 1:
            cases[f"chos{sfx}"] = {"plugin": True, "argv": ["srun", "-n", str(n), f"--chos={A}", "true"], "n": n}
    for name, c in cases.items():
        ctx.plugstack(c["plugin"])
        print(f"#   check {name:10s} -> {where(ctx, c['argv'][:-1])}", flush=True)

    def launch(name, c):
        ctx.plugstack(c["plugin"])
        dt, p = ctx.timed(c["argv"])
        check_ok(ctx, name, p)
        return dt, None

    res = interleave(ctx, f"steps inside allocation {os.environ.get('SLURM_JOB_ID')}", cases, a.rounds,
                     a.warmup, a.seed, launch, lambda: time.sleep(ctx.pause))
    ctx.plugstack(True)      # the job's epilog must see the plugin to release the view
    res["cases"] = cases
    res["job"] = os.environ.get("SLURM_JOB_ID")
    res["pins_during"] = ctx.pins()
    res["failures"] = ctx.failures
    return res


def section_sbatch(ctx: Ctx, a) -> dict:
    A = ctx.env_name
    script = ctx.dir / "scripts" / "true.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    script.chmod(0o644)
    cases = {"bare": {"plugin": False, "opts": []}, "plain": {"plugin": True, "opts": []},
             "chos": {"plugin": True, "opts": [f"--chos={A}"]}}
    terminal = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                "BOOT_FAIL", "DEADLINE", "PREEMPTED"}

    def state(job: str) -> str:
        p = subprocess.run(["scontrol", "show", "job", "-o", job], env=ctx.env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=30)
        for tok in p.stdout.split():
            if tok.startswith("JobState="):
                return tok.split("=", 1)[1]
        return "?"

    def launch(name, c):
        ctx.plugstack(c["plugin"])
        argv, env, cwd = ctx.cmd(["sbatch", "--parsable", "-o", "/dev/null", *c["opts"], str(script)])
        t0 = time.perf_counter()
        p = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        t_sub = time.perf_counter() - t0
        if p.returncode != 0:
            check_ok(ctx, name, p)
            return t_sub, t_sub
        job = p.stdout.strip().split(";")[0]
        deadline = t0 + 120
        while True:
            st = state(job)
            if st in terminal:
                break
            if time.perf_counter() > deadline:
                raise SystemExit(f"bench: sbatch job {job} still {st}")
            time.sleep(ctx.poll)
        done = time.perf_counter() - t0
        if st != "COMPLETED":
            ctx.failures.append(f"sbatch {name}: job {job} {st}")
        ctx.settle()
        return done, t_sub

    for name, c in cases.items():
        ctx.plugstack(c["plugin"])
        print(f"#   check sbatch {name:6s} -> {where(ctx, ['srun', *c['opts']])} (same options via srun)", flush=True)
        ctx.settle()
    return interleave(ctx, "sbatch submit -> COMPLETED", cases, a.sbatch_rounds, a.warmup, a.seed, launch,
                      lambda: time.sleep(ctx.pause))


def section_direct(ctx: Ctx, a) -> dict:
    """The resolver started directly, as slurmstepd / srun / the epilog start it (root)."""
    A = ctx.env_name
    counter = [0]
    base = [a.resolver, "--policy", a.policy]
    binds = ["--bind", str(ctx.dir / "spool"), "--bind", str(ctx.dir / "munge")]
    env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8"}

    def go(argv):
        t0 = time.perf_counter()
        p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        dt = time.perf_counter() - t0
        check_ok(ctx, " ".join(argv[3:5]), p)
        return dt, p

    def launch(name, c):
        if name == "python3 -I -S":
            return go(["/usr/bin/python3", "-I", "-S", "-c", ""])[0], None
        if name == "validate --request A":
            return go([*base, "validate", "--identity-only", "--user", "0", "--chos-var", "",
                       "--request", A])[0], None
        if name == "validate (no request)":
            return go([*base, "validate", "--identity-only", "--user", "0", "--chos-var", ""])[0], None
        counter[0] += 1
        key = f"benchdirect-{os.getpid()}-{counter[0]}"
        req = ["--request", A] if name.startswith("prepare A") else []
        dt, _ = go([*base, "prepare", "--format", "shim", "--reuse", "--key", key, "--user", "0",
                    "--job", f"bench.{counter[0]}", "--owner-pid", str(os.getpid()), "--chos-var", "",
                    "--inputs", "bench", *req, *binds])
        dt2, _ = go([*base, "release", "--key", key, "--with-steps", "--quiet"])
        return dt, dt2

    cases = {"python3 -I -S": {}, "validate (no request)": {}, "validate --request A": {},
             "prepare (local)": {}, "prepare A": {}}
    return interleave(ctx, "resolver started directly", cases, a.direct_rounds, a.warmup, a.seed, launch,
                      lambda: None)


def section_timeline(ctx: Ctx, a) -> dict:
    """Where the time of one srun-as-its-own-job goes: the plugin runs a timing wrapper around
    the resolver (a bash script that logs its start and end; adds ~2-3 ms per run) and this driver
    logs srun's own start and end, all on the same clock."""
    A = ctx.env_name
    tlog = ctx.dir / "timeline.log"
    line = Path(a.timeline_line_file).read_text()
    cases = {"plain": ["srun", "true"], "chos": ["srun", f"--chos={A}", "true"]}
    segs: Dict[str, Dict[str, List[float]]] = {n: {} for n in cases}

    def launch(name, argv):
        ctx.plugstack(True, line=line)
        pos = tlog.stat().st_size if tlog.exists() else 0
        t0 = time.time()
        dt, p = ctx.timed(argv)
        t1 = t0 + dt
        check_ok(ctx, name, p)
        ctx.settle()
        with open(tlog) as f:
            f.seek(pos)
            ev = {}
            for row in f.read().splitlines():
                if row.strip():
                    what, s, e = row.split()
                    ev[what] = (float(s), float(e))
        if {"validate", "prepare", "release"} <= set(ev):
            v, pr, rl = ev["validate"], ev["prepare"], ev["release"]
            for k, x in (("srun start -> validate start", v[0] - t0), ("validate (in srun)", v[1] - v[0]),
                         ("validate end -> prepare start", pr[0] - v[1]),
                         ("prepare (in slurmstepd)", pr[1] - pr[0]), ("prepare end -> srun end", t1 - pr[1]),
                         ("srun total", dt), ("srun end -> release start (job epilog)", rl[0] - t1),
                         ("release (job epilog)", rl[1] - rl[0])):
                segs[name].setdefault(k, []).append(x)
        else:
            ctx.failures.append(f"timeline {name}: resolver runs seen: {sorted(ev)}")
        return dt, None

    interleave(ctx, "timeline (timed resolver wrapper)", cases, a.timeline_rounds, 1, a.seed, launch,
               lambda: time.sleep(ctx.pause))
    ctx.plugstack(True)
    return segs


def timeline_table(segs: dict) -> str:
    names = list(segs)
    rows = ["| segment (median ms) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in segs[names[0]]:
        rows.append(f"| {k} | " + " | ".join(f"{statistics.median(segs[n][k]) * 1e3:.1f}" if segs[n].get(k)
                                             else "-" for n in names) + " |")
    return "\n".join(rows) + "\n"


def section_burst(ctx: Ctx, a) -> dict:
    """Each round, per case: one job alone, then a.burst_jobs jobs started at once; every srun's
    own wall time (spawn to reaped) is recorded."""
    import threading
    A = ctx.env_name
    cases = {"bare": {"plugin": False, "argv": ["srun", "-p", "burst", "true"]},
             "plain": {"plugin": True, "argv": ["srun", "-p", "burst", "true"]},
             "chos": {"plugin": True, "argv": ["srun", "-p", "burst", f"--chos={A}", "true"]}}
    alone: Dict[str, List[float]] = {k: [] for k in cases}
    burst: Dict[str, List[float]] = {k: [] for k in cases}
    slowest: Dict[str, List[float]] = {k: [] for k in cases}
    rng = random.Random(a.seed)
    decided0 = resolver_runs(ctx)
    t_start = time.monotonic()
    for r in range(a.warmup + a.burst_rounds):
        order = list(cases)
        rng.shuffle(order)
        for name in order:
            c = cases[name]
            ctx.plugstack(c["plugin"])
            dt, p = ctx.timed(c["argv"])
            check_ok(ctx, f"burst {name} alone", p)
            ctx.settle()
            time.sleep(ctx.pause)
            got: List[float] = []
            lock = threading.Lock()

            def one() -> None:
                d, q = ctx.timed(c["argv"], timeout=300)
                check_ok(ctx, f"burst {name}", q)
                with lock:
                    got.append(d)
            threads = [threading.Thread(target=one) for _ in range(a.burst_jobs)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            ctx.settle(timeout=120)
            time.sleep(ctx.pause)
            if r >= a.warmup:
                alone[name].append(dt)
                burst[name].extend(got)
                slowest[name].append(max(got))
    print(f"# burst: {a.burst_rounds} rounds (+{a.warmup} warm-up), {a.burst_jobs} jobs at once, in "
          f"{time.monotonic() - t_start:.0f}s; resolver decisions logged meanwhile: "
          f"{resolver_runs(ctx) - decided0}", flush=True)
    return {"alone": alone, "burst": burst, "slowest": slowest, "jobs": a.burst_jobs}


def burst_table(res: dict) -> str:
    n = res["jobs"]
    lines = [f"**(5) {n} standalone jobs started at once on one node (srun -p burst true), against the same "
             "job alone**", "",
             "| case | alone median ms | burst median ms | burst p90 | slowest of the burst (median over rounds) "
             "| slowest / alone | burst median x bare's |", "|---|---|---|---|---|---|---|"]
    bare_burst = statistics.median(res["burst"]["bare"])
    for name in res["alone"]:
        al, bu, sl = stats(res["alone"][name]), stats(res["burst"][name]), statistics.median(res["slowest"][name])
        lines.append(f"| {name} | {al['median'] * 1e3:.1f} | {bu['median'] * 1e3:.1f} | {bu['p90'] * 1e3:.1f} | "
                     f"{sl * 1e3:.1f} | {sl / al['median']:.2f} | {bu['median'] / bare_burst:.3f} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["all", "steps"])
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--plugstack-line-file", required=True)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--resolver", required=True)
    ap.add_argument("--env-name", default="deb12")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--task-rounds", type=int, default=20)
    ap.add_argument("--sbatch-rounds", type=int, default=12)
    ap.add_argument("--direct-rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--poll", type=float, default=0.05)
    ap.add_argument("--pause", type=float, default=0.2)
    ap.add_argument("--tasks", default="1")
    ap.add_argument("--timeline-line-file")
    ap.add_argument("--cold-line-file", help="the plugstack line of the `cold` case (its own policy copy)")
    ap.add_argument("--cold-policy", help="that policy copy, touched before every `cold` launch")
    ap.add_argument("--timeline-rounds", type=int, default=10)
    ap.add_argument("--burst-rounds", type=int, default=5)
    ap.add_argument("--burst-jobs", type=int, default=16)
    ap.add_argument("--sections", default="jobs,tasks,steps,steptasks,sbatch,direct,timeline")
    ap.add_argument("--json", help="write raw results here")
    a = ap.parse_args()
    a.tasks = [int(x) for x in a.tasks.split(",")]
    ctx = Ctx(a)

    if a.what == "steps":
        # inside salloc: the plugstack state is unknown to this process; start from "on"
        ctx.plugin_on = None
        res = section_steps(ctx, a)
        Path(a.json).write_text(json.dumps(res))
        return 0

    out: Dict[str, dict] = {}
    secs = a.sections.split(",")
    me = [sys.executable, os.path.abspath(__file__)]
    common = ["--cluster", a.cluster, "--run-dir", a.run_dir, "--plugstack-line-file", a.plugstack_line_file,
              "--policy", a.policy, "--resolver", a.resolver, "--env-name", a.env_name,
              "--warmup", str(a.warmup), "--seed", str(a.seed), "--pause", str(a.pause)]

    def steps(tag: str, salloc_opts: List[str], tasks: str, rounds: int) -> None:
        ctx.plugstack(True)
        ctx.settle()
        j = Path(a.json or "/dev/null").with_suffix(f".{tag}.json") if a.json else \
            ctx.dir / f"steps-{tag}.json"
        p = ctx.run(["salloc", *salloc_opts, f"--chos={a.env_name}", *me, "steps", *common,
                     "--rounds", str(rounds), "--tasks", tasks, "--json", str(j)], timeout=3600)
        sys.stdout.write(p.stdout)
        if p.returncode != 0:
            raise SystemExit(f"bench: salloc steps failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
        res = json.loads(j.read_text())
        ctx.failures.extend(res.get("failures", []))
        ctx.plugin_on = None            # the helper left the plugin on
        res["settle_after_job"] = ctx.settle()
        out[tag] = res

    print(f"# run_dir {a.run_dir}; environment A = {a.env_name}; clients run as root; seed {a.seed}", flush=True)
    if "jobs" in secs:
        out["jobs"] = section_jobs(ctx, a)
    if "tasks" in secs:
        b = argparse.Namespace(**vars(a))
        b.tasks = [1, 2, 8, 32]
        out["tasks"] = section_jobs(ctx, b)
    if "steps" in secs:
        steps("steps", ["-N1"], "1", a.rounds)
    if "steptasks" in secs:
        steps("steptasks", ["-N1", "-n32", "-O"], "1,2,8,32", a.task_rounds)
    if "sbatch" in secs:
        out["sbatch"] = section_sbatch(ctx, a)
    if "direct" in secs:
        out["direct"] = section_direct(ctx, a)
    if "timeline" in secs and a.timeline_line_file:
        out["timeline"] = section_timeline(ctx, a)
    if "burst" in secs:
        out["burst"] = section_burst(ctx, a)
    ctx.plugstack(True)

    # ---------------------------------------------------------------- report
    print()
    if "jobs" in out:
        print(table("(1) each srun its own job: srun true (1 task)", out["jobs"], "bare", ref2="plain",
                    extra_name="settle ms (job gone from squeue after srun returned)"))
    if "tasks" in out:
        grp = lambda name, base: base + name[len(name.split()[0]):]
        print(table("(1) each srun its own job: N tasks (-n N -O)", out["tasks"], "bare", groups=grp,
                    extra_name="settle ms"))
        print(per_task(out["tasks"]))
    if "steps" in out:
        print(table(f"(2) steps inside one allocation (salloc -N1 --chos={a.env_name}, job "
                    f"{out['steps']['job']}): 1 task", out["steps"], "bare", ref2="plain"))
    if "steptasks" in out:
        grp = lambda name, base: base + name[len(name.split()[0]):]
        print(table(f"(2) steps inside one allocation (salloc -N1 -n32 -O --chos={a.env_name}): "
                    f"srun -n N", out["steptasks"], "bare", groups=grp))
        print(per_task(out["steptasks"], plugin="plain"))
    if "sbatch" in out:
        print(table("sbatch submit -> JobState=COMPLETED (scontrol polled every "
                    f"{int(a.poll * 1000)} ms)", out["sbatch"], "bare", ref2="plain",
                    extra_name="sbatch cmd ms"))
    if "direct" in out:
        print(table("the resolver started directly (root)", out["direct"], "python3 -I -S",
                    extra_name="release ms"))
    if "timeline" in out:
        print(f"**(1) where the time of one srun (its own job) goes: {a.timeline_rounds} rounds, resolver "
              "behind a timing wrapper**\n")
        print(timeline_table(out["timeline"]))
    if "burst" in out:
        print(burst_table(out["burst"]))
    for k, v in out.items():
        if isinstance(v, dict) and "decided" in v:
            print(f"resolver decisions (event=decided in envsched.log) during {k}: {v['decided']}")
    print("failures:", len(ctx.failures))
    for f in ctx.failures[:20]:
        print("  ", f)
    if a.json:
        Path(a.json).write_text(json.dumps(out))
    return 1 if ctx.failures else 0


def per_task(res: dict, plugin: str = "chos") -> str:
    """Overhead of the plugin per step and per task, as a function of N."""
    times = res["times"]
    ns = sorted({int(k.split("-n")[1]) if "-n" in k else 1 for k in times})
    rows = [("| N | bare median ms | bare ms/task | with plugin median ms | ms/task | overhead ms "
             "(paired) | overhead per task ms |"), "|---|---|---|---|---|---|---|"]
    for n in ns:
        sfx = "" if n == 1 else f" -n{n}"
        b, c = times[f"bare{sfx}"], times[f"{plugin}{sfx}"]
        mb, mc = statistics.median(b), statistics.median(c)
        ov = statistics.median([x - y for x, y in zip(c, b)])
        rows.append(f"| {n} | {mb * 1e3:.1f} | {mb * 1e3 / n:.2f} | {mc * 1e3:.1f} | {mc * 1e3 / n:.2f} | "
                    f"{ov * 1e3:+.1f} | {ov * 1e3 / n:+.2f} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.exit(main())
