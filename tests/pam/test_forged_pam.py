"""Forged inputs of the PAM module, through pamtester (and one real ssh login): each is refused with
one line naming what is wrong, the forged program never runs, no pin stays behind.

What the module reads and where each comes from (docs/security.md, "The PAM module"):

- resolver=, policy=, run_dir= (module arguments, root's /etc/pam.d): the resolver, with every
  directory above it, every symbolic link on the way, the link's target and the interpreter on its
  "#!" line, must be root's and not writable by group or others before root runs it
  (plugins/common/es_run.c: es_trusted_program; exit 78, never run). run_dir= and the directories
  above it likewise (plugins/pam/enter.c), the policy by the resolver;
- PAM_USER (the user the application authenticated) -> uid by getpwnam: the identity; the key is
  pam-<uid>-<pid of the session process>, made by the module, never an argument;
- CHOS from the PAM environment (pam_env; with user_readenv=1 the user's own ~/.pam_environment):
  the user's request, checked by the policy against the uid like any other request.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from pamlib import PAM_USER, RESOLVER, module_args, need, pins, wait_no_pins

pytestmark = pytest.mark.pam

MARK = "FORGED-RESOLVER-RAN"


def pamtester(service: str, user: str = PAM_USER) -> subprocess.CompletedProcess:
    need("pamtester")
    return subprocess.run(["pamtester", "-v", service, user, "open_session", "close_session"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})


def envsched_lines(out: str) -> list:
    return [ln for ln in out.splitlines() if ln.startswith("envsched: ")]


def denied(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode != 0, r.stdout
    lines = envsched_lines(r.stdout)
    assert len(lines) == 1, r.stdout
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def forge(site_dir, pam_user):
    """A root-owned directory (0755, in the session's root-owned site directory) to plant programs in,
    a marker file each forged program touches if it ever runs, and a helper that writes them."""
    root = site_dir.root / f"forge-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o755)
    marker = root / "ran"

    def program(path: Path, owner: int = 0, mode: int = 0o755, interpreter: str = "/bin/sh") -> Path:
        path.write_text(f"#!{interpreter}\ntouch {marker}\nexec {RESOLVER} \"$@\"\n")
        os.chown(path, owner, owner and pam_user.pw_gid)
        path.chmod(mode)
        return path

    class Forge:
        pass
    f = Forge()
    f.root, f.marker, f.program = root, marker, program
    yield f
    shutil.rmtree(root, ignore_errors=True)


def user_dir(parent: Path, pw, name: str = "mine") -> Path:
    d = parent / name
    d.mkdir(mode=0o755)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def test_forged_resolver_owned_by_the_user(pam_service, site_dir, pam_user, pam_home, forge):
    bad = forge.program(forge.root / "envsched", owner=pam_user.pw_uid)
    policy = site_dir.policy()
    for failure in ("failure=closed", "failure=default"):       # default: no second try with it either
        pam_service.write(f"policy={policy} resolver={bad} run_dir={site_dir.run_dir} {failure}")
        denied(pamtester(pam_service.name), f"the resolver {bad} is not trusted, not run: {bad}: "
               "must be owned by root and not writable by group or others")
    # failure=open: the site lets the login run on the host OS; the forged program still never runs
    pam_service.write(f"policy={policy} resolver={bad} run_dir={site_dir.run_dir} failure=open")
    r = pamtester(pam_service.name)
    assert r.returncode == 0, r.stdout
    assert "is not trusted, not run" in r.stdout and "runs on the host OS" in r.stdout
    assert not forge.marker.exists()
    assert pins(site_dir.run_dir) == []


@pytest.mark.parametrize("mode", [0o775, 0o757])
def test_forged_resolver_writable_by_group_or_others(pam_service, site_dir, pam_user, pam_home, forge, mode):
    bad = forge.program(forge.root / "envsched", mode=mode)
    pam_service.write(f"policy={site_dir.policy()} resolver={bad} run_dir={site_dir.run_dir}")
    denied(pamtester(pam_service.name), f"{bad}: must be owned by root and not writable by group or others")
    assert not forge.marker.exists()


def test_forged_resolver_in_a_user_writable_directory(pam_service, site_dir, pam_user, pam_home, forge):
    """The program is root's, but the user can replace it: its directory is theirs."""
    mine = user_dir(forge.root, pam_user)
    bad = forge.program(mine / "envsched")                      # root's, 0755
    pam_service.write(f"policy={site_dir.policy()} resolver={bad} run_dir={site_dir.run_dir}")
    denied(pamtester(pam_service.name), f"{mine}: must be owned by root and not writable by group or others")
    assert not forge.marker.exists()
    # a world-writable sticky directory (/tmp-like) is no better
    sticky = forge.root / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    bad = forge.program(sticky / "envsched")
    pam_service.write(f"policy={site_dir.policy()} resolver={bad} run_dir={site_dir.run_dir}")
    denied(pamtester(pam_service.name), f"{sticky}: must be owned by root")
    assert not forge.marker.exists()
    assert pins(site_dir.run_dir) == []


def test_forged_resolver_symlink_in_an_untrusted_directory(pam_service, site_dir, pam_user, pam_home, forge):
    """The link points at the real, trusted resolver, but it lives where the user can replace it."""
    mine = user_dir(forge.root, pam_user)
    link = mine / "envsched"
    link.symlink_to(RESOLVER)
    pam_service.write(f"policy={site_dir.policy()} resolver={link} run_dir={site_dir.run_dir}")
    denied(pamtester(pam_service.name), f"the resolver {link} is not trusted", f"{mine}: must be owned by root")
    assert pins(site_dir.run_dir) == []


def test_forged_resolver_symlink_to_an_untrusted_target(pam_service, site_dir, pam_user, pam_home, forge):
    """A root-owned link in a trusted directory is fine only when its target is trusted too."""
    mine = user_dir(forge.root, pam_user)
    bad = forge.program(mine / "envsched")
    link = forge.root / "envsched"
    link.symlink_to(bad)
    pam_service.write(f"policy={site_dir.policy()} resolver={link} run_dir={site_dir.run_dir}")
    denied(pamtester(pam_service.name), f"the resolver {link} is not trusted", f"{mine}: must be owned by root")
    assert not forge.marker.exists()


def test_forged_resolver_symlink_owned_by_the_user(pam_service, site_dir, pam_user, pam_home, forge):
    link = forge.root / "envsched"
    link.symlink_to(RESOLVER)
    os.lchown(link, pam_user.pw_uid, pam_user.pw_gid)
    pam_service.write(f"policy={site_dir.policy()} resolver={link} run_dir={site_dir.run_dir}")
    denied(pamtester(pam_service.name), f"{link}: a symbolic link not owned by root")


def test_resolver_symlinks_in_trusted_directories_are_followed(pam_service, site_dir, pam_user, pam_home, forge,
                                                               tmp_path):
    """A chain of root's links in root's directories (relative, then absolute) to the real resolver,
    itself a script whose interpreter is the venv's python -> python3 -> /usr/bin/python3 chain."""
    (pam_home / ".chos").write_text("deb13\n")
    os.chown(pam_home / ".chos", pam_user.pw_uid, pam_user.pw_gid)
    (forge.root / "real").symlink_to(RESOLVER)
    (forge.root / "envsched").symlink_to("real")
    pam_service.write(module_args(site_dir.policy(), site_dir.run_dir).replace(
        f"resolver={RESOLVER}", f"resolver={forge.root / 'envsched'}"))
    r = pamtester(pam_service.name)
    assert r.returncode == 0, r.stdout
    assert envsched_lines(r.stdout) == []
    assert pins(site_dir.run_dir) == []


@pytest.mark.parametrize("how", ["interpreter in a user's directory", "interpreter linked to a user's file",
                                 "interpreter owned by the user", "relative interpreter",
                                 "env with options"])
def test_forged_resolver_interpreter(pam_service, site_dir, pam_user, pam_home, forge, how):
    """The resolver is root's, in a trusted directory, but what its "#!" line runs is not."""
    mine = user_dir(forge.root, pam_user)
    if how == "interpreter in a user's directory":
        (mine / "python3").symlink_to("/usr/bin/python3")      # the real python, reached through the user's dir
        interp, needle = f"{mine}/python3 -I", f"its interpreter {mine}/python3: {mine}: must be owned by root"
    elif how == "interpreter linked to a user's file":
        shutil.copy("/bin/sh", mine / "sh")
        os.chown(mine / "sh", pam_user.pw_uid, pam_user.pw_gid)
        (forge.root / "sh").symlink_to(mine / "sh")             # root's link, trusted dir, untrusted target
        interp, needle = str(forge.root / "sh"), f"its interpreter {forge.root / 'sh'}: {mine}: must be owned"
    elif how == "interpreter owned by the user":
        shutil.copy("/bin/sh", forge.root / "sh")
        os.chown(forge.root / "sh", pam_user.pw_uid, pam_user.pw_gid)
        interp, needle = str(forge.root / "sh"), f"{forge.root / 'sh'}: must be owned by root"
    elif how == "relative interpreter":
        interp, needle = "sh", "its interpreter sh is not an absolute path"
    else:
        interp, needle = "/usr/bin/env -S sh -e", "cannot be judged: name the interpreter by its absolute path"
    resolver = forge.program(forge.root / "envsched", interpreter=interp)
    pam_service.write(f"policy={site_dir.policy()} resolver={resolver} run_dir={site_dir.run_dir}")
    denied(pamtester(pam_service.name), f"the resolver {resolver} is not trusted", needle)
    assert not forge.marker.exists()
    assert pins(site_dir.run_dir) == []


def test_resolver_through_env_is_judged_by_the_program_env_runs(pam_service, site_dir, pam_user, pam_home, forge):
    """#!/usr/bin/env sh: env runs sh from the clean PATH, which is judged (and trusted here)."""
    resolver = forge.program(forge.root / "envsched", interpreter="/usr/bin/env sh")
    pam_service.write(f"policy={site_dir.policy()} resolver={resolver} run_dir={site_dir.run_dir}")
    r = pamtester(pam_service.name)
    assert r.returncode == 0, r.stdout
    assert forge.marker.exists()                               # trusted: it ran
    assert pins(site_dir.run_dir) == []


def test_forged_chos_through_the_users_pam_environment(pam_service, site_dir, pam_user, pam_home):
    """pam_env with user_readenv=1 reads ~/.pam_environment: the user sets CHOS there. It is the user's
    own request, so it is checked by the policy for their uid: a denied or malformed one is refused
    (failure=closed), and failure=default gives the site default, never what was asked for."""
    policy = site_dir.policy(body=f"""
[environments.secret]
path = "{site_dir.envs['deb13']}"
deny_users = ["{PAM_USER}"]
[environments.staff]
path = "{site_dir.envs['deb13']}"
allow_users = ["root"]
""")
    envfile = pam_home / ".pam_environment"
    before = "session required pam_env.so readenv=0 user_readenv=1"
    try:
        for value, needle in (("secret", f"user {PAM_USER} is denied"),
                              ("staff", "restricted to other users or groups"),
                              ("../../etc", "not a valid name")):
            envfile.write_text(f"CHOS DEFAULT={value}\n")
            os.chown(envfile, pam_user.pw_uid, pam_user.pw_gid)
            pam_service.write(module_args(policy, site_dir.run_dir), before=before)
            denied(pamtester(pam_service.name), needle, "(CHOS variable)")
            pam_service.write(module_args(policy, site_dir.run_dir, "failure=default"), before=before)
            r = pamtester(pam_service.name)
            assert r.returncode == 0, r.stdout
            assert "using the default environment" in r.stdout
            log = (site_dir.root / "envsched.log").read_text()
            assert f"job=pam/{pam_service.name} " in log
            assert not [ln for ln in log.splitlines() if f"job=pam/{pam_service.name} " in ln
                        and ("env=secret" in ln or "env=staff" in ln) and "event=refused" not in ln]
        # an allowed value from the same file is used: the request is the user's to make
        envfile.write_text("CHOS DEFAULT=deb13\n")
        pam_service.write(module_args(policy, site_dir.run_dir), before=before)
        r = pamtester(pam_service.name)
        assert r.returncode == 0, r.stdout
    finally:
        envfile.unlink(missing_ok=True)
    assert pins(site_dir.run_dir) == []


@pytest.mark.parametrize("arg", ["key=pam-0-1", "key=../../etc", "uid=0", "user=root", "chos=deb13",
                                 "run_dir=relative/run", "resolver=/usr/bin/../bin/true"])
def test_forged_key_and_identity_arguments_are_not_arguments(pam_service, site_dir, pam_user, pam_home, arg):
    """The key (pam-<uid>-<pid>), the uid and the request are never taken from arguments: such an
    argument is unknown (or malformed) and denies the session whatever failure= says."""
    pam_service.write(module_args(site_dir.policy(), site_dir.run_dir, f"failure=open {arg}"))
    r = pamtester(pam_service.name)
    assert r.returncode != 0, r.stdout
    assert envsched_lines(r.stdout) == ["envsched: the login service is misconfigured (see the system log)"]
    assert pins(site_dir.run_dir) == []


def test_forged_run_dir_below_a_user_writable_directory(pam_service, site_dir, pam_user, pam_home, forge):
    """run_dir itself root's and 0700, but in a directory of the user's, who could swap it: the
    resolver refuses it before preparing anything (78, site.run_dir named), and the module denies."""
    mine = user_dir(forge.root, pam_user)
    run_dir = mine / "run"
    run_dir.mkdir(mode=0o700)
    (pam_home / ".chos").write_text("deb13\n")
    os.chown(pam_home / ".chos", pam_user.pw_uid, pam_user.pw_gid)
    policy_path = site_dir.policy(name="forged-run-dir.toml")
    policy_path.write_text(policy_path.read_text().replace(f'run_dir = "{site_dir.run_dir}"', f'run_dir = "{run_dir}"'))
    pam_service.write(f"policy={policy_path} resolver={RESOLVER} run_dir={run_dir}")
    denied(pamtester(pam_service.name), f"site.run_dir {run_dir}: {mine} must be a directory of root's")
    assert pins(run_dir) == []


def test_forged_run_dir_not_the_policys(pam_service, site_dir, pam_user, pam_home, forge):
    """run_dir= elsewhere than the policy's: the module joins only <run_dir>/<its key>/mnt."""
    other = forge.root / "run"
    other.mkdir(mode=0o700)
    (pam_home / ".chos").write_text("deb13\n")
    os.chown(pam_home / ".chos", pam_user.pw_uid, pam_user.pw_gid)
    pam_service.write(module_args(site_dir.policy(), other))
    denied(pamtester(pam_service.name), "is run_dir= the policy's run_dir?")
    assert pins(site_dir.run_dir) == [] and pins(other) == []


def test_forged_resolver_over_ssh_denies_with_one_line(sshd, site_dir, pam_user, pam_home, forge):
    """The same refusal through a real login: ssh shows the one line, the command never runs."""
    bad = forge.program(forge.root / "envsched", owner=pam_user.pw_uid)
    sshd.service.write(f"policy={site_dir.policy()} resolver={bad} run_dir={site_dir.run_dir}")
    r = sshd.ssh(PAM_USER, "echo COMMAND-RAN")
    assert r.returncode == 254
    assert "COMMAND-RAN" not in r.stdout
    lines = envsched_lines(r.stdout + r.stderr)
    assert len(lines) == 1 and f"the resolver {bad} is not trusted, not run" in lines[0], r.stdout + r.stderr
    assert not forge.marker.exists()
    assert wait_no_pins(site_dir.run_dir) == []


def test_forged_chos_over_ssh_through_pam_environment(sshd, site_dir, pam_user, pam_home):
    policy = site_dir.policy(name="ssh-forged-chos.toml", body=f"""
[environments.secret]
path = "{site_dir.envs['deb13']}"
deny_users = ["{PAM_USER}"]
""")
    envfile = pam_home / ".pam_environment"
    envfile.write_text("CHOS DEFAULT=secret\n")
    os.chown(envfile, pam_user.pw_uid, pam_user.pw_gid)
    try:
        sshd.service.write(module_args(policy, site_dir.run_dir),
                           before="session required pam_env.so readenv=0 user_readenv=1")
        r = sshd.ssh(PAM_USER, "echo COMMAND-RAN")
    finally:
        envfile.unlink(missing_ok=True)
    assert r.returncode == 254
    assert "COMMAND-RAN" not in r.stdout
    lines = envsched_lines(r.stdout + r.stderr)
    assert len(lines) == 1 and "environment 'secret' (CHOS variable) refused" in lines[0], r.stdout + r.stderr
    assert wait_no_pins(site_dir.run_dir) == []


def pamtester_with(service: str, *options: str) -> subprocess.CompletedProcess:
    need("pamtester")
    return subprocess.run(["pamtester", "-v", *options, service, PAM_USER, "open_session", "close_session"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})


def test_forged_chos_set_in_the_pam_environment_directly(pam_service, site_dir, pam_user, pam_home):
    """Whatever put CHOS into the PAM environment (here the application itself: pamtester -E), it is
    a request checked for the uid: denied is denied."""
    policy = site_dir.policy(name="pamenv-forged.toml", body=f"""
[environments.secret]
path = "{site_dir.envs['deb13']}"
deny_users = ["{PAM_USER}"]
""")
    pam_service.write(module_args(policy, site_dir.run_dir))
    denied(pamtester_with(pam_service.name, "-E", "CHOS=secret"), "environment 'secret' (CHOS variable) refused")
    r = pamtester_with(pam_service.name, "-E", "CHOS=deb13")
    assert r.returncode == 0, r.stdout
    assert pins(site_dir.run_dir) == []


@pytest.mark.parametrize("answer", ["another key", "another uid", "no uid"])
def test_forged_resolver_answer_is_not_joined(pam_service, site_dir, pam_user, pam_home, forge, answer):
    """The module joins only <run_dir>/pam-<uid>-<its pid>/mnt for the uid PAM_USER names: a (trusted,
    but wrong) resolver that answers with another key or uid is not followed, and the module releases
    its own key, never the one named."""
    other = site_dir.run_dir / "pam-0-1"
    uid = {"another key": pam_user.pw_uid, "another uid": 0, "no uid": None}[answer]
    lines = ["environment deb13", "key pam-0-1" if answer == "another key" else "key $KEY",
             f"pin {other}/mnt" if answer == "another key" else f"pin {site_dir.run_dir}/$KEY/mnt", "reused 0"]
    if uid is not None:
        lines.append(f"uid {uid}")
    fake = forge.root / "envsched"
    fake.write_text("#!/bin/sh\n"
                    f"echo \"$*\" >> {forge.root}/calls\n"
                    "KEY=$(echo \"$*\" | sed -n 's/.*--key \\([^ ]*\\).*/\\1/p')\n"
                    "case \" $* \" in *\" prepare \"*) printf '%s\\n' " + " ".join(f'"{ln}"' for ln in lines) +
                    ";; esac\nexit 0\n")
    fake.chmod(0o755)
    pam_service.write(f"policy={site_dir.policy()} resolver={fake} run_dir={site_dir.run_dir}")
    denied(pamtester(pam_service.name), f"the resolver's answer is not for {PAM_USER}")
    calls = (forge.root / "calls").read_text().splitlines()
    assert len(calls) == 2 and " prepare " in f" {calls[0]} " and " release " in f" {calls[1]} ", calls
    assert f"--key pam-{pam_user.pw_uid}-" in calls[1] and "pam-0-1" not in calls[1]


def test_forged_rhost_and_tty_reach_the_log_printable(pam_service, site_dir, pam_user, pam_home):
    """PAM_RHOST and PAM_TTY are the application's, but a remote host name may come from DNS or a
    client: in the module's log line they cannot start a line of their own or carry escapes."""
    import socket
    if os.path.exists("/dev/log"):
        pytest.skip("/dev/log exists: a syslog daemon owns it, the test does not take it over")
    (pam_home / ".chos").write_text("deb13\n")
    os.chown(pam_home / ".chos", pam_user.pw_uid, pam_user.pw_gid)
    pam_service.write(module_args(site_dir.policy(), site_dir.run_dir))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        try:
            sock.bind("/dev/log")
        except OSError as e:
            pytest.skip(f"/dev/log is taken meanwhile ({e.strerror})")
        os.chmod("/dev/log", 0o666)
        r = pamtester_with(pam_service.name, "-I", "rhost=evil\nenvsched: user=root env=secret",
                           "-I", "tty=/dev/pts/9\x1b[2J")
        assert r.returncode == 0, r.stdout
        sock.settimeout(2)
        got = []
        try:
            while True:
                got.append(sock.recv(65536).decode(errors="replace"))
        except socket.timeout:
            pass
    finally:
        sock.close()
        if os.path.exists("/dev/log"):
            os.unlink("/dev/log")
    ours = [m for m in got if "envsched: user=" in m and " env=deb13 " in m]
    assert len(ours) == 1, got
    assert "rhost=evil?envsched:?user=root?env=secret " in ours[0] and "tty=/dev/pts/9?[2J " in ours[0], ours[0]
    assert "\n" not in ours[0] and "\x1b" not in ours[0]
