"""A real OpenSSH server (Debian's 9.2) with pam_envsched in its session stack, a real ssh client,
a real test user: logins land in the environment ~/.chos names, failures follow failure=, root is
exempt, and nothing stays pinned or mounted once the session is over."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from pamlib import PAM_USER as TEST_USER, module_args, pins, wait_no_pins

pytestmark = pytest.mark.pam

SHOW = 'head -1 /etc/os-release; echo "CHOS=$CHOS"; id -u'


def host_pretty() -> str:
    return Path("/etc/os-release").read_text().splitlines()[0]


def write_chos(home: Path, pw, name: str) -> None:
    f = home / ".chos"
    f.write_text(name + "\n")
    os.chown(f, pw.pw_uid, pw.pw_gid)


@pytest.fixture
def policy(site_dir):
    return site_dir.policy(body="""
[environments.broken]
path = "/nonexistent/envsched-broken-tree"
""")


def test_login_follows_chos_and_leaves_nothing(sshd, site_dir, policy, pam_user, pam_home):
    sshd.service.write(module_args(policy, site_dir.run_dir))
    write_chos(pam_home, pam_user, "deb13")
    r = sshd.ssh(TEST_USER, SHOW)
    assert r.returncode == 0, r.stderr + sshd.log()[-3000:]
    assert r.stdout.splitlines() == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13", str(pam_user.pw_uid)]
    assert wait_no_pins(site_dir.run_dir) == []

    write_chos(pam_home, pam_user, "deb12")                 # the next login follows ~/.chos
    r = sshd.ssh(TEST_USER, SHOW)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ['PRETTY_NAME="debian 12 (mini)"', "CHOS=deb12"]
    assert wait_no_pins(site_dir.run_dir) == []


def test_pin_is_owned_by_the_sshd_monitor_for_the_session(sshd, site_dir, policy, pam_user, pam_home):
    """pam_open_session runs in sshd's root "[priv]" monitor, which forks the session after it and
    lives as long as the session: the pin's owner."""
    sshd.service.write(module_args(policy, site_dir.run_dir))
    write_chos(pam_home, pam_user, "deb13")
    ssh = subprocess.Popen(["ssh", "-i", str(sshd.root / "client_key"), "-p", str(sshd.port), "-o", "BatchMode=yes",
                            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={os.devnull}",
                            "-o", "LogLevel=ERROR", "-F", os.devnull, f"{TEST_USER}@127.0.0.1",
                            "echo in; sleep 30"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert ssh.stdout.readline().strip() == "in"
        found = pins(site_dir.run_dir)
        assert len(found) == 1 and found[0].startswith(f"pam-{pam_user.pw_uid}-")
        meta = json.loads((site_dir.run_dir / found[0] / "meta.json").read_text())
        owner = Path(f"/proc/{meta['owner_pid']}/cmdline").read_bytes().decode()
        assert "[priv]" in owner and TEST_USER in owner          # "sshd: envsched-tu [priv]"
        assert os.stat(f"/proc/{meta['owner_pid']}").st_uid == 0
        assert os.readlink(f"/proc/{meta['owner_pid']}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    finally:
        ssh.kill()
        ssh.wait()
    assert wait_no_pins(site_dir.run_dir) == []


@pytest.mark.parametrize("choice", ["sl5", "broken"])
def test_failure_closed_denies_with_the_line(sshd, site_dir, policy, pam_user, pam_home, choice):
    sshd.service.write(module_args(policy, site_dir.run_dir, "failure=closed"))
    write_chos(pam_home, pam_user, choice)
    r = sshd.ssh(TEST_USER, SHOW)
    # sshd exits 254 ("PAM session not opened") after showing the session's messages (its
    # loginmsg, written to the client's terminal: ssh's stdout); the command never runs
    assert r.returncode == 254
    line = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("envsched: ")]
    assert len(line) == 1 and "PRETTY_NAME" not in r.stdout, r.stdout + r.stderr
    assert (f"environment '{choice}'" in line[0]) if choice == "sl5" else ("broken" in line[0])
    assert wait_no_pins(site_dir.run_dir) == []


def test_failure_default_uses_the_site_default(sshd, site_dir, policy, pam_user, pam_home):
    sshd.service.write(module_args(policy, site_dir.run_dir, "failure=default"))
    write_chos(pam_home, pam_user, "sl5")
    r = sshd.ssh(TEST_USER, SHOW)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ['PRETTY_NAME="debian 12 (mini)"', "CHOS=deb12"]
    assert wait_no_pins(site_dir.run_dir) == []


def test_failure_open_runs_on_the_host(sshd, site_dir, policy, pam_user, pam_home):
    sshd.service.write(module_args(policy, site_dir.run_dir, "failure=open"))
    write_chos(pam_home, pam_user, "broken")
    r = sshd.ssh(TEST_USER, SHOW)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [host_pretty(), "CHOS="]
    assert wait_no_pins(site_dir.run_dir) == []


def test_root_is_exempt(sshd, site_dir, policy, pam_home):
    sshd.service.write(module_args(policy, site_dir.run_dir))
    r = sshd.ssh("root", SHOW)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [host_pretty(), "CHOS=", "0"]
    assert pins(site_dir.run_dir) == []


def test_host_os_choice_is_recorded_and_released(sshd, site_dir, policy, pam_user, pam_home):
    sshd.service.write(module_args(policy, site_dir.run_dir))
    write_chos(pam_home, pam_user, "local")
    r = sshd.ssh(TEST_USER, SHOW)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [host_pretty(), "CHOS=local"]
    assert wait_no_pins(site_dir.run_dir) == []


def test_login_setup_cost(sshd, site_dir, policy, pam_user, pam_home):
    """Not a limit, a measurement: the same user's login, exempt and with the environment."""
    write_chos(pam_home, pam_user, "deb13")

    def best(args: str) -> float:
        sshd.service.write(module_args(policy, site_dir.run_dir, args))
        times = []
        for _ in range(5):
            t0 = time.monotonic()
            assert sshd.ssh(TEST_USER, "true").returncode == 0
            times.append(time.monotonic() - t0)
        return sorted(times)[2]
    exempt, entered = best(f"exempt_users=root,{TEST_USER}"), best("")
    print(f"\nssh login (median of 5): exempt {exempt * 1000:.0f} ms, with the environment "
          f"{entered * 1000:.0f} ms (+{(entered - exempt) * 1000:.0f} ms)")
    assert wait_no_pins(site_dir.run_dir) == []


def test_login_into_an_isolated_environment_gets_its_namespaces(sshd, site_dir, pam_user, pam_home):
    """namespaces = ["pid", "ipc", "uts"]: the login shell starts in the session's own PID
    namespace (pam_envsched setns in the monitor, which forks the session after), IPC namespace and
    host name; closing the session releases them all."""
    policy = site_dir.policy(body=f"""
[environments.iso]
path = "{site_dir.envs['deb12']}"
namespaces = ["pid", "ipc", "uts"]
hostname = "iso-login"
""")
    sshd.service.write(module_args(policy, site_dir.run_dir))
    write_chos(pam_home, pam_user, "iso")
    r = sshd.ssh(TEST_USER, "echo pidns=$(readlink /proc/self/ns/pid) ipcns=$(readlink /proc/self/ns/ipc) "
                            "host=$(hostname) procs=$(ls /proc | grep -c '^[0-9]')")
    assert r.returncode == 0, r.stderr + sshd.log()[-3000:]
    seen = dict(f.split("=", 1) for f in r.stdout.split())
    assert seen["pidns"] != os.readlink("/proc/self/ns/pid") and seen["ipcns"] != os.readlink("/proc/self/ns/ipc")
    assert seen["host"] == "iso-login" and int(seen["procs"]) < 20, r.stdout
    assert wait_no_pins(site_dir.run_dir) == []
    # the namespace's init (the resolver's view builder, "prepare ... --key pam-UID-PID") is gone:
    # close_session went back to the host's PID namespace before its resolver released the pin
    left = subprocess.run(["pgrep", "-af", f"prepare.*--key pam-{pam_user.pw_uid}-"], capture_output=True, text=True)
    assert not left.stdout, f"the session's init survived it: {left.stdout}"
