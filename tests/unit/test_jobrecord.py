"""Job records (jobrecord.py): written by root hooks from the scheduler's own values, read back."""
from __future__ import annotations

import os
import shutil
import uuid

import pytest

from envsched import jobrecord
from envsched.errors import UsageError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="records are root's (CI runs as root)")


@needs_root
def test_write_read_remove():
    base = f"/run/envsched-jobrecord-{uuid.uuid4().hex[:8]}"          # not below /tmp: run_dir is root's alone
    run_dir = base + "/run"
    rec = jobrecord.JobRecord(1001, "alice", "batch", "proj")
    path = jobrecord.write(run_dir, "torque-12.srv", rec)
    assert open(path).read() == "uid 1001\nuser alice\nqueue batch\naccount proj\n"
    assert oct(os.stat(path).st_mode & 0o777) == "0o644" and oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    assert jobrecord.read(run_dir, "torque-12.srv") == rec
    jobrecord.write(run_dir, "torque-12.srv", jobrecord.JobRecord(1001, "alice", "gpu"))    # replaced
    assert jobrecord.read(run_dir, "torque-12.srv").queue == "gpu"
    assert jobrecord.remove(run_dir, "torque-12.srv") and not jobrecord.remove(run_dir, "torque-12.srv")
    assert jobrecord.read(run_dir, "torque-12.srv") is None
    assert os.listdir(os.path.dirname(path)) == []
    shutil.rmtree(base)


@pytest.mark.parametrize("queue", ["a\nuid 0", "a\rb", "q" * 256])
def test_values_are_one_short_line(tmp_path, queue):
    with pytest.raises(UsageError):
        jobrecord.write(str(tmp_path), "torque-1.srv", jobrecord.JobRecord(1, "u", queue))


@pytest.mark.parametrize("key", ["../x", ".jobs", "a/b", ""])
def test_keys_are_names(tmp_path, key):
    with pytest.raises(UsageError):
        jobrecord.write(str(tmp_path), key, jobrecord.JobRecord(1, "u"))
