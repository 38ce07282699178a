"""The packages themselves (marked `packages`: `make test-packages`; root, apt, about a minute).

`make deb` builds them (lintian clean, or the build fails), dpkg-deb shows what each holds and
with which modes, apt-get installs them on this machine, the installed commands, man pages and
completion work from /usr, and a purge leaves nothing behind. `make rpm` builds the RPM spec
(a build test only) and rpm shows the same files and modes. The times are printed.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

pytestmark = pytest.mark.packages

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
PACKAGES = ["envsched", "envsched-slurm", "envsched-gridengine", "envsched-torque", "envsched-openpbs",
            "libpam-envsched"]
MULTIARCH = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], stdout=subprocess.PIPE, text=True,
                           stderr=subprocess.DEVNULL).stdout.strip() if shutil.which("dpkg-architecture") \
    else "x86_64-linux-gnu"
LIBEXEC = "/usr/libexec/envsched"
# path -> mode (root:root for all): what docs/admin.md and the plugins' `make install` say, under /usr
EXPECTED: Dict[str, Dict[str, int]] = {
    "envsched": {"/usr/bin/chos": 0o755, "/usr/bin/envsched": 0o755,
                 "/usr/lib/python3/dist-packages/envsched/__init__.py": 0o644,
                 "/usr/lib/python3/dist-packages/envsched/templates/slurm/plugstack.conf.j2": 0o644,
                 "/usr/share/man/man1/chos.1.gz": 0o644, "/usr/share/man/man8/envsched.8.gz": 0o644,
                 "/usr/share/man/man5/envsched-policy.5.gz": 0o644,
                 "/usr/share/bash-completion/completions/chos": 0o644,
                 "/usr/share/doc/envsched/examples/policy.toml": 0o644,
                 "/usr/share/doc/envsched/admin.md.gz": 0o644, "/etc/envsched/": 0o755},
    "envsched-slurm": {"/usr/lib/envsched/envsched_spank.so": 0o644, "/usr/lib/envsched/envsched-launch": 0o755},
    "envsched-gridengine": {f"{LIBEXEC}/uge-starter": 0o4755, f"{LIBEXEC}/uge-epilog": 0o755, f"{LIBEXEC}/uge-prolog": 0o755,
                            f"{LIBEXEC}/envsched_jsv.py": 0o755, f"{LIBEXEC}/envsched_uge.py": 0o755},
    "envsched-torque": {f"{LIBEXEC}/torque-starter": 0o4755, f"{LIBEXEC}/torque-pelog": 0o755,
                        f"{LIBEXEC}/envsched_torque.py": 0o755},
    "envsched-openpbs": {f"{LIBEXEC}/pbs-join": 0o4755, f"{LIBEXEC}/pbs-prepare": 0o755,
                         f"{LIBEXEC}/envsched_queuejob.py": 0o644,
                         f"{LIBEXEC}/envsched_launch.py": 0o644, f"{LIBEXEC}/envsched_end.py": 0o644},
    "libpam-envsched": {f"/lib/{MULTIARCH}/security/pam_envsched.so": 0o644},
}
OWN_DIRS = ["/usr/lib/python3/dist-packages/envsched", LIBEXEC, "/usr/lib/envsched", "/etc/envsched"] + \
    [f"/usr/share/doc/{p}" for p in PACKAGES]
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
TIMES: Dict[str, float] = {}


def run(cmd: List[str], timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, **kw)


def timed(name: str, cmd: List[str], **kw) -> subprocess.CompletedProcess:
    start = time.monotonic()
    p = run(cmd, **kw)
    TIMES[name] = time.monotonic() - start
    return p


def installed() -> List[str]:
    """The envsched packages dpkg knows as anything but not-installed (config-files counts)."""
    p = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", *PACKAGES],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=60)
    return [line.split()[0] for line in p.stdout.splitlines()
            if len(line.split()) > 1 and line.split()[1][1] != "n"]


@pytest.fixture(scope="module", autouse=True)
def report_times():
    yield
    if TIMES:
        print("\npackaging times: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMES.items()))


@pytest.fixture(scope="module")
def debs() -> Dict[str, Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root (apt-get, dpkg)")
    p = timed("make deb", ["make", "-C", str(REPO), "deb"])
    assert p.returncode == 0, p.stdout[-4000:]
    assert "== lintian" in p.stdout
    found = {f.name.split("_")[0]: f for f in BUILD.glob("*.deb")}
    assert sorted(found) == sorted(PACKAGES)
    return found


def deb_files(deb: Path) -> Dict[str, Tuple[str, str]]:
    """path (directories with a trailing /) -> (permissions as ls shows them, owner/group)"""
    out = {}
    for line in run(["dpkg-deb", "-c", str(deb)]).stdout.splitlines():
        perms, owner, _size, _date, _time, path = line.split(None, 5)
        out[path.split(" -> ")[0][1:]] = (perms, owner)
    return out


def mode_of(perms: str) -> int:
    """-rwsr-xr-x -> 0o4755"""
    bits = 0
    for i, (ch, bit) in enumerate(zip(perms[1:], (0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 4, 2, 1))):
        if ch != "-":
            bits |= bit
        if i == 2 and ch in "sS":
            bits |= 0o4000
        if i == 5 and ch in "sS":
            bits |= 0o2000
    return bits


def test_each_package_holds_its_files_with_the_documented_modes(debs):
    for pkg, deb in debs.items():
        files = deb_files(deb)
        for path, mode in EXPECTED[pkg].items():
            assert path in files, f"{pkg}: no {path}"
            assert mode_of(files[path][0]) == mode, f"{pkg}: {path} is {files[path][0]}"
        for path, (perms, owner) in files.items():
            assert owner == "root/root", f"{pkg}: {path} {owner}"
            if perms.startswith("l"):
                continue
            mode = mode_of(perms)
            assert not mode & 0o022, f"{pkg}: {path} {perms} is writable by group or others"
            if mode & 0o6000:
                assert EXPECTED[pkg].get(path) == 0o4755, f"{pkg}: {path} {perms}: unexpected set-user/group-ID"


def test_control_no_script_starts_or_enables_anything(debs, tmp_path):
    for pkg, deb in debs.items():
        ctrl = tmp_path / pkg
        assert run(["dpkg-deb", "-e", str(deb), str(ctrl)]).returncode == 0
        for script in ("preinst", "postinst", "prerm", "postrm"):
            if (ctrl / script).exists():
                text = (ctrl / script).read_text()
                for word in ("systemctl", "deb-systemd-invoke", "invoke-rc.d", "update-rc.d", "pam-auth-update"):
                    assert word not in text, f"{pkg} {script}: {word}"
        fields = run(["dpkg-deb", "-f", str(deb)]).stdout
        if pkg != "envsched":
            assert re.search(r"^Depends: .*envsched \(= [^)]+\)", fields, re.M), fields
    slurm = run(["dpkg-deb", "-f", str(debs["envsched-slurm"]), "Breaks"]).stdout
    major = re.match(r"(\d+\.\d+)", run(["dpkg-query", "-W", "-f", "${Version}", "libslurm-dev"]).stdout).group(1)
    assert f"slurmd (<< {major}~)" in slurm and "slurm-client (>= " in slurm


@pytest.fixture(scope="module")
def installed_packages(debs):
    if installed():
        pytest.skip(f"envsched packages are installed on this machine already: {installed()}")
    p = timed("apt-get install", ["apt-get", "install", "-y", "-q", *map(str, debs.values())],
              env={**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"})
    assert p.returncode == 0, p.stdout[-4000:]
    listed = {pkg: run(["dpkg", "-L", pkg]).stdout.split() for pkg in PACKAGES}
    yield listed
    if installed():               # a test failed before the purge test: leave the machine as it was
        run(["apt-get", "purge", "-y", "-q", *PACKAGES], env={**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"})


def test_installed_commands_run_from_usr(installed_packages):
    for cmd in (["envsched", "--help"], ["chos", "--help"]):
        p = run(cmd, env=CLEAN_ENV)
        assert p.returncode == 0 and p.stdout.startswith(f"usage: {cmd[0]}"), p.stdout
    assert run(["which", "envsched"], env=CLEAN_ENV).stdout.strip() == "/usr/bin/envsched"
    p = run(["/usr/bin/python3", "-I", "-c", "import envsched, jinja2; print(envsched.__file__)"], env=CLEAN_ENV)
    assert p.stdout.strip() == "/usr/lib/python3/dist-packages/envsched/__init__.py", p.stdout
    # what the hooks import, with their interpreter line (python3 -I) and no --src
    p = run(["/usr/bin/python3", "-I", "-c", "import envsched.service, envsched.policy, envsched.shim"],
            env=CLEAN_ENV)
    assert p.returncode == 0, p.stdout


def test_installed_man_pages_render(installed_packages):
    for name, section in (("chos", "1"), ("envsched", "8"), ("envsched-policy", "5")):
        page = f"/usr/share/man/man{section}/{name}.{section}.gz"
        p = subprocess.run(["man", "--warnings", "-l", page], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env={**CLEAN_ENV, "MANWIDTH": "80"}, timeout=60)
        assert p.returncode == 0 and p.stderr == "", p.stderr
        assert p.stdout.startswith(f"{name.upper()}({section})")
        assert run(["man", "-w", section, name], env=CLEAN_ENV).stdout.strip() == page


def test_installed_completion_lists_the_policys_names(installed_packages):
    base = Path(tempfile.mkdtemp(prefix="envsched-pkg-", dir="/run"))
    try:
        base.chmod(0o755)
        policy = base / "policy.toml"
        policy.write_text('[environments.deb12]\npath = "/os/deb12"\n[environments.sl6]\npath = "/os/sl6"\n')
        script = ('source /usr/share/bash-completion/bash_completion; '
                  'source /usr/share/bash-completion/completions/chos; '
                  f'COMP_WORDS=(chos --policy {policy} set ""); COMP_CWORD=4; '
                  '_chos chos "" set 2>/dev/null; printf "%s\\n" "${COMPREPLY[@]}"')
        p = run(["bash", "-c", script], env=CLEAN_ENV)
        assert sorted(p.stdout.split()) == ["deb12", "local", "sl6"], p.stdout
    finally:
        shutil.rmtree(base)


def test_purge_leaves_nothing(installed_packages):
    # what `site-config render` has the admin write beside the programs goes on purge too
    for name in ("uge-starter.conf", "torque-starter.conf", "pbs-join.conf", "pbs-prepare.conf"):
        (Path(LIBEXEC) / name).write_text("# rendered\n")
    p = timed("apt-get purge", ["apt-get", "purge", "-y", "-q", *PACKAGES],
              env={**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"})
    assert p.returncode == 0, p.stdout[-4000:]
    assert installed() == []
    left = [path for paths in installed_packages.values() for path in paths
            if os.path.lexists(path) and not os.path.isdir(path)]
    assert left == []
    assert [d for d in OWN_DIRS if os.path.lexists(d)] == []


@pytest.fixture(scope="module")
def rpms() -> Dict[str, Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root (make rpm installs its build dependencies)")
    p = timed("make rpm", ["make", "-C", str(REPO), "rpm"])
    assert p.returncode == 0, p.stdout[-4000:]
    return {run(["rpm", "-qp", "--qf", "%{NAME}", str(f)]).stdout: f for f in (BUILD / "rpm" / "RPMS").rglob("*.rpm")}


def test_rpm_spec_builds_the_same_files(rpms):
    assert sorted(rpms) == sorted(p.replace("libpam-envsched", "envsched-pam") for p in PACKAGES)
    for deb_name, rpm_name, path, mode in [
            ("gridengine", "envsched-gridengine", f"{LIBEXEC}/uge-starter", 0o4755),
            ("torque", "envsched-torque", f"{LIBEXEC}/torque-starter", 0o4755),
            ("openpbs", "envsched-openpbs", f"{LIBEXEC}/pbs-join", 0o4755),
            ("openpbs", "envsched-openpbs", f"{LIBEXEC}/envsched_launch.py", 0o644),
            ("gridengine", "envsched-gridengine", f"{LIBEXEC}/envsched_jsv.py", 0o755),
            ("envsched", "envsched", "/usr/bin/chos", 0o755),
            ("envsched", "envsched", "/usr/share/man/man5/envsched-policy.5.gz", 0o644),
            ("envsched", "envsched", "/usr/share/bash-completion/completions/chos", 0o644)]:
        out = run(["rpm", "-qp", "--qf", "[%{FILEMODES} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]",
                   str(rpms[rpm_name])]).stdout
        entries = {line.split()[2]: (int(line.split()[0]), line.split()[1]) for line in out.splitlines()}
        assert path in entries, f"{rpm_name}: no {path}"
        assert stat.S_IMODE(entries[path][0]) == mode and entries[path][1] == "root:root", (path, entries[path])
    requires = run(["rpm", "-qp", "--requires", str(rpms["envsched-slurm"])]).stdout
    assert re.search(r"^slurm >= \d+\.\d+$", requires, re.M), requires
