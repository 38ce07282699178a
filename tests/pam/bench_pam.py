"""PAM benchmark (not a test: `bash bench/pam.sh`, which runs this file with pytest to reuse the
private sshd of conftest.py; CI does not collect it, its name does not start with test_).

One sshd, its PAM service rewritten before each login (PAM reads it at every pam_start), the
cases interleaved and shuffled in each round, `ssh user true` timed from the client:

  plain     the service without pam_envsched
  warm      pam_envsched, ~/.chos = deb13, the decision cache and a warm shared view
            (view_hold = 600): open_session in C, close_session in C
  nocache   pam_envsched with cache=0: the resolver at open and at close (every login before #13)

Prints medians with p10/p90, the ratio to plain and the milliseconds added. BENCH_ROUNDS (30).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import time
from typing import Callable, List

import pytest

from pamlib import PAM_USER, RESOLVER, module_args, wait_no_pins
from testlib import interleaved

pytestmark = pytest.mark.pam
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))
PLAIN = "#%PAM-1.0\nauth required pam_permit.so\naccount required pam_permit.so\nsession required pam_permit.so\n"


def _quantile(v: List[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def test_bench(sshd, site_dir, pam_user, pam_home):
    policy = site_dir.policy(site="view_hold = 600")
    log = f"log_file={site_dir.root}/envsched.log"
    (pam_home / ".chos").write_text("deb13\n")
    os.chown(pam_home / ".chos", pam_user.pw_uid, pam_user.pw_gid)

    def login(service_text: Callable[[], None]) -> Callable[[], float]:
        def run() -> float:
            service_text()
            t0 = time.monotonic()
            r = sshd.ssh(PAM_USER, "true")
            dt = time.monotonic() - t0
            assert r.returncode == 0, (r.stdout, r.stderr)
            assert wait_no_pins(site_dir.run_dir) == []        # close_session done before the next
            return dt
        return run

    cases = {
        "plain": login(lambda: sshd.service.path.write_text(PLAIN)),
        "warm": login(lambda: sshd.service.write(module_args(policy, site_dir.run_dir, log))),
        "nocache": login(lambda: sshd.service.write(module_args(policy, site_dir.run_dir, log + " cache=0"))),
    }
    try:
        times = interleaved(cases, ROUNDS, 3)   # after 3 warm-up rounds: page cache, the shared view
    finally:
        subprocess.run([RESOLVER, "--policy", str(policy), "gc", "--idle-views"], stdout=subprocess.DEVNULL)
    base = statistics.median(times["plain"])
    print(f"\nssh {PAM_USER}@127.0.0.1 true, {ROUNDS} interleaved rounds after 3 warm-up rounds "
          f"(median [p10 p90], x plain, ms over plain):")
    for k in cases:
        v = times[k]
        m = statistics.median(v)
        print(f"  {k:<8} {1000 * m:7.1f} ms [{1000 * _quantile(v, 0.1):.1f} {1000 * _quantile(v, 0.9):.1f}]  "
              f"x{m / base:.3f}  {1000 * (m - base):+.1f} ms")
    lines = (site_dir.root / "envsched.log").read_text().splitlines()
    decided = [ln for ln in lines if "event=decided job=pam/" in ln]
    print(f"  target (#13): warm <= +5 ms over plain; decisions logged: {len(decided)}, of which from the cache "
          f"{sum(ln.endswith('by=cache') for ln in decided)} (the warm logins after the first)")
