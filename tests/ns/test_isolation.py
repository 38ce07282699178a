"""Isolation namespaces (#12): `namespaces = ["pid", "ipc", "uts"]` are made with the job's view,
pinned beside it, and every joiner enters them: the job sees only its own processes in a /proc of
its own, its own System V IPC and host name; two joins of one pin share them; release kills
whatever the job left running. Without the key, nothing changes."""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

import installed

from testlib import TEST_USER, mount_table

pytestmark = pytest.mark.ns


def _policy(site_dir, namespaces, hostname=None):
    extra = f'hostname = "{hostname}"\n' if hostname else ""
    return site_dir.policy(f"""
[environments.iso]
path = "{site_dir.envs['deb12']}"
namespaces = {namespaces!r}
{extra}
[environments.plain]
path = "{site_dir.envs['deb12']}"
""".replace("'", '"'), name="policy-iso.toml")


def _prepare(envsched_cmd, policy, key, env="iso"):
    r = envsched_cmd("--policy", str(policy), "prepare", "--user", TEST_USER, "--no-user-file", "--request",
                     env, "--key", key, "--job", "77", "--owner-pid", str(os.getpid()), "--format", "shim")
    assert r.returncode == 0, r.stderr
    return r


def _join(envsched_cmd, policy, key, script, **kw):
    return envsched_cmd("--policy", str(policy), "join", "--key", key, "--", "/bin/sh", "-c", script, **kw)


def _release(envsched_cmd, policy, key):
    r = envsched_cmd("--policy", str(policy), "release", "--key", key)
    assert r.returncode == 0, r.stderr


def _ns(pid, name):
    return os.readlink(f"/proc/{pid}/ns/{name}")


def test_pid_ipc_uts_are_the_jobs_own_and_shared_by_its_joins(envsched_cmd, site_dir, test_user):
    policy = _policy(site_dir, ["pid", "ipc", "uts"], hostname="mck-node")
    before = mount_table()
    key = "iso-1"
    _prepare(envsched_cmd, policy, key)
    try:
        pin = os.path.join(site_dir.run_dir, key)
        # the init holds all three; joiners enter them through its pidfd (no binds)
        assert sorted(n for n in os.listdir(pin) if n in ("pid", "ipc", "uts", "init")) == ["init"]
        init, _, names = open(os.path.join(pin, "init")).read().split()
        init = int(init)
        assert names == "pid,ipc,uts"
        script = ("echo self=$$; echo host=$(hostname); echo pids=$(ls /proc | grep -c '^[0-9]');"
                  "echo ipc=$(readlink /proc/self/ns/ipc); echo pidns=$(readlink /proc/self/ns/pid);"
                  "cat /proc/1/cmdline | tr '\\0' ' '; echo")
        first = _join(envsched_cmd, policy, key, script)
        second = _join(envsched_cmd, policy, key, script)
        assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
        seen = [dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line) for r in (first, second)]
        assert seen[0]["host"] == "mck-node" and socket.gethostname() != "mck-node"
        # a /proc of the job's own: the init (pid 1), the shell and what it ran; not the host's hundreds
        assert int(seen[0]["pids"]) <= 6, first.stdout
        assert int(seen[0]["self"]) < 100
        # both joins in the same namespaces, none of them the host's
        assert seen[0]["ipc"] == seen[1]["ipc"] != _ns("self", "ipc")
        assert seen[0]["pidns"] == seen[1]["pidns"] == _ns(init, "pid") != _ns("self", "pid")
    finally:
        _release(envsched_cmd, policy, key)
    assert not os.path.exists(f"/proc/{init}/ns") or open(f"/proc/{init}/stat").read().split()[2] == "Z"
    assert mount_table() == before


def test_release_kills_what_the_job_left_running(envsched_cmd, site_dir, test_user, tmp_path):
    policy = _policy(site_dir, ["pid"])
    key = "iso-2"
    _prepare(envsched_cmd, policy, key)
    marker = f"sleep {600 + os.getpid() % 1000}.{os.getpid()}"
    try:
        # a daemon that leaves its parent: an orphan, reparented to the namespace's init
        r = _join(envsched_cmd, policy, key, f"setsid {marker} </dev/null >/dev/null 2>&1 &")
        assert r.returncode == 0, r.stderr
        found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
        assert found.stdout.split(), "the orphan is running before release"
    finally:
        _release(envsched_cmd, policy, key)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and subprocess.run(["pgrep", "-f", marker]).returncode == 0:
        time.sleep(0.05)
    assert subprocess.run(["pgrep", "-f", marker]).returncode != 0, "an orphan of the job survived it"


def test_exit_status_and_signals_reach_the_job_through_the_namespace(envsched_cmd, site_dir, test_user):
    policy = _policy(site_dir, ["pid"])
    key = "iso-3"
    _prepare(envsched_cmd, policy, key)
    try:
        assert _join(envsched_cmd, policy, key, "exit 7").returncode == 7
        assert _join(envsched_cmd, policy, key, "kill -TERM $$").returncode == -15
        # a signal to the joiner (what a scheduler sends to the task's pid) reaches the job
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
        if installed.src():
            env["PYTHONPATH"] = installed.src()
        p = subprocess.Popen([*installed.tool_command("envsched"), "--policy", str(policy), "join", "--key", key,
                              "--", "/bin/sh", "-c",
                              "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done"],
                             stdout=subprocess.PIPE, text=True, env=env, cwd="/")
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(15)
        out, _ = p.communicate(timeout=10)
        assert "got-term" in out and p.returncode == 3
    finally:
        _release(envsched_cmd, policy, key)


def test_without_the_key_nothing_is_isolated(envsched_cmd, site_dir, test_user):
    policy = _policy(site_dir, ["pid"])
    key = "iso-4"
    _prepare(envsched_cmd, policy, key, env="plain")
    try:
        assert not any(os.path.exists(os.path.join(site_dir.run_dir, key, n)) for n in ("pid", "ipc", "uts", "init"))
        r = _join(envsched_cmd, policy, key, "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; hostname")
        assert r.stdout.split() == [_ns("self", "pid"), _ns("self", "ipc"), socket.gethostname()]
    finally:
        _release(envsched_cmd, policy, key)


def test_a_dead_init_refuses_the_join_in_one_line(envsched_cmd, site_dir, test_user):
    policy = _policy(site_dir, ["pid"])
    key = "iso-5"
    _prepare(envsched_cmd, policy, key)
    try:
        init = int(open(os.path.join(site_dir.run_dir, key, "init")).read().split()[0])
        os.kill(init, 9)
        time.sleep(0.2)
        r = _join(envsched_cmd, policy, key, "echo ran")
        assert r.returncode != 0 and "ran" not in r.stdout
        assert "process namespace" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    finally:
        _release(envsched_cmd, policy, key)


@pytest.mark.parametrize("as_user", [True, False], ids=["chos-run-as-the-user", "envsched-exec-as-root"])
def test_the_in_process_form_gets_the_namespaces_too(chos_cmd, envsched_cmd, site_dir, test_user, home, as_user):
    """`chos run` (a user, through a user namespace) and `envsched exec` (root) build the view in
    their own process: the environment's namespaces come with it, never silently left out."""
    policy = _policy(site_dir, ["pid", "ipc", "uts"], hostname="iso-run")
    script = ("echo self=$$ host=$(hostname) pids=$(ls /proc | grep -c '^[0-9]') "
              "ipc=$(readlink /proc/self/ns/ipc); exit 5")
    if as_user:
        r = chos_cmd("--policy", str(policy), "run", "iso", "--", "/bin/sh", "-c", script, user=TEST_USER,
                     cwd=str(home))
    else:
        r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--no-user-file", "--request", "iso",
                         "--", "/bin/sh", "-c", script)
    assert r.returncode == 5, r.stderr
    seen = dict(f.split("=", 1) for f in r.stdout.split())
    assert seen["host"] == "iso-run" and seen["ipc"] != _ns("self", "ipc")
    assert int(seen["self"]) <= 3 and int(seen["pids"]) <= 6, r.stdout


def test_forged_signals_and_names_leave_the_jobs_namespaces_intact(envsched_cmd, site_dir, test_user):
    """The job's user tries to end its namespace or change what it is: kill its init from inside
    (pid 1) and from outside (its host pid, which the user can see), change the host name, join
    another pin; nothing works, and the next task still joins the same namespaces."""
    policy = _policy(site_dir, ["pid", "ipc", "uts"], hostname="iso-forged")
    key = "iso-6"
    _prepare(envsched_cmd, policy, key)
    try:
        pin = os.path.join(site_dir.run_dir, key)
        init = int(open(os.path.join(pin, "init")).read().split()[0])
        inside = _join(envsched_cmd, policy, key, "kill -9 1; echo kill=$?; hostname forged 2>/dev/null; "
                                                  "echo hostname=$?; hostname")
        assert "hostname=1" in inside.stdout.split(), inside.stdout        # no CAP_SYS_ADMIN: refused
        assert inside.stdout.split()[-1] == "iso-forged"
        outside = subprocess.run(["setpriv", f"--reuid={test_user.pw_uid}", f"--regid={test_user.pw_gid}",
                                  "--clear-groups", "kill", "-9", str(init)], capture_output=True, text=True)
        assert outside.returncode != 0                     # root's process: not the user's to signal
        assert open(f"/proc/{init}/stat").read().split()[2] != "Z"
        again = _join(envsched_cmd, policy, key, "hostname; readlink /proc/self/ns/pid")
        assert again.stdout.split() == ["iso-forged", _ns(init, "pid")], again.stdout + again.stderr
        other = envsched_cmd("--policy", str(policy), "join", "--key", key, "--", "true", user=TEST_USER)
        assert other.returncode != 0                       # only root joins a pin
    finally:
        _release(envsched_cmd, policy, key)


def test_ipc_and_uts_without_pid_are_pinned_beside_the_view(envsched_cmd, site_dir, test_user):
    policy = _policy(site_dir, ["ipc", "uts"], hostname="no-pid")
    key = "iso-7"
    _prepare(envsched_cmd, policy, key)
    try:
        pin = os.path.join(site_dir.run_dir, key)
        assert sorted(n for n in os.listdir(pin) if n in ("pid", "ipc", "uts", "init")) == ["ipc", "uts"]
        runs = [_join(envsched_cmd, policy, key, "hostname; readlink /proc/self/ns/ipc; readlink /proc/self/ns/pid")
                for _ in range(2)]
        assert runs[0].stdout == runs[1].stdout, runs[0].stderr
        host, ipc, pidns = runs[0].stdout.split()
        assert host == "no-pid" and ipc != _ns("self", "ipc") and pidns == _ns("self", "pid")
    finally:
        _release(envsched_cmd, policy, key)
