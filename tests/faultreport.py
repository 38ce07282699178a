"""The fault and soak report (#15): every case of the fault suite and every soak records one row, and
the session ends with one table: what ran, which faults were injected, how many jobs ran in the
wrong environment (must be 0), what was left after `envsched gc` (must be 0), and the wall time.

    def test_something(fault_report):
        with fault_report.case("slurmd restarted, jobs running", "slurm") as row:
            row.faults["slurmd kill -9 + restart"] += 1
            ...
            row.jobs += 1            # every job the case submitted
            row.wrong_env += bad     # jobs that ran, but not in the environment the policy gives
            row.leftovers = n        # mounts, pins, records, loop devices, FUSE mounts, processes

A row is added whether the case passed or not (a failed case shows `FAILED`); the assertions stay in
the test. `ENVSCHED_FAULT_REPORT=FILE` also writes the rows as JSON lines to FILE (appended).
Loaded by tests/conftest.py (`pytest_plugins`).
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, List

import pytest


@dataclass
class Row:
    case: str
    scheduler: str
    jobs: int = 0
    faults: Counter = field(default_factory=Counter)
    wrong_env: int = 0
    leftovers: int = 0
    seconds: float = 0.0
    outcome: str = "passed"

    def as_json(self) -> dict:
        return {"case": self.case, "scheduler": self.scheduler, "jobs": self.jobs, "faults": dict(self.faults),
                "wrong_env": self.wrong_env, "leftovers": self.leftovers, "seconds": round(self.seconds, 1),
                "outcome": self.outcome}


class FaultReport:
    def __init__(self) -> None:
        self.rows: List[Row] = []

    @contextmanager
    def case(self, name: str, scheduler: str) -> Iterator[Row]:
        row = Row(name, scheduler)
        t0 = time.monotonic()
        try:
            yield row
        except BaseException:
            row.outcome = "FAILED"
            raise
        finally:
            row.seconds = row.seconds or time.monotonic() - t0   # a case may set its own (the soak's)
            self.rows.append(row)
            out = os.environ.get("ENVSCHED_FAULT_REPORT")
            if out:
                with open(out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row.as_json()) + "\n")

    def table(self) -> List[str]:
        head = ("case", "sched", "jobs", "faults injected", "wrong env", "left after gc", "wall s", "result")
        body = []
        for r in self.rows:
            faults = ", ".join(f"{k} x{v}" for k, v in sorted(r.faults.items())) or "-"
            body.append((r.case, r.scheduler, str(r.jobs), faults, str(r.wrong_env), str(r.leftovers),
                         f"{r.seconds:.1f}", r.outcome))
        total_faults = sum(sum(r.faults.values()) for r in self.rows)
        body.append(("total", "", str(sum(r.jobs for r in self.rows)), str(total_faults),
                     str(sum(r.wrong_env for r in self.rows)), str(sum(r.leftovers for r in self.rows)),
                     f"{sum(r.seconds for r in self.rows):.1f}",
                     "FAILED" if any(r.outcome != "passed" for r in self.rows) else "passed"))
        widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
        fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
        return [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(b) for b in body]


_REPORT = FaultReport()


@pytest.fixture(scope="session")
def fault_report() -> FaultReport:
    return _REPORT


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _REPORT.rows:
        terminalreporter.section("fault and soak report (#15)")
        for line in _REPORT.table():
            terminalreporter.write_line(line)
