"""Fuzz tests: the executions count of every target in the terminal summary (also with -q), and the
counter fixture the hypothesis targets use. Budget and profiles: fuzzlib.py."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import fuzzlib

REPO = Path(__file__).resolve().parents[2]
for p in (REPO / "src", REPO / "plugins" / "uge", REPO / "plugins" / "torque" / "torque"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


@pytest.fixture
def examples(request: pytest.FixtureRequest):
    """Counts a hypothesis target's examples (call .hit() in its body)."""
    name = request.node.name
    name = name[len("test_"):] if name.startswith("test_") else name
    counter = fuzzlib.Counter(name)
    yield counter
    fuzzlib.RESULTS.append(fuzzlib.Result(name, "hypothesis", counter.n, time.monotonic() - counter.start,
                                          f"profile {fuzzlib.PROFILE}"))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not fuzzlib.RESULTS:
        return
    tr = terminalreporter
    tr.section("fuzz: executions per parser")
    for r in fuzzlib.RESULTS:
        tr.write_line(f"{r.engine:10} {r.target:34} {r.executions:>10} executions  {r.seconds:7.1f} s"
                      f"{'  ' + r.note if r.note else ''}")
    parallel = any(r.engine == "libFuzzer" for r in fuzzlib.RESULTS)
    tr.write_line(f"{'':10} {'total':34} {sum(r.executions for r in fuzzlib.RESULTS):>10} executions"
                  + (f"  (libFuzzer targets run {os.cpu_count() or 1} at a time)" if parallel else ""))
