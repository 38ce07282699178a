"""PAM fixtures: the module built from plugins/pam, private PAM service files under
/etc/pam.d/envsched-test-<random> (removed again), and a private sshd on a free loopback port
whose PAM service is such a file: OpenSSH 9.2 has no PAMServiceName option and names its PAM
service after the program (argv[0]'s basename), so it is started through a symlink of that name.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

import installed
from testlib import real_user

from pamlib import PAM_DIR, PAM_USER, REPO, free_port, need


@pytest.fixture(scope="session")
def pam_user() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user")
    with real_user(PAM_USER) as pw:
        yield pw


@pytest.fixture
def pam_home(pam_user: pwd.struct_passwd) -> Iterator[Path]:
    h = Path(pam_user.pw_dir)
    (h / ".chos").unlink(missing_ok=True)
    yield h
    (h / ".chos").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def pam_module() -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    return installed.shim(REPO / "plugins" / "pam" / "pam_envsched.so", "pam_envsched.so")


class PamService:
    """A private PAM service file; `write` replaces its lines (read by PAM at each pam_start)."""

    def __init__(self, module: Path) -> None:
        self.name = f"envsched-test-{uuid.uuid4().hex[:8]}"
        self.path = PAM_DIR / self.name
        self.module = module

    def write(self, session_args: str, before: str = "", auth: str = "auth required pam_permit.so") -> None:
        self.path.write_text(f"#%PAM-1.0\n{auth}\naccount required pam_permit.so\nsession required pam_permit.so\n{before}\n"
                             f"session required {self.module} {session_args}\n")
        self.path.chmod(0o644)


@pytest.fixture
def pam_service(pam_module: Path) -> Iterator[PamService]:
    svc = PamService(pam_module)
    yield svc
    svc.path.unlink(missing_ok=True)


class Sshd:
    def __init__(self, root: Path, port: int, service: PamService) -> None:
        self.root, self.port, self.service = root, port, service
        self.proc: "subprocess.Popen[bytes] | None" = None

    def ssh(self, user: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-i", str(self.root / "client_key"), "-p", str(self.port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={os.devnull}", "-o", "LogLevel=ERROR",
             "-F", os.devnull, f"{user}@127.0.0.1", command],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)

    def log(self) -> str:
        return (self.root / "sshd.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def sshd(pam_module: Path) -> Iterator[Sshd]:
    need("/usr/sbin/sshd", "ssh", "ssh-keygen")
    root = Path(f"/run/envsched-pamtest-{uuid.uuid4().hex[:8]}")
    root.mkdir(mode=0o755)
    made_privsep_dir = False
    if not Path("/run/sshd").exists():                 # Debian's sshd needs its privsep directory
        Path("/run/sshd").mkdir(mode=0o755)
        made_privsep_dir = True
    service = PamService(pam_module)
    service.write("debug")                              # replaced by each test
    sshd = Sshd(root, free_port(), service)
    try:
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)], check=True)
        keys = root / "keys"
        keys.mkdir(mode=0o755)
        pub = (root / "client_key.pub").read_text()
        for user in (PAM_USER, "root"):
            (keys / user).write_text(pub)
            (keys / user).chmod(0o644)
        (root / "sshd_config").write_text(f"""
Port {sshd.port}
ListenAddress 127.0.0.1
HostKey {root}/host_key
PidFile {root}/sshd.pid
UsePAM yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile {keys}/%u
PermitRootLogin prohibit-password
PrintMotd no
PrintLastLog no
UseDNS no
LogLevel VERBOSE
""")
        # sshd re-executes itself by argv[0] for each connection and names its PAM service after it
        link = root / service.name
        link.symlink_to("/usr/sbin/sshd")
        with open(root / "sshd.log", "wb") as log:
            sshd.proc = subprocess.Popen([str(link), "-D", "-e", "-f", str(root / "sshd_config")],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", sshd.port), timeout=1):
                break
            if sshd.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sshd did not start:\n" + sshd.log())
            time.sleep(0.05)
        yield sshd
    finally:
        if sshd.proc is not None and sshd.proc.poll() is None:
            sshd.proc.send_signal(signal.SIGTERM)
            try:
                sshd.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sshd.proc.kill()
                sshd.proc.wait()
        service.path.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)
        if made_privsep_dir:
            shutil.rmtree("/run/sshd", ignore_errors=True)
