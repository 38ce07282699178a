"""Prepare-and-pin, join, release and gc, for real."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from testlib import TEST_USER, mount_table

pytestmark = pytest.mark.ns


def _prepare(envsched_cmd, policy, key, *extra):
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", key, "--user", TEST_USER, *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_prepare_join_release_leaves_nothing(site_dir, envsched_cmd, test_user, home):
    policy = site_dir.policy()
    before = mount_table()
    meta = _prepare(envsched_cmd, policy, "job-1", "--request", "deb13", "--owner-pid", str(os.getpid()))
    assert meta["environment"] == "deb13" and meta["uid"] == test_user.pw_uid
    pin = site_dir.run_dir / "job-1"
    assert oct(pin.stat().st_mode & 0o777) == "0o700"
    assert len(mount_table()) == len(before) + 1          # exactly one host mount: the pin
    outputs = set()
    for _ in range(3):                                      # many tasks join the same view
        r = envsched_cmd("--policy", str(policy), "join", "--key", "job-1", "--cwd", str(home), "--",
                         "sh", "-c", "head -1 /etc/os-release; echo $CHOS; pwd; id -u; readlink /proc/self/ns/mnt")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[:4] == ['PRETTY_NAME="debian 13 (mini)"', "deb13", str(home), str(test_user.pw_uid)]
        outputs.add(lines[4])
    assert len(outputs) == 1                                # the same mount namespace every time
    assert outputs != {os.readlink("/proc/self/ns/mnt")}
    r = envsched_cmd("--policy", str(policy), "release", "--key", "job-1")
    assert r.returncode == 0, r.stderr
    assert not pin.exists()
    assert mount_table() == before


def test_join_refuses_other_user(site_dir, envsched_cmd, home):
    policy = site_dir.policy()
    _prepare(envsched_cmd, policy, "job-2", "--owner-pid", str(os.getpid()))
    try:
        r = envsched_cmd("--policy", str(policy), "join", "--key", "job-2", "--user", "root", "--", "id")
        assert r.returncode == 73
        assert r.stderr.strip() == f"envsched: pin job-2 was prepared for {TEST_USER}, not root"
        assert r.stdout == ""
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", "job-2")


def test_join_unknown_pin_fails_closed(site_dir, envsched_cmd, home):
    policy = site_dir.policy()
    r = envsched_cmd("--policy", str(policy), "join", "--key", "nope", "--user", TEST_USER, "--", "id")
    assert r.returncode == 71
    assert "no pin nope on this node" in r.stderr


def test_prepare_twice_same_key_refused(site_dir, envsched_cmd, home):
    policy = site_dir.policy()
    _prepare(envsched_cmd, policy, "job-3", "--owner-pid", str(os.getpid()))
    try:
        r = envsched_cmd("--policy", str(policy), "prepare", "--key", "job-3", "--user", TEST_USER)
        assert r.returncode == 64
        assert "exists already" in r.stderr
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", "job-3")


def test_prepare_failure_leaves_no_pin(site_dir, envsched_cmd, home):
    policy = site_dir.policy(site='shared = [{ path = "/no/such/site/fs", required = true }]')
    before = mount_table()
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", "job-4", "--user", TEST_USER)
    assert r.returncode == 71
    assert "required path /no/such/site/fs is not available on this host" in r.stderr
    assert not (site_dir.run_dir / "job-4").exists()
    assert mount_table() == before


def test_gc_releases_pin_after_owner_killed(site_dir, envsched_cmd, home):
    policy = site_dir.policy()
    before = mount_table()
    owner = subprocess.Popen(["sleep", "600"])
    survivor = subprocess.Popen(["sleep", "600"])
    try:
        _prepare(envsched_cmd, policy, "job-dead", "--owner-pid", str(owner.pid))
        _prepare(envsched_cmd, policy, "job-alive", "--owner-pid", str(survivor.pid))
        r = envsched_cmd("--policy", str(policy), "gc")
        assert r.returncode == 0 and r.stdout == ""            # both owners alive: nothing to do
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        r = envsched_cmd("--policy", str(policy), "gc")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["released job-dead"]
        assert not (site_dir.run_dir / "job-dead").exists()
        assert (site_dir.run_dir / "job-alive").exists()
    finally:
        survivor.kill()
        survivor.wait()
        owner.kill()
        envsched_cmd("--policy", str(policy), "gc")
    assert mount_table() == before


def test_pinned_view_outlives_preparer_and_runs_joined_tasks_concurrently(site_dir, envsched_cmd, home):
    policy = site_dir.policy()
    _prepare(envsched_cmd, policy, "job-5", "--request", "deb12", "--owner-pid", str(os.getpid()))
    try:
        procs = [subprocess.Popen(
            [sys.executable, "-m", "envsched.cli.envsched", "--policy", str(policy),
             "join", "--key", "job-5", "--", "sh", "-c", "sleep 0.2; head -1 /etc/os-release"],
            stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": os.environ.get("PYTHONPATH", ""),
                                                    "PATH": "/usr/bin:/bin"}) for _ in range(4)]
        outs = [p.communicate(timeout=30)[0] for p in procs]
        assert all(o.strip() == 'PRETTY_NAME="debian 12 (mini)"' for o in outs), outs
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", "job-5")


def test_pins_work_where_mounts_are_shared(site_dir, envsched_cmd, home):
    """On systemd hosts "/" is a shared mount, where binding a namespace file fails with EINVAL.
    Here a directory of the host's own mount namespace is made a shared mount and holds run_dir.
    (Not done in a namespace of its own: pinning from a non-initial mount namespace fails now and
    then on this kernel, whose namespace ids are not ordered by creation across CPUs.)"""
    shared = site_dir.root / "shared-mount"
    run_dir = shared / "run"
    shared.mkdir(exist_ok=True)
    before = mount_table()
    subprocess.run(["mount", "--bind", str(shared), str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        policy = site_dir.policy(name="shared.toml")
        policy.write_text(policy.read_text().replace(f'run_dir = "{site_dir.run_dir}"', f'run_dir = "{run_dir}"'))
        r = envsched_cmd("--policy", str(policy), "prepare", "--key", "job-shared", "--user", TEST_USER,
                         "--request", "deb13", "--owner-pid", str(os.getpid()))
        assert r.returncode == 0, r.stderr
        with open("/proc/self/mountinfo") as f:
            run_mount = [line for line in f if line.split()[4] == str(run_dir)]
        assert len(run_mount) == 1 and "shared:" not in run_mount[0]     # made private for the pins
        r = envsched_cmd("--policy", str(policy), "join", "--key", "job-shared", "--", "head", "-1",
                         "/etc/os-release")
        assert r.stdout.strip() == 'PRETTY_NAME="debian 13 (mini)"', r.stderr
        envsched_cmd("--policy", str(policy), "release", "--key", "job-shared")
    finally:
        subprocess.run(["umount", "-R", "-l", str(shared)])
    assert mount_table() == before


def test_prepare_reuse_and_fallback_key_for_a_step_with_another_env(site_dir, envsched_cmd, home):
    policy = site_dir.policy(name="reuse.toml")
    before = mount_table()
    common = ("--policy", str(policy), "prepare", "--user", TEST_USER, "--owner-pid", str(os.getpid()),
              "--key", "job-9", "--fallback-key", "job-9.1", "--reuse", "--format", "shim")
    try:
        first = envsched_cmd(*common, "--request", "deb12")
        assert first.returncode == 0, first.stderr
        lines = first.stdout.splitlines()
        assert lines[:4] == ["environment deb12", "key job-9", f"pin {site_dir.run_dir}/job-9/mnt", "reused 0"]
        assert "env set CHOS deb12" in lines and lines[-1] == f"home {home}"
        again = envsched_cmd(*common, "--request", "deb12", "--cwd", "/")   # next step, same env
        assert again.stdout.splitlines()[:4] == ["environment deb12", "key job-9",
                                                  f"pin {site_dir.run_dir}/job-9/mnt", "reused 1"]
        other = envsched_cmd(*common, "--request", "deb13")                 # a step asking for another env
        assert other.stdout.splitlines()[:4] == ["environment deb13", "key job-9.1",
                                                  f"pin {site_dir.run_dir}/job-9.1/mnt", "reused 0"]
        assert len(mount_table()) == len(before) + 2
        local = envsched_cmd(*common, "--request", "local")
        assert local.stdout.splitlines()[:4] == ["environment local", "key -", "pin -", "reused 0"]
    finally:
        for key in ("job-9", "job-9.1"):
            envsched_cmd("--policy", str(policy), "release", "--key", key)
    assert mount_table() == before


def test_prepare_extra_bind_from_the_shim(site_dir, envsched_cmd, home):
    policy = site_dir.policy(name="bind.toml")
    spool = site_dir.root / "spool" / "job42"
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "slurm_script").write_text("#!/bin/sh\necho from-spool\n")
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", "job-42", "--user", TEST_USER,
                     "--owner-pid", str(os.getpid()), "--bind", f"{spool}")
    assert r.returncode == 0, r.stderr
    try:
        r = envsched_cmd("--policy", str(policy), "join", "--key", "job-42", "--", "sh", f"{spool}/slurm_script")
        assert r.stdout.strip() == "from-spool", r.stderr
    finally:
        envsched_cmd("--policy", str(policy), "release", "--key", "job-42")


def test_validate_for_submit_time(site_dir, envsched_cmd, home):
    policy = site_dir.policy(name="validate.toml")
    ok = envsched_cmd("--policy", str(policy), "validate", "--user", TEST_USER, "--request", "deb13", "--print",
                      user=TEST_USER)
    assert (ok.returncode, ok.stdout.strip(), ok.stderr) == (0, "deb13", "")
    bad = envsched_cmd("--policy", str(policy), "validate", "--user", TEST_USER, "--request", "sl5", user=TEST_USER)
    assert bad.returncode == 77
    assert bad.stderr.strip() == ("envsched: environment 'sl5' (option) refused: no such environment at this site; "
                                  "allowed for you: deb12, deb13, local")


def test_record_local_keeps_the_host_decision_without_a_view(site_dir, envsched_cmd, home, test_user):
    """--record-local: the host OS decided for a key is kept (a pin without `mnt`), so a shim that
    looks jobs up by key (the Grid Engine starter) can tell it from "never prepared"."""
    policy = site_dir.policy()
    before = mount_table()
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", "uge-5.1", "--user", TEST_USER,
                     "--request", "local", "--record-local", "--owner-pid", str(os.getpid()),
                     "--format", "shim", "--inputs=x")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:5] == ["environment local", "key uge-5.1", "pin -", "reused 0", f"uid {test_user.pw_uid}"]
    pin = site_dir.run_dir / "uge-5.1"
    assert sorted(p.name for p in pin.iterdir()) == ["inputs", "meta.json", "plan.json", "shim"]
    assert mount_table() == before                      # no view, no mount
    # asked again: reused, as a pin with a view would be
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", "uge-5.1", "--user", TEST_USER,
                     "--request", "local", "--record-local", "--reuse", "--owner-pid", str(os.getpid()))
    assert r.returncode == 0 and json.loads(r.stdout)["reused"] is True, r.stderr
    assert envsched_cmd("--policy", str(policy), "release", "--key", "uge-5.1").returncode == 0
    assert not pin.exists()


def test_prepare_gc_collects_pins_whose_owner_is_gone(site_dir, envsched_cmd, home):
    policy = site_dir.policy()
    owner = subprocess.Popen(["sleep", "60"])
    _prepare(envsched_cmd, policy, "uge-7.1", "--request", "deb13", "--owner-pid", str(owner.pid))
    owner.kill()
    owner.wait()
    meta = _prepare(envsched_cmd, policy, "uge-8.1", "--request", "deb13", "--owner-pid", str(os.getpid()), "--gc")
    assert meta["key"] == "uge-8.1"
    assert not (site_dir.run_dir / "uge-7.1").exists()           # collected by the --gc of the next prepare
    assert envsched_cmd("--policy", str(policy), "release", "--key", "uge-8.1").returncode == 0
