"""Shared by the fuzz tests: the budget (CI smoke or `make fuzz`), the hang guard, the executions
count every target reports, and the libFuzzer build/run of tests/fuzz/c.

Budget, from the environment (`make fuzz` sets both):
  ENVSCHED_FUZZ_PROFILE   hypothesis profile: `ci` (default, a few hundred examples per target)
                          or `long` (ENVSCHED_FUZZ_EXAMPLES, default 10000, per target)
  ENVSCHED_FUZZ_SECONDS   seconds per C target (default 5)
  ENVSCHED_FUZZ_MERGE=1   keep what a C run found: new inputs that add coverage are merged into
                          tests/fuzz/corpus/<target>/, crash inputs copied there (to commit)
"""
from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

HERE = Path(__file__).resolve().parent
C_DIR = HERE / "c"
BUILD = C_DIR / "build"
CORPUS = HERE / "corpus"

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(HERE / ".hypothesis")      # its caches; not the repository's top (.gitignore)

PROFILE = os.environ.get("ENVSCHED_FUZZ_PROFILE", "ci")
C_SECONDS = int(os.environ.get("ENVSCHED_FUZZ_SECONDS", "5"))
MERGE = os.environ.get("ENVSCHED_FUZZ_MERGE") == "1"
EXAMPLE_SECONDS = 10          # one example running longer than this is a hang

_common = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                      HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("ci", max_examples=int(os.environ.get("ENVSCHED_FUZZ_EXAMPLES", "300")), **_common)
settings.register_profile("long", max_examples=int(os.environ.get("ENVSCHED_FUZZ_EXAMPLES", "10000")), **_common)
#: the decorator every hypothesis target wears: @FUZZ (a factor scales a target's examples)
FUZZ = settings.get_profile(PROFILE)


def fuzz(factor: float = 1.0) -> settings:
    return settings(FUZZ, max_examples=max(1, int(FUZZ.max_examples * factor)))


# ------------------------------------------------------------------------------ results
@dataclass
class Result:
    target: str
    engine: str                  # "hypothesis" or "libFuzzer"
    executions: int
    seconds: float
    note: str = ""


RESULTS: List[Result] = []


class Counter:
    """Counts the examples a hypothesis target ran; recorded when the test ends."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.n = 0
        self.start = time.monotonic()

    def hit(self) -> None:
        self.n += 1


class Hang(Exception):
    pass


@contextlib.contextmanager
def bounded(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    """One example: a hang (an endless loop, a regular expression backtracking for ever) fails it."""
    def alarm(signum, frame):
        raise Hang(f"an example ran longer than {seconds} s: a hang")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------------------ libFuzzer
TARGETS = ("envop", "uge_conf", "spank_config", "pam_conf", "shim", "torque_cgroup", "slurm_jobrec", "launch",
           "uge_spool")
MAX_LEN = {"uge_conf": 8192, "shim": 16382}        # inputs past a parser's own limits too


CC = os.environ.get("ENVSCHED_FUZZ_CC", "clang")      # e.g. clang-15 where several are installed


def clang_problem() -> Optional[str]:
    """Why the harnesses cannot be built here (None: they can): clang with libFuzzer is missing."""
    if shutil.which(CC) is None:
        return f"{CC} is not installed"
    BUILD.mkdir(parents=True, exist_ok=True)
    probe = BUILD / "probe.c"
    probe.write_text("#include <stddef.h>\n#include <stdint.h>\n"
                     "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
    p = subprocess.run([CC, "-fsanitize=fuzzer,address,undefined", "-o", str(BUILD / "probe"), str(probe)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        return f"{CC} cannot link -fsanitize=fuzzer,address,undefined (libFuzzer runtime missing?):\n" + p.stdout[-2000:]
    return None


def build() -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(C_DIR), f"-j{os.cpu_count() or 1}", f"CC={CC}"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


@dataclass
class CRun:
    target: str
    returncode: int
    executions: int
    seconds: float
    output: str
    crashes: List[Path] = field(default_factory=list)
    found: int = 0                       # inputs merged into the committed corpus (MERGE)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.crashes

    def report(self) -> str:
        lines = [f"{self.target}: libFuzzer exit {self.returncode}, {self.executions} executions"]
        for c in self.crashes:
            data = c.read_bytes()
            lines.append(f"  {c.name} ({len(data)} bytes), base64: {base64.b64encode(data[:4096]).decode()}")
        lines.append(self.output[-6000:])
        return "\n".join(lines)


def run_target(target: str, seconds: int, workdir: Path, timeout: int = 5) -> CRun:
    """Fuzz one harness: the committed corpus is replayed first (regressions), then `seconds` of
    new inputs, written to workdir (never to the committed corpus)."""
    seeds = CORPUS / target
    found = workdir / "corpus"
    artifacts = workdir / "artifacts"
    for d in (found, artifacts):
        d.mkdir(parents=True, exist_ok=True)
    cmd = [str(BUILD / target), f"-max_total_time={seconds}", f"-timeout={timeout}", "-print_final_stats=1",
           f"-max_len={MAX_LEN.get(target, 4096)}", f"-artifact_prefix={artifacts}/", "-rss_limit_mb=2048",
           str(found), str(seeds)]
    t0 = time.monotonic()
    # scratch space for a harness that must hand its input over as a file (uge_conf): memory, not disk
    scratch = tempfile.mkdtemp(prefix="envsched-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1", ES_FUZZ_DIR=scratch)
    try:
        p = subprocess.run(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                           timeout=seconds + 120)
        out, rc = p.stdout.decode("utf-8", "replace"), p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode("utf-8", "replace") + "\n(libFuzzer itself hung)", -1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.monotonic() - t0
    m = re.findall(r"stat::number_of_executed_units:\s*(\d+)", out)
    run = CRun(target, rc, int(m[-1]) if m else 0, elapsed, out, sorted(artifacts.iterdir()))
    if MERGE:
        for c in run.crashes:                    # kept as regression inputs (they fail until fixed)
            shutil.copy(c, seeds / c.name)
        if any(found.iterdir()):
            before = len(list(seeds.iterdir()))
            subprocess.run([str(BUILD / target), "-merge=1", f"-max_len={MAX_LEN.get(target, 4096)}",
                            f"-artifact_prefix={artifacts}/", str(seeds), str(found)],
                           cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            run.found = len(list(seeds.iterdir())) - before
    return run
