"""libFuzzer on the C parsers that see hostile bytes (harnesses in tests/fuzz/c, one per target):
each run replays the committed corpus (tests/fuzz/corpus/<target>: hand-written seeds, inputs found
before, crash inputs) and then fuzzes for ENVSCHED_FUZZ_SECONDS (5 in CI, `make fuzz`: 300). A
crash, a sanitizer report (AddressSanitizer, UndefinedBehaviorSanitizer, LeakSanitizer), a failed
invariant of a harness or an input running past 5 s fails the target's test.

Without clang and its libFuzzer runtime (scripts/install-deps.sh installs both) the tests fail as
root, where CI runs, and are skipped for other users.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Dict

import pytest

import fuzzlib


@pytest.fixture(scope="module")
def c_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Dict[str, "Future[fuzzlib.CRun]"]:
    problem = fuzzlib.clang_problem()
    if problem:
        message = f"cannot build the libFuzzer harnesses: {problem} (scripts/install-deps.sh installs clang)"
        if os.geteuid() == 0:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    built = fuzzlib.build()
    if built.returncode != 0:
        pytest.fail("make -C tests/fuzz/c failed:\n" + built.stdout[-6000:], pytrace=False)
    # the selected targets start now, one core each, and each test waits for its own
    selected = [item.callspec.params["target"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_libfuzzer" and hasattr(item, "callspec")]
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(selected), os.cpu_count() or 1)))
    runs = {t: pool.submit(fuzzlib.run_target, t, fuzzlib.C_SECONDS, tmp_path_factory.mktemp(f"fuzz-{t}"))
            for t in selected}
    yield runs
    pool.shutdown(wait=True)


@pytest.mark.parametrize("target", fuzzlib.TARGETS)
def test_libfuzzer(target: str, c_runs) -> None:
    run = c_runs[target].result()
    note = f"{fuzzlib.C_SECONDS} s" + (f", {run.found} new corpus inputs" if fuzzlib.MERGE else "")
    fuzzlib.RESULTS.append(fuzzlib.Result(target, "libFuzzer", run.executions, run.seconds, note))
    assert run.ok, run.report()
    assert run.executions > 0, run.report()
