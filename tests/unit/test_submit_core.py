"""envsched.submit without a batch system: the preload re-exec decision, what loading DRMAA says
when it fails, and the DRMAA session's waiting and result mapping with a fake `drmaa` module."""
from __future__ import annotations

import builtins
import os
import sys
import time
import types
from pathlib import Path
from typing import Any, List

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from envsched.exitcodes import ExitCode
from envsched.submit import DrmaaUnavailable, WaitFailed, load_drmaa
from envsched.submit.core import WAIT_SLICE, DrmaaSession
from envsched.submit.preload import MARKER, reexec_env, restore_env
from envsched.submit.uge import UgeScheduler

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


# ---------------------------------------------------------------- the preload re-exec decision
def test_reexec_when_library_missing_from_ld_preload() -> None:
    env = reexec_env([JEMALLOC], {"PATH": "/bin"}) if os.path.exists(JEMALLOC) else None
    if env is None:
        pytest.skip("libjemalloc2 not installed here")
    assert env["LD_PRELOAD"] == JEMALLOC and env[MARKER] == "" and env["PATH"] == "/bin"
    env = reexec_env([JEMALLOC], {"LD_PRELOAD": "/lib/a.so:/lib/b.so"})
    assert env["LD_PRELOAD"] == f"{JEMALLOC} /lib/a.so /lib/b.so" and env[MARKER] == "/lib/a.so:/lib/b.so"


def test_no_reexec_when_preloaded_marked_or_absent(tmp_path: Path) -> None:
    lib = tmp_path / "libx.so"
    lib.write_text("")
    assert reexec_env([str(lib)], {"LD_PRELOAD": f"/lib/a.so:{lib}"}) is None
    assert reexec_env([str(lib)], {"LD_PRELOAD": f"{lib} /lib/a.so"}) is None
    assert reexec_env([str(lib)], {MARKER: ""}) is None                 # the loop guard
    assert reexec_env([str(tmp_path / "absent.so")], {}) is None        # not on this host: nothing helps
    assert reexec_env([], {}) is None


def test_restore_env_gives_children_the_callers_ld_preload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", f"{JEMALLOC} /lib/a.so")
    monkeypatch.setenv(MARKER, "/lib/a.so")
    restore_env()
    assert os.environ["LD_PRELOAD"] == "/lib/a.so" and MARKER not in os.environ
    monkeypatch.setenv("LD_PRELOAD", JEMALLOC)
    monkeypatch.setenv(MARKER, "")
    restore_env()
    assert "LD_PRELOAD" not in os.environ


# ---------------------------------------------------------------- loading DRMAA
def failing_import(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "drmaa":
            raise error
        return real(name, *args, **kwargs)
    monkeypatch.delitem(sys.modules, "drmaa", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake)


def test_static_tls_failure_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("SGE_ROOT", "SGE_CELL", "DRMAA_LIBRARY_PATH"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SGE_CELL", "mycell")
    failing_import(monkeypatch, OSError("/lib/x86_64-linux-gnu/libjemalloc.so.2: cannot allocate memory "
                                        "in static TLS block"))
    with pytest.raises(DrmaaUnavailable) as info:
        load_drmaa(UgeScheduler())
    msg = info.value.message
    assert msg.startswith("submit: loading the DRMAA library /usr/lib/gridengine-drmaa/lib/libdrmaa.so.1.0 "
                          "failed (")
    assert f"set LD_PRELOAD={JEMALLOC} in the environment before Python starts" in msg
    assert info.value.code == ExitCode.SCHEDULER_FAILED and "static TLS" in info.value.detail
    assert os.environ["SGE_ROOT"] == "/var/lib/gridengine"     # defaults fill only what is unset
    assert os.environ["SGE_CELL"] == "mycell"


def test_missing_package_and_library(monkeypatch: pytest.MonkeyPatch) -> None:
    failing_import(monkeypatch, ModuleNotFoundError("No module named 'drmaa'", name="drmaa"))
    with pytest.raises(DrmaaUnavailable, match=r"package drmaa is not installed \(pip install 'envsched\[drmaa\]'\)"):
        load_drmaa(UgeScheduler())
    failing_import(monkeypatch, OSError("libdrmaa.so.1.0: cannot open shared object file"))
    with pytest.raises(DrmaaUnavailable, match="cannot load the DRMAA library .*: install it or set DRMAA_LIB"):
        load_drmaa(UgeScheduler())


# ---------------------------------------------------------------- waiting, with a fake drmaa module
class FakeDrmaaException(Exception):
    pass


class FakeTimeout(FakeDrmaaException):
    pass


def fake_info(**kw: Any) -> types.SimpleNamespace:
    base = dict(jobId="12", hasExited=False, hasSignal=False, terminatedSignal="", hasCoreDump=False,
                wasAborted=False, exitStatus=0, resourceUsage={})
    base.update(kw)
    return types.SimpleNamespace(**base)


class FakeSession:
    def __init__(self, outcomes: List[Any]) -> None:
        self.outcomes = outcomes
        self.timeouts: List[int] = []

    def wait(self, job_id: str, timeout: int) -> Any:
        self.timeouts.append(timeout)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, FakeTimeout):
            time.sleep(min(timeout, 0.3))             # the real one blocks up to `timeout` seconds
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def session_with(outcomes: List[Any]) -> DrmaaSession:
    d = object.__new__(DrmaaSession)
    d.scheduler = UgeScheduler()
    d.drmaa = types.SimpleNamespace(errors=types.SimpleNamespace(
        DrmaaException=FakeDrmaaException, ExitTimeoutException=FakeTimeout))
    d.session = FakeSession(outcomes)
    return d


def test_wait_in_slices_until_the_job_ends() -> None:
    d = session_with([FakeTimeout("code 23: timeout"), fake_info(hasExited=True, exitStatus=3)])
    r = d.wait("12", "deb13")
    assert (r.finished, r.exited, r.exit_status, r.exit_code) == (True, True, 3, 3)
    assert d.session.timeouts == [WAIT_SLICE] * 2


def test_wait_timeout() -> None:
    d = session_with([FakeTimeout("code 23")] * 5)
    with pytest.raises(WaitFailed, match=r"^submit: job 12 still not finished after 0.5 s$"):
        d.wait("12", "deb13", timeout=0.5)
    assert d.session.timeouts[0] == 1                 # rounded up, never 0 (= do not wait at all)


def test_no_usage_data_means_it_never_ran() -> None:
    d = session_with([Exception("code 24: no usage information was returned for the completed job")])
    r = d.wait("12", "deb13")
    assert (r.aborted, r.exit_code) == (True, ExitCode.JOB_ABORTED)
    d = session_with([Exception("code 99: something else")])
    with pytest.raises(WaitFailed, match=r"^submit: waiting for job 12 failed: something else$"):
        d.wait("12", "deb13")


@pytest.mark.parametrize("info, signal, code", [
    (fake_info(hasSignal=True, terminatedSignal="SIGKILL"), 9, 137),
    (fake_info(hasSignal=True, terminatedSignal="SIGNOSUCH", resourceUsage={"signal": "15.0000"}), 15, 143),
    (fake_info(wasAborted=True), None, 75),
    (fake_info(), None, 76),
])
def test_result_mapping(info: Any, signal: Any, code: int) -> None:
    r = session_with([info]).wait("12", "deb13")
    assert (r.signal, r.exit_code) == (signal, code)


def test_run_fills_the_template_and_a_process_may_submit_again(tmp_path: Path) -> None:
    from envsched.submit import make_request
    job = tmp_path / "job.sh"
    job.write_text("#!/bin/sh\n")
    job.chmod(0o755)
    d = session_with([])
    templates: List[Any] = []
    deleted: List[Any] = []
    d.session.createJobTemplate = lambda: templates.append(types.SimpleNamespace()) or templates[-1]
    d.session.deleteJobTemplate = deleted.append
    ids = iter(["41", "42"])
    d.session.runJob = lambda jt: next(ids)
    req = make_request(str(job), ["a b", "$HOME"], "deb13")
    assert (d.run(req), d.run(req)) == ("41", "42")     # no limit of one job per process
    assert templates[0].nativeSpecification == "-l chos=deb13 -N job.sh"
    assert (templates[0].remoteCommand, templates[0].workingDirectory) == (str(job), os.getcwd())
    assert templates[1].args == ["a b", "$HOME"]
    assert deleted == templates
