"""Portable submission (envsched.submit, `chos submit`) without a batch system: request checks, the
UGE native specification, the scheduler registry, results and exit codes, the command; the preload
re-exec and DRMAA itself are in test_submit_core.py. The real thing: tests/uge/test_uge_drmaa.py."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from envsched.cli import chos, submit_cmd
from envsched.errors import UsageError
from envsched.exitcodes import ExitCode
from envsched.submit import SCHEDULERS, SubmitResult, get_scheduler, make_request
from envsched.submit.core import drmaa_message
from envsched.submit.model import default_job_name
from envsched.submit.uge import UgeScheduler

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


@pytest.fixture
def script(tmp_path: Path) -> Path:
    p = tmp_path / "job.sh"
    p.write_text("#!/bin/sh\nexit 3\n")
    p.chmod(0o755)
    return p


# ---------------------------------------------------------------- registry and native specification
def test_registry_knows_uge() -> None:
    assert "uge" in SCHEDULERS
    assert isinstance(get_scheduler("uge"), UgeScheduler)


def test_unknown_scheduler_is_a_usage_error_listing_the_known() -> None:
    with pytest.raises(UsageError, match=r"^submit: unknown scheduler 'slurm'; known: uge$") as info:
        get_scheduler("slurm")
    assert info.value.code == ExitCode.USAGE


def test_uge_native_specification(script: Path) -> None:
    uge = UgeScheduler()
    r = make_request(str(script), [], "deb13")
    assert uge.native_specification(r) == ["-l", "chos=deb13", "-N", "job.sh"]
    r = make_request(str(script), [], "deb12", queue="legacy.q@node1", job_name="run-7")
    assert uge.native_specification(r) == ["-l", "chos=deb12", "-N", "run-7", "-q", "legacy.q@node1"]


def test_uge_library_defaults_and_preload() -> None:
    uge = UgeScheduler()
    assert uge.library_defaults() == {"SGE_ROOT": "/var/lib/gridengine", "SGE_CELL": "default",
                                      "DRMAA_LIBRARY_PATH": "/usr/lib/gridengine-drmaa/lib/libdrmaa.so.1.0"}
    assert uge.preload() == (JEMALLOC,)


@pytest.mark.parametrize("message, line", [
    ("code 17: envsched: environment 'sl5' (option) refused: restricted; allowed for you: deb12",
     "environment 'sl5' (option) refused: restricted; allowed for you: deb12"),
    ("envsched: environment 'x' (option) refused:\n no such environment",
     "environment 'x' (option) refused: no such environment"),
    ("Unable to run job: envsched: request the environment as a hard resource",
     "request the environment as a hard resource"),
    ("error: no suitable queues", None),
    ("envsched: internal error in the JSV: KeyError: 'x'", None),
])
def test_uge_recognises_the_jsv_refusal(message: str, line: str) -> None:
    assert UgeScheduler().refusal(message) == line


def test_drmaa_message_drops_the_code_prefix() -> None:
    assert drmaa_message(Exception("code 17: error: no suitable queues\n")) == "error: no suitable queues"
    assert drmaa_message(Exception("")) == "Exception"


# ---------------------------------------------------------------- request checks
@pytest.mark.parametrize("name", ["a/b", "", "-x", "deb 13", "../deb12", "x" * 65])
def test_bad_environment_name(script: Path, name: str) -> None:
    with pytest.raises(UsageError, match=r"is not a valid environment name \(1-64 characters"):
        make_request(str(script), [], name)


@pytest.mark.parametrize("kw, words", [
    ({"queue": "all.q -l h_rt=1"}, "queue 'all.q -l h_rt=1' is not valid"),
    ({"queue": "-q"}, "queue '-q' is not valid"),
    ({"job_name": "my job"}, "job name 'my job' is not valid"),
    ({"job_name": "a/b"}, "job name 'a/b' is not valid"),
    ({"job_name": "x" * 65}, "job name"),
])
def test_bad_queue_and_job_name(script: Path, kw: dict, words: str) -> None:
    with pytest.raises(UsageError, match="^submit: " + words.replace("(", r"\(")):
        make_request(str(script), [], "deb13", **kw)


def test_script_must_exist_be_regular_and_executable(tmp_path: Path, script: Path) -> None:
    with pytest.raises(UsageError, match=r"job-none.sh' does not exist$"):
        make_request(str(tmp_path / "job-none.sh"), [], "deb13")
    with pytest.raises(UsageError, match=r"is not a regular file$"):
        make_request(str(tmp_path), [], "deb13")
    script.chmod(0o644)
    with pytest.raises(UsageError) as info:             # root too: X_OK needs an x bit for everyone
        make_request(str(script), [], "deb13")
    assert info.value.message.endswith("job.sh' is not executable (the scheduler runs it directly: chmod +x it)")


def test_relative_paths_resolve_against_the_working_directory(tmp_path: Path, script: Path) -> None:
    r = make_request("job.sh", ["a b", "$HOME", "it's"], "deb13", working_dir=str(tmp_path), output="out/j.log")
    assert r.script == str(script)
    assert r.args == ("a b", "$HOME", "it's")                      # verbatim: DRMAA keeps them
    assert r.output == str(tmp_path / "out" / "j.log")
    assert r.working_dir == str(tmp_path)
    assert r.job_name == "job.sh"


def test_working_directory_must_exist(tmp_path: Path, script: Path) -> None:
    with pytest.raises(UsageError, match="is not a directory"):
        make_request(str(script), [], "deb13", working_dir=str(tmp_path / "nope"))


def test_nul_in_argument_refused(script: Path) -> None:
    with pytest.raises(UsageError, match="without NUL"):
        make_request(str(script), ["a\0b"], "deb13")


@pytest.mark.parametrize("path, name", [
    ("/x/job.sh", "job.sh"), ("/x/my job's.sh", "my_job_s.sh"), ("/x/.hidden", "job_.hidden"),
    ("/x/-dash", "job_-dash"), ("/x/" + "a" * 80, "a" * 64),
])
def test_default_job_name(path: str, name: str) -> None:
    assert default_job_name(path) == name


# ---------------------------------------------------------------- results and exit codes
def result(**kw) -> SubmitResult:
    return SubmitResult(job_id="12", scheduler="uge", env_name="deb13", **kw)


def test_exit_codes_and_lines() -> None:
    r = result(finished=True, exited=True, exit_status=3)
    assert (r.exit_code, r.describe()) == (3, "job 12 finished: exit status 3")
    r = result(finished=True, signal=9, signal_name="SIGKILL")
    assert r.exit_code == 137
    assert r.describe() == "job 12 finished: killed by signal 9 (SIGKILL), exit status 137"
    r = result(finished=True, aborted=True)
    assert r.exit_code == ExitCode.JOB_ABORTED == 75
    assert r.describe().startswith("job 12 aborted: it never ran")
    assert result(finished=True).exit_code == ExitCode.SCHEDULER_FAILED
    assert result().exit_code == 0 and result().describe() == "job 12 submitted"


# ---------------------------------------------------------------- the command
def failing_import(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    real = __import__

    def fake(name, *args, **kwargs):
        if name == "drmaa":
            raise error
        return real(name, *args, **kwargs)
    monkeypatch.delitem(sys.modules, "drmaa", raising=False)
    monkeypatch.setattr("builtins.__import__", fake)


def test_command_usage_errors_exit_64_before_any_drmaa(monkeypatch: pytest.MonkeyPatch, capsys, script: Path) -> None:
    failing_import(monkeypatch, AssertionError("drmaa must not be imported"))
    assert chos.main(["submit", "--env", "a/b", str(script)]) == ExitCode.USAGE
    assert capsys.readouterr().err == ("envsched: submit: 'a/b' is not a valid environment name (1-64 characters "
                                       "from A-Z a-z 0-9 . _ -, starting with a letter or digit)\n")
    assert chos.main(["submit", "--env", "deb13", "--scheduler", "pbs", str(script)]) == ExitCode.USAGE
    assert capsys.readouterr().err == "envsched: submit: unknown scheduler 'pbs'; known: uge\n"


@pytest.mark.parametrize("res, code, line", [
    (result(finished=True, exited=True, exit_status=3), 3, "envsched: job 12 finished: exit status 3\n"),
    (result(finished=True, signal=15, signal_name="SIGTERM"), 143,
     "envsched: job 12 finished: killed by signal 15 (SIGTERM), exit status 143\n"),
    (result(finished=True, aborted=True), 75, "envsched: job 12 aborted: it never ran (deleted, or it could "
                                              "not be started); if it was started, qacct -j 12 shows why\n"),
    (result(), 0, ""),
])
def test_command_reports_the_job(monkeypatch: pytest.MonkeyPatch, capsys, script: Path, res: SubmitResult,
                                 code: int, line: str) -> None:
    seen = {}

    def fake_submit(request, scheduler, wait, on_submitted):
        seen.update(request=request, wait=wait)
        on_submitted("12")
        return res
    monkeypatch.setattr(submit_cmd, "submit_request", fake_submit)
    argv = ["submit", "--env", "deb13", "-q", "all.q", "--name", "j1"] + ([] if res.finished else ["--no-wait"])
    assert chos.main(argv + ["--", str(script), "-x", "y z", "--env", "q"]) == code
    out = capsys.readouterr()
    assert (out.out, out.err) == ("12\n", line)
    r = seen["request"]
    assert (r.script, r.args, r.env_name, r.queue, r.job_name, seen["wait"]) == (
        str(script), ("-x", "y z", "--env", "q"), "deb13", "all.q", "j1", res.finished)
