"""Shared fixtures: real environment trees, trusted policy files, a real unprivileged user,
and the host mount table guard that every namespace test runs under."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import pytest

import installed  # noqa: F401  (it checks, on import, that an installed run has what it needs)
from testlib import SESSION_TAG, TEST_USER, Result, mount_table, namespace_inits, real_user, run_tool, unmount_below  # noqa: F401,E501

REPO = Path(__file__).resolve().parent.parent
pytest_plugins = ["faultreport"]  # the fault and soak report table (#15)
BUILD_MINI = REPO / "tests" / "envs" / "build-mini-env.sh"
BUILD_REAL = REPO / "site-config" / "environments" / "build-debootstrap.sh"
# A real Debian tree (debootstrap minbase bookworm), built once per machine and reused by every
# later test run: root's, outside any session directory. Rebuilt when missing or not what RECIPE says.
REAL_TREE = Path("/var/cache/envsched-tests/deb12-real")
REAL_TREE_RECIPE = {"suite": "bookworm", "variant": "minbase", "include": ""}
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (CI runs as root)")


@dataclass
class Site:
    """A throwaway site: trusted directory, environment trees, a run dir for pins."""
    root: Path
    envs: Dict[str, Path]
    run_dir: Path

    def policy(self, body: str = "", site: str = "", name: str = "policy.toml") -> Path:
        """Write a policy (mode 0644, root-owned dir) with the two mini environments. Shared views
        (PAM logins) go with their last login (view_hold = 0) unless `site` says otherwise."""
        if "view_hold" not in site:
            site = f"view_hold = 0\n{site}"
        text = f"""
[site]
default = "deb12"
run_dir = "{self.run_dir}"
log_file = "{self.root}/envsched.log"
{site}

[environments.deb12]
path = "{self.envs['deb12']}"
description = "Debian 12 (mini)"

[environments.deb13]
path = "{self.envs['deb13']}"
description = "Debian 13 (mini)"
{body}
"""
        path = self.root / name
        path.write_text(text)
        path.chmod(0o644)
        return path

    def build_env(self, name: str, os_id: str, version: str) -> Path:
        dest = self.root / "os" / name
        subprocess.run([str(BUILD_MINI), str(dest), os_id, version, f"{os_id} {version} (mini)"],
                       check=True, stdout=subprocess.DEVNULL)
        return dest


@pytest.fixture(scope="session")
def site_dir() -> Site:
    if not IS_ROOT:
        pytest.skip("needs root (CI runs as root)")
    root = Path(f"/run/envsched-tests-{SESSION_TAG}")
    root.mkdir(mode=0o755)
    (root / "os").mkdir(mode=0o755)
    site = Site(root, {}, root / "run")
    site.envs["deb12"] = site.build_env("deb12-mini", "debian", "12")
    site.envs["deb13"] = site.build_env("deb13-mini", "debian", "13")
    yield site
    subprocess.run(["umount", "-R", "-l", str(site.run_dir)], stderr=subprocess.DEVNULL)
    unmount_below(str(root))                   # image holders under run_dir/.images
    shutil.rmtree(root)


def _real_tree_complete(dest: Path) -> bool:
    """Built to the recipe and finished: build-debootstrap.sh renames a tree into place only once
    it is complete, and writes etc/envsched-build-info just before."""
    try:
        info = dict(line.split("=", 1) for line in (dest / "etc" / "envsched-build-info").read_text().splitlines()
                    if "=" in line)
    except OSError:
        return False
    return (all(info.get(k) == v for k, v in REAL_TREE_RECIPE.items())
            and (dest / "etc" / "profile").is_file() and (dest / "bin" / "sh").exists())


@pytest.fixture(scope="session")
def real_tree() -> Path:
    """A real Debian 12 tree with a real /etc/profile (it resets PATH), for the login-shell tests.

    Reused when REAL_TREE is complete; otherwise built with site-config's build-debootstrap.sh
    (about 35 s with a nearby mirror; debootstrap is installed if missing), which builds next to
    the destination and renames into place, so an interrupted build leaves nothing half made. A
    lock file serialises test runs started side by side on one machine."""
    if not IS_ROOT:
        pytest.skip("needs root (CI runs as root)")
    import fcntl
    import time
    parent = REAL_TREE.parent
    parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if parent.stat().st_uid != 0 or parent.stat().st_mode & 0o022:
        pytest.fail(f"{parent} must be root's and not writable by group or others")
    with open(parent / f".{REAL_TREE.name}.fixture.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _real_tree_complete(REAL_TREE):
            args = [str(BUILD_REAL), REAL_TREE_RECIPE["suite"], str(REAL_TREE), "--variant", REAL_TREE_RECIPE["variant"]]
            if REAL_TREE_RECIPE["include"]:
                args += ["--include", REAL_TREE_RECIPE["include"]]
            if REAL_TREE.exists():
                args.append("--replace")
            start = time.monotonic()
            p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
            if p.returncode != 0 or not _real_tree_complete(REAL_TREE):
                pytest.fail(f"building {REAL_TREE} failed (exit {p.returncode}):\n{p.stdout[-4000:]}")
            for old in parent.glob(f"{REAL_TREE.name}.replaced-*"):     # an incomplete or outdated tree
                shutil.rmtree(old)
            sys.stderr.write(f"\nreal_tree: built {REAL_TREE} in {time.monotonic() - start:.0f} s\n")
    return REAL_TREE


@pytest.fixture(scope="session")
def user_fuse() -> None:
    """/dev/fuse usable by users (mode 0666), as udev makes it on every ordinary node; this
    machine has no udev (mode 0600). The mode is put back at the end of the session."""
    if not IS_ROOT:
        pytest.skip("needs root")
    mode = os.stat("/dev/fuse").st_mode & 0o7777
    if mode != 0o666:
        os.chmod("/dev/fuse", 0o666)
    yield
    if mode != 0o666:
        os.chmod("/dev/fuse", mode)


@pytest.fixture(scope="session")
def test_user() -> pwd.struct_passwd:
    """A real unprivileged user with a home directory, created for the session."""
    if not IS_ROOT:
        pytest.skip("needs root to create a user")
    with real_user(TEST_USER) as pw:
        yield pw


@pytest.fixture
def home(test_user: pwd.struct_passwd) -> Path:
    """The test user's home, emptied of ~/.chos before and after each test."""
    h = Path(test_user.pw_dir)
    for p in (h / ".chos",):
        if p.is_symlink() or p.exists():
            subprocess.run(["rm", "-rf", str(p)], check=True)
    yield h
    subprocess.run(["rm", "-rf", str(h / ".chos")], check=True)


@pytest.fixture(scope="session", autouse=True)
def roots_caches_removed():
    """What runs as root keeps between runs, removed again at the end where the session made it:
    root's ~/.cache/envsched (srun/sbatch/qsub's submit-time answers, submitcache.py; `envsched
    exec`'s run cache, runcache.py) and the parsed policies in /run/envsched/.policy
    (policy/load.py), each at the highest level that did not exist before."""
    if not IS_ROOT:                      # nothing of root's to keep (and /run/envsched is root's alone)
        yield
        return
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    from envsched.policy.load import POLICY_CACHE
    paths = [home / ".cache" / "envsched", home / ".cache" / "envsched" / "exec",
             Path(POLICY_CACHE).parent, Path(POLICY_CACHE)]
    made = [p for p in paths if not p.exists()]
    yield
    for p in made:
        if p.exists() and not any(q in p.parents for q in made):
            shutil.rmtree(p)


@pytest.fixture(autouse=True)
def host_mounts_unchanged(request: pytest.FixtureRequest) -> None:
    """Every test: the host mount table is exactly the same afterwards, and no PID namespace init
    of a released view is left running."""
    before, inits = mount_table(), namespace_inits()
    yield
    after = mount_table()
    assert after == before, "host mount table changed:\n+ %s\n- %s" % (
        sorted(set(after) - set(before)), sorted(set(before) - set(after)))
    left = sorted(set(namespace_inits()) - set(inits))
    assert not left, f"PID namespace inits left running: {left}"


@pytest.fixture
def envsched_cmd():
    return lambda *a, **kw: run_tool("envsched", a, **kw)


@pytest.fixture
def chos_cmd():
    return lambda *a, **kw: run_tool("chos", a, **kw)
