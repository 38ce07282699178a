"""A half-written policy is never used (#15): policy/load.py reads a policy changed less than
SETTLE_NS ago again once it has settled, and uses it only when the second read finds the same
file and text; a file that keeps changing is not used at all (fail closed, exit 78)."""
from __future__ import annotations

import os
import threading
import time

import pytest

from envsched.errors import PolicyError
from envsched.policy import load

A = '[site]\ndefault = "deb12"\n\n[environments.deb12]\npath = "/os/deb12"\n\n[environments.secret]\n' \
    'path = "/os/secret"\nallow_users = ["root"]\n'
B = A.replace("/os/deb12", "/os/deb12-new")


def count_reads(monkeypatch):
    calls = []
    real = load._read_small_file

    def counted(path, limit):
        calls.append(path)
        return real(path, limit)
    monkeypatch.setattr(load, "_read_small_file", counted)
    return calls


def test_a_policy_changed_long_ago_is_read_once(tmp_path, monkeypatch):
    policy = tmp_path / "policy.toml"
    policy.write_text(A)
    time.sleep(load.SETTLE_NS / 1e9 + 0.02)
    calls = count_reads(monkeypatch)
    assert load.read_policy_text(str(policy)) == A
    assert len(calls) == 1


def test_a_policy_changed_just_now_is_read_again_and_taken_when_unchanged(tmp_path, monkeypatch):
    policy = tmp_path / "policy.toml"
    policy.write_text(A)
    calls = count_reads(monkeypatch)
    start = time.monotonic()
    assert load.read_policy_text(str(policy)) == A
    assert len(calls) == 2
    assert time.monotonic() - start >= load.SETTLE_NS / 1e9 * 0.5


def _truncating_writer(path, stop, pause_between):
    """Rewrites `path` in place, as `cat A > path` would in two writes: truncate, a first part,
    a pause, the rest; alternating A and B."""
    texts = (A.encode(), B.encode())
    i = 0
    while not stop.is_set():
        text = texts[i % 2]
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, text[:len(text) // 2])           # ends before `allow_users`: a policy on its own
            time.sleep(0.02)
            os.write(fd, text[len(text) // 2:])
        finally:
            os.close(fd)
        i += 1
        time.sleep(pause_between())


def test_a_truncating_writer_never_gives_a_prefix(tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(A)
    assert "allow_users" not in A[:len(A) // 2]            # the half is a policy that opens `secret`
    stop = threading.Event()
    import random
    rng = random.Random(1)
    writer = threading.Thread(target=_truncating_writer,
                              args=(str(policy), stop, lambda: rng.choice((0.0, 0.01, 0.3))))
    writer.start()
    seen, refused = [], 0
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                seen.append(load.read_policy_text(str(policy)))
            except PolicyError as e:
                assert "still being written" in e.message
                refused += 1
    finally:
        stop.set()
        writer.join()
    assert seen, "never read while the writer paused"
    assert set(seen) <= {A, B}, [t for t in seen if t not in (A, B)][:1]


def test_a_policy_that_keeps_changing_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "SETTLE_TRIES", 3)
    policy = tmp_path / "policy.toml"
    policy.write_text(A)
    stop = threading.Event()
    writer = threading.Thread(target=_truncating_writer, args=(str(policy), stop, lambda: 0.0))
    writer.start()
    try:
        with pytest.raises(PolicyError, match="still being written"):
            load.read_policy_text(str(policy))
    finally:
        stop.set()
        writer.join()
