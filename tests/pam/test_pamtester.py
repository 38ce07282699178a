"""The module's arguments and error paths through pamtester (open_session, then close_session, in
one process), and `su -l` with a private PAM service bound over su's in a private mount namespace
(the system's su configuration is not changed)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from pamlib import PAM_USER, RESOLVER, module_args, need, pins

pytestmark = pytest.mark.pam


def pamtester(service: str, user: str = PAM_USER) -> subprocess.CompletedProcess:
    need("pamtester")
    return subprocess.run(["pamtester", "-v", service, user, "open_session", "close_session"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})


def prepared(site_dir, service: str) -> list:
    """The environments the admin log says were prepared or recorded for this service's sessions."""
    log = site_dir.root / "envsched.log"
    text = log.read_text() if log.exists() else ""
    return re.findall(rf"event=(?:prepared|recorded) job=pam/{service} .*?env=(\S+)", text)


def write_chos(home: Path, pw, name: str) -> None:
    (home / ".chos").write_text(name + "\n")
    os.chown(home / ".chos", pw.pw_uid, pw.pw_gid)


def test_open_and_close_in_one_process(pam_service, site_dir, pam_user, pam_home):
    policy = site_dir.policy()
    write_chos(pam_home, pam_user, "deb13")
    pam_service.write(module_args(policy, site_dir.run_dir))
    r = pamtester(pam_service.name)
    assert r.returncode == 0, r.stdout
    assert prepared(site_dir, pam_service.name) == ["deb13"]
    assert pins(site_dir.run_dir) == []


def test_chos_from_the_pam_environment_beats_the_user_file(pam_service, site_dir, pam_user, pam_home, tmp_path):
    policy = site_dir.policy()
    write_chos(pam_home, pam_user, "deb12")
    envfile = tmp_path / "environment"
    envfile.write_text("CHOS=deb13\n")
    pam_service.write(module_args(policy, site_dir.run_dir),
                      before=f"session required pam_env.so readenv=1 envfile={envfile} user_readenv=0")
    r = pamtester(pam_service.name)
    assert r.returncode == 0, r.stdout
    assert prepared(site_dir, pam_service.name) == ["deb13"]
    assert pins(site_dir.run_dir) == []


@pytest.mark.parametrize("args, ok", [
    ("bogus=1", False),                                   # unknown argument: denied, whatever failure= says
    ("failure=open bogus", False),
    ("policy=relative/policy.toml", False),
    ("failure=sometimes", False),
    ("resolver=/nonexistent/envsched", False),           # closed by default
    ("resolver=/nonexistent/envsched failure=default", False),   # no resolver: no default either
    ("resolver=/nonexistent/envsched failure=open", True),
    (f"exempt_users=nobody,{PAM_USER}", True),
])
def test_arguments_and_error_paths(pam_service, site_dir, pam_user, pam_home, args, ok):
    policy = site_dir.policy()
    write_chos(pam_home, pam_user, "deb13")
    base = f"policy={policy} resolver={RESOLVER} run_dir={site_dir.run_dir}"
    pam_service.write(f"{base} {args}")
    r = pamtester(pam_service.name)
    assert (r.returncode == 0) == ok, r.stdout
    if "exempt_users" in args or "nonexistent" in args:
        assert prepared(site_dir, pam_service.name) == []
    assert pins(site_dir.run_dir) == []


def test_overlong_chos_follows_the_failure_mode(pam_service, site_dir, pam_user, pam_home, tmp_path):
    policy = site_dir.policy()
    envfile = tmp_path / "environment"
    envfile.write_text("CHOS=" + "d" * 300 + "\n")
    before = f"session required pam_env.so readenv=1 envfile={envfile} user_readenv=0"
    pam_service.write(module_args(policy, site_dir.run_dir), before=before)
    assert pamtester(pam_service.name).returncode != 0
    pam_service.write(module_args(policy, site_dir.run_dir, "failure=open"), before=before)
    assert pamtester(pam_service.name).returncode == 0
    assert pins(site_dir.run_dir) == []


def test_su_login_enters(pam_service, site_dir, pam_user, pam_home):
    """`su -l USER -c CMD` as root, su's PAM services (su, su-l) replaced by ours by bind mounts
    inside a private mount namespace that ends with the command."""
    need("su", "unshare")
    policy = site_dir.policy()
    write_chos(pam_home, pam_user, "deb13")
    pam_service.write(module_args(policy, site_dir.run_dir), auth="auth sufficient pam_rootok.so")
    binds = " && ".join(f"mount --bind {pam_service.path} /etc/pam.d/{s}"
                        for s in ("su", "su-l") if Path(f"/etc/pam.d/{s}").exists())
    script = (f"{binds} && su -l {PAM_USER} -c 'head -1 /etc/os-release; echo CHOS=$CHOS; id -u'; "
              f"echo rc=$?; ls {site_dir.run_dir}")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    lines = r.stdout.splitlines()
    assert lines[:4] == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13", str(pam_user.pw_uid), "rc=0"], \
        r.stdout + r.stderr
    assert not [ln for ln in lines[4:] if ln.startswith("pam-")]     # released by su's close_session
    assert pins(site_dir.run_dir) == []


def test_rendered_line_works(pam_service, site_dir, pam_user, pam_home, envsched_cmd):
    """The line `site-config render --scheduler pam` prints, as it is, in a service's stack."""
    pytest.importorskip("jinja2")
    policy = site_dir.policy()
    write_chos(pam_home, pam_user, "deb13")
    r = envsched_cmd("--policy", str(policy), "site-config", "render", "--scheduler", "pam",
                     "--resolver", str(RESOLVER), "--plugin", str(pam_service.module))
    assert r.returncode == 0, r.stderr
    pam_service.path.write_text("auth required pam_permit.so\naccount required pam_permit.so\n"
                                "session required pam_permit.so\n" + r.stdout)
    out = pamtester(pam_service.name)
    assert out.returncode == 0, out.stdout + r.stdout
    assert prepared(site_dir, pam_service.name) == ["deb13"]
    assert pins(site_dir.run_dir) == []


def test_session_is_logged_to_syslog(pam_service, site_dir, pam_user, pam_home):
    """One line per session through syslog (authpriv, PAM's facility for this; pam_syslog): user,
    service, environment, setup milliseconds. This machine has no syslog daemon: the test listens on
    /dev/log itself for the duration of the test."""
    import socket
    if os.path.exists("/dev/log"):
        pytest.skip("/dev/log exists: a syslog daemon owns it, the test does not take it over")
    policy = site_dir.policy()
    write_chos(pam_home, pam_user, "deb13")
    pam_service.write(module_args(policy, site_dir.run_dir))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("/dev/log")
        os.chmod("/dev/log", 0o666)
        r = pamtester(pam_service.name)
        assert r.returncode == 0, r.stdout
        sock.settimeout(2)
        lines = []
        try:
            while True:
                lines.append(sock.recv(65536).decode(errors="replace"))
        except socket.timeout:
            pass
    finally:
        sock.close()
        os.unlink("/dev/log")
    ours = [ln for ln in lines if "envsched: user=" in ln and " env=deb13 " in ln]
    assert ours, lines
    pri = int(ours[0][1:ours[0].index(">")])
    assert divmod(pri, 8) == (10, 6), ours[0]             # authpriv.info
    assert re.search(rf"user={PAM_USER} service={pam_service.name} tty=\S* rhost=\S* env=deb13 key=pam-\S+ "
                     r"setup_ms=\d+", ours[0]), ours[0]
