"""`chos run NAME -- COMMAND` without Python (#13): the C front (plugins/chos/chos.c) builds the view
from the plan the resolver wrote into the user's run cache (src/envsched/runcache.py), and hands
everything else, and every changed input, to the Python command.

A run that went to Python is told apart by pointing the front at an interpreter that does not
exist (ENVSCHED_CHOS_PYTHON): the front then says "cannot run" and exits 126; a run that needed no
Python succeeds all the same.
"""
from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import installed
from testlib import TEST_USER

REPO = Path(__file__).resolve().parent.parent.parent
NO_PYTHON = "/nonexistent/python3"
PAYLOAD = ('head -1 /etc/os-release; echo CHOS=$CHOS; echo CWD=$(pwd); grep NoNewPrivs /proc/self/status; '
           'cat /proc/self/uid_map')
SAME_VIEW = 'awk "{print \\$5, \\$6, \\$9, \\$10}" /proc/self/mountinfo | sort; env | sort | grep -v "^_="'

pytestmark = pytest.mark.ns


@pytest.fixture(scope="module")
def front() -> Path:
    return installed.shim(REPO / "plugins" / "chos" / "chos", "/usr/bin/chos")


@pytest.fixture
def run_cache(home: Path):
    cache = home / ".cache" / "envsched" / "run"
    shutil.rmtree(cache, ignore_errors=True)
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


def chos(front: Path, home: Path, *args: str, python: str = "", env: dict = None, cwd: str = ""):
    """The front as the test user (setpriv), in `cwd` (default: the home)."""
    import pwd
    pw = pwd.getpwnam(TEST_USER)
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": pw.pw_dir, "USER": TEST_USER,
            "LOGNAME": TEST_USER}
    if python or not installed.INSTALLED:
        base["ENVSCHED_CHOS_PYTHON"] = python or sys.executable
    base.update(env or {})
    cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--", str(front), *args]
    return subprocess.run(cmd, cwd=cwd or str(home), env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60)


def went_to_python(r) -> bool:
    return r.returncode == 126 and (f"cannot run {NO_PYTHON}" in r.stderr or "stand-in python ran" in r.stderr)


def warm(front: Path, home: Path, policy: Path, name: str = "deb13", **kw):
    """One run through Python (which writes the entry), then the same without any Python."""
    first = chos(front, home, "--policy", str(policy), "run", name, "--", "true", **kw)
    assert first.returncode == 0, first.stderr
    second = chos(front, home, "--policy", str(policy), "run", name, "--", "sh", "-c", PAYLOAD, python=NO_PYTHON, **kw)
    assert second.returncode == 0, second.stderr
    return second


def test_second_run_needs_no_python(site_dir, test_user, home, run_cache, front):
    policy = site_dir.policy(name="front-warm.toml")
    r = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "true", python=NO_PYTHON)
    assert went_to_python(r), r.stderr                          # nothing cached yet
    r = warm(front, home, policy)
    lines = r.stdout.splitlines()
    assert lines[0] == 'PRETTY_NAME="debian 13 (mini)"'
    assert lines[1:3] == ["CHOS=deb13", f"CWD={home}"]
    assert lines[3] == "NoNewPrivs:\t1"
    assert lines[4].split() == [str(test_user.pw_uid), str(test_user.pw_uid), "1"]
    entries = list(run_cache.iterdir())
    assert len(entries) == 1
    st = entries[0].lstat()
    assert (st.st_uid, st.st_mode & 0o7777, st.st_nlink) == (test_user.pw_uid, 0o600, 1)


def test_the_view_is_the_one_python_builds(site_dir, home, run_cache, front, tmp_path):
    """Mount table (mount point, options, type, source) and environment, side by side."""
    policy = site_dir.policy(name="front-same.toml")
    warm(front, home, policy)
    cached = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "sh", "-c", SAME_VIEW,
                  python=NO_PYTHON)
    python = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "sh", "-c", SAME_VIEW,
                  env={"ENVSCHED_NO_RUN_CACHE": "1"})
    assert cached.returncode == 0 and python.returncode == 0, cached.stderr + python.stderr
    def seen(out: str):
        return [line for line in out.splitlines() if not line.startswith(("ENVSCHED_NO_RUN_CACHE=", "ENVSCHED_CHOS_PYTHON="))]
    assert seen(cached.stdout) == seen(python.stdout)
    assert "/local" in cached.stdout and "/home" in cached.stdout


def test_a_policy_edit_goes_to_python(site_dir, home, run_cache, front):
    policy = site_dir.policy(name="front-edit.toml")
    warm(front, home, policy)
    policy.write_text(policy.read_text().replace('[environments.deb13]', '[environments.deb13]\nenabled = false'))
    r = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "true", python=NO_PYTHON)
    assert went_to_python(r), r.stderr
    r = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "true")
    assert r.returncode == 77, r.stderr                         # the resolver refuses, as always
    assert r.stderr.startswith("envsched: ") and "deb13" in r.stderr


def test_a_tree_made_writable_goes_to_python(site_dir, home, run_cache, front):
    policy = site_dir.policy(name="front-tree.toml")
    warm(front, home, policy)
    tree = site_dir.envs["deb13"]
    mode = tree.stat().st_mode & 0o7777
    os.chmod(tree, mode | 0o002)
    try:
        r = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "true", python=NO_PYTHON)
        assert went_to_python(r), r.stderr
        r = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "true")
        assert r.returncode == 69, r.stderr                     # broken: writable by others
    finally:
        os.chmod(tree, mode)


@pytest.fixture
def grouped(site_dir, test_user):
    """A group of the test user's and a policy (named by the caller) whose environment `grouped`
    (the deb13 tree) only that group may use; yields (write_policy, leave): leave() takes the user
    out of the group."""
    group = f"estf{os.getpid() % 100000}"
    subprocess.run(["groupadd", group], check=True)
    try:
        subprocess.run(["usermod", "-aG", group, TEST_USER], check=True)

        def write_policy(name: str) -> Path:
            return site_dir.policy(name=name, body=f"""
[environments.grouped]
path = "{site_dir.envs['deb13']}"
allow_groups = ["{group}"]
""")

        def leave() -> None:
            subprocess.run(["gpasswd", "-d", TEST_USER, group], check=True, stdout=subprocess.DEVNULL)
            assert TEST_USER not in grp.getgrnam(group).gr_mem
        yield write_policy, leave
    finally:
        subprocess.run(["groupdel", group], check=True)


def test_a_group_removed_goes_to_python(site_dir, home, run_cache, front, grouped):
    write_policy, leave = grouped
    policy = write_policy("front-group.toml")
    warm(front, home, policy, name="grouped")
    leave()
    r = chos(front, home, "--policy", str(policy), "run", "grouped", "--", "true", python=NO_PYTHON)
    assert went_to_python(r), r.stderr
    r = chos(front, home, "--policy", str(policy), "run", "grouped", "--", "true")
    assert r.returncode == 77, r.stderr


def test_another_chos_variable_is_another_entry(site_dir, home, run_cache, front):
    policy = site_dir.policy(name="front-var.toml")
    warm(front, home, policy)
    r = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "true", python=NO_PYTHON,
             env={"CHOS": "deb12"})
    assert went_to_python(r), r.stderr


def test_an_entry_others_can_read_or_a_link_is_no_entry(site_dir, test_user, home, run_cache, front, tmp_path):
    policy = site_dir.policy(name="front-mode.toml")
    warm(front, home, policy)
    entry = next(run_cache.iterdir())
    entry.chmod(0o644)
    r = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "true", python=NO_PYTHON)
    assert went_to_python(r), r.stderr
    entry.chmod(0o600)
    moved = run_cache / "elsewhere"
    entry.rename(moved)
    entry.symlink_to(moved)
    os.lchown(entry, test_user.pw_uid, test_user.pw_gid)
    r = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "true", python=NO_PYTHON)
    assert went_to_python(r), r.stderr


@pytest.mark.parametrize("args,env", [
    (["sh", "-c", "true"], {"CHOS": "deb13"}),                          # CHOS compatibility form
    (["run", "--partition", "p", "deb13", "--", "true"], {}),           # options of the resolver's
    (["run", "deb13"], {}),                                              # no command
    (["list"], {}),
])
def test_what_the_front_leaves_to_python(site_dir, home, run_cache, front, args, env):
    policy = site_dir.policy(name="front-other.toml")
    warm(front, home, policy)
    r = chos(front, home, "--policy", str(policy), *args, python=NO_PYTHON, env=env)
    assert went_to_python(r), r.stderr


def test_python_gets_the_arguments_unchanged(site_dir, home, run_cache, front):
    policy = site_dir.policy(name="front-list.toml")
    r = chos(front, home, "--policy", str(policy), "list")
    assert r.returncode == 0, r.stderr
    names = [line[2:].split()[0] for line in r.stdout.splitlines()]
    assert "deb12" in names and "deb13" in names


def test_command_not_found_and_exit_codes_as_python_says_them(site_dir, home, run_cache, front):
    policy = site_dir.policy(name="front-codes.toml")
    warm(front, home, policy)
    cached = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "no-such-program", python=NO_PYTHON)
    python = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "no-such-program",
                  env={"ENVSCHED_NO_RUN_CACHE": "1"})
    assert (cached.returncode, cached.stderr) == (python.returncode, python.stderr) == (
        127, "envsched: no-such-program: command not found in environment deb13\n")
    r = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "sh", "-c", "exit 7", python=NO_PYTHON)
    assert r.returncode == 7


def test_a_cwd_the_view_lacks_falls_back_to_home(site_dir, home, run_cache, front, tmp_path):
    policy = site_dir.policy(name="front-cwd.toml")
    warm(front, home, policy)
    # /run is not in the view: the run starts in the home directory, as Python's would
    outside = site_dir.root
    r = chos(front, home, "--policy", str(policy), "run", "deb13", "--", "pwd", python=NO_PYTHON, cwd=str(outside))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(home)


# -- root's `envsched exec --user U --request NAME -- COMMAND` (plugins/chos/envsched.c) ------------

@pytest.fixture(scope="module")
def envsched_front() -> Path:
    return installed.shim(REPO / "plugins" / "chos" / "envsched", "/usr/bin/envsched")


@pytest.fixture(scope="module")
def root_no_python(site_dir) -> str:
    """For root the front takes only an interpreter root may run (its path root's alone): a stand-in
    that says it ran, where a run that needed no Python never gets."""
    path = site_dir.root / "stand-in-python"
    path.write_text('#!/bin/sh\necho "stand-in python ran: $*" >&2\nexit 126\n')
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def exec_cache():
    import pwd
    cache = Path(pwd.getpwuid(0).pw_dir) / ".cache" / "envsched" / "exec"
    shutil.rmtree(cache, ignore_errors=True)
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


def envsched(front: Path, *args: str, python: str = "", env: dict = None, cwd: str = "/"):
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
    if python or not installed.INSTALLED:
        base["ENVSCHED_CHOS_PYTHON"] = python or sys.executable
    base.update(env or {})
    return subprocess.run([str(front), *args], cwd=cwd, env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60)


def exec_args(policy: Path, *command: str, name: str = "deb13"):
    return ["--policy", str(policy), "exec", "--user", TEST_USER, "--request", name, "--", *command]


def test_root_exec_second_run_needs_no_python(site_dir, test_user, home, exec_cache, envsched_front, root_no_python):
    policy = site_dir.policy(name="front-exec.toml")
    first = envsched(envsched_front, *exec_args(policy, "true"), cwd=str(home))
    assert first.returncode == 0, first.stderr
    entry = next(exec_cache.iterdir())
    st = entry.lstat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o600)
    r = envsched(envsched_front, *exec_args(policy, "sh", "-c", PAYLOAD + "; id -u; echo HOME=$HOME USER=$USER"),
                 python=root_no_python, cwd=str(home))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13", f"CWD={home}", "NoNewPrivs:\t1"]
    assert lines[-2:] == [str(test_user.pw_uid), f"HOME={home} USER={TEST_USER}"]
    log = (site_dir.root / "envsched.log").read_text().splitlines()
    assert f"event=decided user={TEST_USER} env=deb13 source=option path={site_dir.envs['deb13']} by=cache" in log[-1]


def test_root_exec_the_view_is_the_one_python_builds(site_dir, home, exec_cache, envsched_front, root_no_python):
    policy = site_dir.policy(name="front-exec-same.toml")
    show = SAME_VIEW + "; grep -E '^(Cap|NoNewPrivs|Groups)' /proc/self/status"
    assert envsched(envsched_front, *exec_args(policy, "true")).returncode == 0
    cached = envsched(envsched_front, *exec_args(policy, "sh", "-c", show), python=root_no_python)
    python = envsched(envsched_front, *exec_args(policy, "sh", "-c", show), env={"ENVSCHED_NO_RUN_CACHE": "1"})
    assert cached.returncode == 0 and python.returncode == 0, cached.stderr + python.stderr

    def seen(out: str):
        return [line for line in out.splitlines() if not line.startswith(("ENVSCHED_NO_RUN_CACHE=", "ENVSCHED_CHOS_PYTHON="))]
    assert seen(cached.stdout) == seen(python.stdout)
    assert "CapEff:\t0000000000000000" in cached.stdout


def test_root_exec_inputs_changed_go_to_python(site_dir, home, exec_cache, envsched_front, root_no_python,
                                               grouped):
    write_policy, leave = grouped
    policy = write_policy("front-exec-group.toml")
    assert envsched(envsched_front, *exec_args(policy, "true", name="grouped")).returncode == 0
    assert envsched(envsched_front, *exec_args(policy, "true", name="grouped"), python=root_no_python).returncode == 0
    leave()
    r = envsched(envsched_front, *exec_args(policy, "true", name="grouped"), python=root_no_python)
    assert went_to_python(r), r.stderr
    r = envsched(envsched_front, *exec_args(policy, "true", name="grouped"))
    assert r.returncode == 77, r.stderr
    # a policy edit
    policy = site_dir.policy(name="front-exec-edit.toml")
    assert envsched(envsched_front, *exec_args(policy, "true")).returncode == 0
    policy.write_text(policy.read_text() + "\n")
    assert went_to_python(envsched(envsched_front, *exec_args(policy, "true"), python=root_no_python))


def test_root_exec_applies_only_roots_entries(site_dir, test_user, exec_cache, envsched_front, root_no_python):
    """An entry of another owner (or one others could write) is no entry: root applies what root wrote."""
    policy = site_dir.policy(name="front-exec-owner.toml")
    assert envsched(envsched_front, *exec_args(policy, "true")).returncode == 0
    entry = next(exec_cache.iterdir())
    os.chown(entry, test_user.pw_uid, test_user.pw_gid)
    assert went_to_python(envsched(envsched_front, *exec_args(policy, "true"), python=root_no_python))
    os.chown(entry, 0, 0)
    entry.chmod(0o620)
    assert went_to_python(envsched(envsched_front, *exec_args(policy, "true"), python=root_no_python))


@pytest.mark.parametrize("extra", [["--cwd", "/"], ["--partition", "p"], ["--job", "1"], ["--chos-var", "deb12"]])
def test_root_exec_leaves_other_options_to_python(site_dir, exec_cache, envsched_front, root_no_python, extra):
    policy = site_dir.policy(name="front-exec-opts.toml")
    assert envsched(envsched_front, *exec_args(policy, "true")).returncode == 0
    args = ["--policy", str(policy), "exec", "--user", TEST_USER, *extra, "--request", "deb13", "--", "true"]
    assert went_to_python(envsched(envsched_front, *args, python=root_no_python))


def test_root_ignores_an_interpreter_others_could_write(site_dir, envsched_front, tmp_path):
    """ENVSCHED_CHOS_PYTHON never makes root run a program others could replace."""
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho FAKE\n")
    fake.chmod(0o755)
    os.chmod(tmp_path, 0o777)
    r = envsched(envsched_front, "--help", python=str(fake))
    assert "FAKE" not in r.stdout
    assert "ENVSCHED_CHOS_PYTHON ignored" in r.stderr
