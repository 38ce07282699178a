"""Grid Engine benchmark (not a test: `bash bench/uge.sh`, which runs this file with pytest to reuse the
throwaway clusters of conftest.py; CI does not collect it, its name does not start with test_).

Two clusters run side by side on this host: `uge_cluster` without envsched (the plain job) and
`uge_site` with envsched configured from `site-config render` (JSV client and server side, C
prolog... see conftest.py). Rounds are interleaved and shuffled; each round submits once per case:

  plain       qsub -sync y -b y /bin/true               on the plain cluster
  default     qsub -sync y -b y /bin/true               on the envsched site (site default deb12)
  chos        qsub -sync y -l chos=deb13 -b y /bin/true on the envsched site

and the submission alone (qsub -h, then qdel), which is what the JSVs cost:

  submit-plain / submit-chos / submit-server (the server JSV alone: render --no-client-jsv) /
  submit-server-none (the same without -l chos)

and the root prolog alone, under the stand-in shepherd of test_uge_forged.py (a job directory of
the admin user's with execd's `config` and `environment`, `ENVSCHED_REQUEST=deb13`), warm:

  prolog-c     the rendered prolog line: uge-prolog, served by the decision cache (no Python)
  prolog-py    the Python prolog alone (what every job ran before #13)

Prints medians, ratios to plain and the JSV's own verify time. BENCH_ROUNDS (default 20).
"""
from __future__ import annotations

import os
import re
import statistics
import time
from typing import List

import pytest
from test_uge_forged import Spool, helpers  # noqa: F401  (helpers: the stand-in shepherd, a fixture)
from testlib import interleaved
from ugesite import envsched_cmd, render_section

pytestmark = pytest.mark.uge
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))


def _sync(c, user, *args) -> float:
    t0 = time.monotonic()
    p = c.run(["qsub", "-sync", "y", "-o", "/dev/null", "-j", "y", *args, "-b", "y", "/bin/true"], user=user,
              timeout=120)
    dt = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    return dt


def _submit(c, user, *args) -> float:
    t0 = time.monotonic()
    job = c.qsub(None, *args, "-h", "-b", "y", "-N", "bench", "/bin/true", user=user)   # -clear first
    dt = time.monotonic() - t0
    c.run(["qdel", job])
    return dt


def test_bench(uge_cluster, uge_site, uge_user):
    plain, site, user = uge_cluster, uge_site.cluster, uge_user.pw_name
    cases = {
        "plain": lambda: _sync(plain, user),
        "default": lambda: _sync(site, user),
        "chos": lambda: _sync(site, user, "-l", "chos=deb13"),
        "submit-plain": lambda: _submit(plain, user),
        "submit-chos": lambda: _submit(site, user, "-l", "chos=deb13"),
        # render --no-client-jsv: the server JSV alone (-clear drops the cell's sge_request), with
        # and without a request (the server JSV runs for every submission)
        "submit-server": lambda: _submit(site, user, "-clear", "-l", "chos=deb13"),
        "submit-server-none": lambda: _submit(site, user, "-clear"),
    }
    times = interleaved(cases, ROUNDS)      # after a warm-up round: JSV processes started, page cache
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nGrid Engine turnaround, medians of {ROUNDS} interleaved rounds (qsub -sync y, binary /bin/true):")
    for k in ("plain", "default", "chos"):
        q = statistics.quantiles(times[k], n=4)
        mean = statistics.mean(times[k])
        print(f"  {k:<8} median {1000 * med[k]:7.1f} ms (IQR {1000 * q[0]:.0f}-{1000 * q[2]:.0f})  "
              f"ratio {med[k] / med['plain']:.3f}   mean {1000 * mean:7.1f} ms  ratio "
              f"{mean / statistics.mean(times['plain']):.3f}")
    print("  (turnaround moves in steps of the scheduler interval, 1 s here: the median hides costs below "
          "it, the mean shows them)")
    print("Submission alone (qsub -h; client + server JSV on the site):")
    for k in ("submit-plain", "submit-chos", "submit-server", "submit-server-none"):
        print(f"  {k:<13} {1000 * med[k]:7.1f} ms  x{med[k] / med['submit-plain']:.3f}")
    print(f"  JSV cost per submission: {1000 * (med['submit-chos'] - med['submit-plain']):+.1f} ms (client + server), "
          f"{1000 * (med['submit-server'] - med['submit-plain']):+.1f} ms (server alone: --no-client-jsv)")
    log = uge_site.log.read_text()
    took = [float(m) for m in re.findall(r"verify took ([0-9.]+) ms", log)]
    print(f"  JSV verify itself (in-process, per job and side): median {statistics.median(took):.2f} ms "
          f"over {len(took)}")


def _pct(v: List[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def test_bench_prolog(uge_site, helpers, uge_user):  # noqa: F811
    """The root prolog per job, warm: C (the decision cache) against the Python prolog."""
    import shutil
    import subprocess
    original = uge_site.policy.read_text()
    uge_site.policy.write_text(original.replace("view_hold = 0\n", "view_hold = 600\n", 1))
    spool = Spool(uge_site, helpers, uge_user)
    key = f"uge-{spool.job}.1"
    (spool.dir / "environment").write_text(f"JOB_ID={spool.job}\nQUEUE=all.q\nENVSCHED_REQUEST=deb13\n")
    line = next(ln for ln in render_section(uge_site.rendered, "queue") if ln.startswith("prolog "))
    c_argv = line.split(None, 1)[1].split("@", 1)[1].split()
    cases = {"prolog-c": c_argv, "prolog-py": c_argv[1:]}

    def run(argv) -> float:
        t0 = time.monotonic()
        p = spool.shepherd(True, argv)
        dt = time.monotonic() - t0
        assert p.returncode == 0 and (uge_site.run_dir / key / "shim").exists(), (p.stdout, p.stderr)
        r = subprocess.run([envsched_cmd(), "--policy", str(uge_site.policy), "release", "--key", key],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert r.returncode == 0, r.stderr
        return dt

    try:
        times = interleaved({k: (lambda argv=argv: run(argv)) for k, argv in cases.items()}, max(ROUNDS, 20), 3)
    finally:
        uge_site.policy.write_text(original)
        subprocess.run([envsched_cmd(), "--policy", str(uge_site.policy), "gc", "--idle-views"],
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(spool.root)
    hits = sum(ln.endswith("by=cache") and f"job={spool.job}.1 " in ln
               for ln in uge_site.admin_log.read_text().splitlines())
    print(f"\nGrid Engine root prolog per job, warm, under the stand-in shepherd ({len(times['prolog-c'])} "
          "interleaved rounds; median [p10 p90]):")
    for k, v in times.items():
        print(f"  {k:<10} {1000 * statistics.median(v):7.2f} ms [{1000 * _pct(v, 0.1):.2f} {1000 * _pct(v, 0.9):.2f}]")
    print(f"  C prolog runs served by the decision cache: {hits}")
