"""The user and admin commands, run for real as root and as an unprivileged user."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from testlib import TEST_USER

pytestmark = pytest.mark.ns


def test_chos_list_marks_default_and_current(site_dir, chos_cmd, home):
    (home / ".chos").write_text("deb13\n")
    os.chown(home / ".chos", *_ids(home))
    r = chos_cmd("--policy", str(site_dir.policy()), "list", user=TEST_USER)
    assert r.returncode == 0, r.stderr
    rows = [l.split(None, 1) if l[0] != " " else [" "] + l.split(None, 1) for l in r.stdout.splitlines()[:3]]
    assert r.stdout.splitlines()[:3] == [
        "*  deb12            Debian 12 (mini)",
        " > deb13            Debian 13 (mini)",
        "   local            the host OS, no switch",
    ], rows


def test_chos_which_shows_each_step(site_dir, chos_cmd, home):
    (home / ".chos").write_text("deb12\n")
    os.chown(home / ".chos", *_ids(home))
    r = chos_cmd("--policy", str(site_dir.policy()), "which", user=TEST_USER, env={"CHOS": "deb13"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"your jobs get deb13 ({site_dir.envs['deb13']}), chosen by CHOS variable"
    assert lines[1].split() == ["option", "-", "not", "set"]
    assert lines[2].split() == ["CHOS", "variable", "'deb13'", "chosen"]
    assert lines[3].split() == ["~/.chos", "'deb12'", "overridden"]
    assert lines[-1].split() == ["site", "default", "'deb12'", "overridden"]


def test_chos_which_refused_exit_code(site_dir, chos_cmd, home):
    r = chos_cmd("--policy", str(site_dir.policy()), "which", user=TEST_USER, env={"CHOS": "sl5"})
    assert r.returncode == 77
    assert r.stdout.splitlines()[0] == ("environment 'sl5' (CHOS variable) refused: no such environment "
                                        "at this site; allowed for you: deb12, deb13, local")


def test_chos_compat_mode_names_the_chos_variable(site_dir, chos_cmd, home):
    """`CHOS=deb99 chos true` says where the name came from as `chos which` and the shims do."""
    r = chos_cmd("--policy", str(site_dir.policy()), "true", user=TEST_USER, env={"CHOS": "deb99"})
    assert (r.returncode, r.stdout) == (77, "")
    assert r.stderr.startswith("envsched: environment 'deb99' (CHOS variable) refused: no such environment"), r.stderr


def test_chos_set_writes_file_and_replaces_symlink(site_dir, chos_cmd, home):
    target = home / "precious"
    target.write_text("keep me\n")
    os.chown(target, *_ids(home))
    os.symlink(target, home / ".chos")
    os.lchown(home / ".chos", *_ids(home))
    r = chos_cmd("--policy", str(site_dir.policy()), "set", "deb13", user=TEST_USER)
    assert r.returncode == 0, r.stderr
    assert not (home / ".chos").is_symlink()
    assert (home / ".chos").read_text() == "deb13\n"
    assert target.read_text() == "keep me\n"
    assert (home / ".chos").stat().st_uid == _ids(home)[0]
    target.unlink()


@pytest.mark.parametrize("name,needle", [("sl5", "no such environment"), ("../x", "not a valid environment name")])
def test_chos_set_refuses(site_dir, chos_cmd, home, name, needle):
    r = chos_cmd("--policy", str(site_dir.policy()), "set", name, user=TEST_USER)
    assert r.returncode in (64, 77)
    assert needle in r.stderr
    assert not (home / ".chos").exists()


def test_envsched_check_ok_and_problems(site_dir, envsched_cmd, home):
    r = envsched_cmd("--policy", str(site_dir.policy()), "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("ok (2 environments, default deb12)")
    bad = site_dir.policy(name="check-bad.toml", body='[environments.ghost]\npath = "/os/ghost"\n')
    os.chmod(site_dir.envs["deb13"] / "etc", 0o775)
    try:
        r = envsched_cmd("--policy", str(bad), "check")
    finally:
        os.chmod(site_dir.envs["deb13"] / "etc", 0o755)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        f"{bad}: environments.deb13: {site_dir.envs['deb13']}/etc: writable by group or others (mode 0775)",
        f"{bad}: environments.ghost: /os/ghost: No such file or directory",
    ]


def test_envsched_check_invalid_policy(site_dir, envsched_cmd, home):
    p = site_dir.root / "invalid.toml"
    p.write_text('[site]\ndefault = "nope"\n')
    r = envsched_cmd("--policy", str(p), "check")
    assert r.returncode == 78
    assert r.stdout.strip() == f"{p}:2: site.default: no such environment (defined: none): 'nope'"


def test_explain_json_is_the_plan(site_dir, envsched_cmd, home):
    r = envsched_cmd("--policy", str(site_dir.policy()), "explain", "--user", TEST_USER,
                     "--partition", "debug", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["environment"] == "deb12" and data["source"] == "site default"
    ops = [op["op"] for op in data["plan"]["ops"]]
    assert ops.index("pivot_root") < ops.index("chdir")
    assert data["plan"]["ops"][-2:] == [{"op": "env", "action": "set", "name": "CHOS", "value": "deb12"},
                                        {"op": "env", "action": "unset", "name": "CHOS_DIGEST", "value": None}]


def test_explain_partition_and_group_defaults(site_dir, envsched_cmd, home):
    policy = site_dir.policy(name="defaults.toml", body=f"""
[defaults]
partitions = {{ legacy = "deb12" }}
groups = {{ {TEST_USER} = "deb13" }}
""")
    r = envsched_cmd("--policy", str(policy), "explain", "--user", TEST_USER, "--json")
    assert json.loads(r.stdout)["source"] == f"group default ({TEST_USER})"
    assert json.loads(r.stdout)["environment"] == "deb13"
    r = envsched_cmd("--policy", str(policy), "explain", "--user", TEST_USER, "--partition", "legacy", "--json")
    assert (json.loads(r.stdout)["environment"], json.loads(r.stdout)["source"]) == ("deb12", "partition default")


def test_import_chos_command(site_dir, envsched_cmd, home):
    chos = site_dir.root / "chos"
    chos.write_text(f"# CHOS config\n%SHELLS\nlocal:/\ndeb12:{site_dir.envs['deb12']}\n")
    chos.chmod(0o644)
    r = envsched_cmd("policy", "import-chos", str(chos))
    assert r.returncode == 0, r.stderr
    out = site_dir.root / "imported.toml"
    out.write_text(r.stdout)
    out.chmod(0o644)
    r = envsched_cmd("--policy", str(out), "exec", "--user", TEST_USER, "--request", "deb12", "--",
                     "head", "-1", "/etc/os-release")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'PRETTY_NAME="debian 12 (mini)"'


def _ids(home):
    st = home.stat()
    return st.st_uid, st.st_gid


def test_chos_shell_is_a_login_shell_in_the_environment(site_dir, chos_cmd, home):
    r = chos_cmd("--policy", str(site_dir.policy()), "shell", "deb13", user=TEST_USER, cwd=str(home),
                 stdin='head -1 /etc/os-release; echo "CHOS=$CHOS"; exit 3\n')
    assert r.returncode == 3, r.stderr
    assert r.stdout.splitlines() == ['PRETTY_NAME="debian 13 (mini)"', "CHOS=deb13"]


def test_envsched_check_reports_missing_identity_file(site_dir, envsched_cmd, home):
    hosts = site_dir.envs["deb12"] / "etc" / "hosts"
    hosts.rename(hosts.with_suffix(".away"))
    try:
        r = envsched_cmd("--policy", str(site_dir.policy(name="idcheck.toml")), "check")
    finally:
        hosts.with_suffix(".away").rename(hosts)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [f"{site_dir.root}/idcheck.toml: environments.deb12: {hosts}: missing; "
                                     "the host's /etc/hosts cannot be bound (create an empty file)"]


def test_absolute_symlinks_in_host_sources_resolve_on_the_host(site_dir, envsched_cmd, home):
    # /srv-like site path reached through an absolute symlink, and a tree path through one too
    data = site_dir.root / "sitefs"
    data.mkdir(exist_ok=True)
    (data / "marker").write_text("SITE-FS\n")
    link = site_dir.root / "sitefs-link"
    tree_link = site_dir.root / "deb13-link"
    for l, t in ((link, data), (tree_link, site_dir.envs["deb13"])):
        if l.is_symlink():
            l.unlink()
        l.symlink_to(t)
    policy = site_dir.policy(name="symlinks.toml", site=f'shared = ["/proc", "/dev", {{ path = "{link}", target = "/site" }}]',
                             body=f'[environments.linked]\npath = "{tree_link}"\n')
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "linked", "--",
                     "sh", "-c", "head -1 /etc/os-release; cat /site/marker")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ['PRETTY_NAME="debian 13 (mini)"', "SITE-FS"]


def test_explain_refusal_shows_steps(site_dir, envsched_cmd, home):
    r = envsched_cmd("--policy", str(site_dir.policy()), "explain", "--user", TEST_USER, "--request", "sl5")
    assert r.returncode == 77
    lines = r.stdout.splitlines()
    assert lines[0].startswith("environment 'sl5' (option) refused: no such environment")
    assert lines[1] == "precedence:"
    assert lines[2].split() == ["option", "'sl5'", "refused"]


def test_join_unknown_pin_without_user(site_dir, envsched_cmd, home):
    r = envsched_cmd("--policy", str(site_dir.policy()), "join", "--key", "ghost", "--", "true")
    assert (r.returncode, r.stderr.strip()) == (71, "envsched: no pin ghost on this node")


def test_pins_needs_root(site_dir, envsched_cmd, home):
    r = envsched_cmd("--policy", str(site_dir.policy()), "pins", user=TEST_USER)
    assert (r.returncode, r.stderr.strip()) == (73, "envsched: envsched pins needs root")


def test_failures_after_pivot_reach_the_admin_log(site_dir, envsched_cmd, home):
    policy = site_dir.policy(name="logfail.toml")
    log = site_dir.root / "envsched.log"
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--request", "deb13",
                     "--job", "777", "--", "/no/such/program")
    assert r.returncode == 127
    last = log.read_text().splitlines()[-1]
    assert f"event=failed job=777 user={TEST_USER} env=deb13 step=exec code=127" in last
    assert "/no/such/program: command not found in environment deb13" in last


def test_prepare_release_and_gc_are_logged(site_dir, envsched_cmd, home):
    policy = site_dir.policy(name="logpins.toml")
    log = site_dir.root / "envsched.log"
    r = envsched_cmd("--policy", str(policy), "prepare", "--key", "logged", "--user", TEST_USER,
                     "--job", "778", "--owner-pid", str(os.getpid()))
    assert r.returncode == 0, r.stderr
    envsched_cmd("--policy", str(policy), "release", "--key", "logged")
    tail = log.read_text().splitlines()[-2:]
    assert f"event=prepared job=778 user={TEST_USER} env=deb12 key=logged owner={os.getpid()}" in tail[0]
    assert "event=released key=logged" in tail[1]


def test_partition_restricted_environment_set_and_run(site_dir, chos_cmd, home):
    policy = site_dir.policy(name="legacy.toml", body=f"""
[environments.legacy]
path = "{site_dir.envs['deb12']}"
allow_partitions = ["old"]
""")
    r = chos_cmd("--policy", str(policy), "set", "legacy", user=TEST_USER)
    assert r.returncode == 0, r.stderr                      # a choice for later jobs in "old"
    r = chos_cmd("--policy", str(policy), "run", "legacy", "--", "true", user=TEST_USER, cwd=str(home))
    assert r.returncode == 77 and "not allowed in partition (none)" in r.stderr
    r = chos_cmd("--policy", str(policy), "run", "--partition", "old", "legacy", "--", "sh", "-c", "echo $CHOS",
                 user=TEST_USER, cwd=str(home))
    assert (r.returncode, r.stdout.strip()) == (0, "legacy"), r.stderr


def test_gc_releases_a_pin_whose_owner_is_a_zombie(site_dir, envsched_cmd, home):
    """A pin's owner that has exited but is not reaped yet (a zombie: a Grid Engine shepherd whose
    execd is slow to wait for it) is gone for gc, as for the C runtime (es_join.c es_start_time);
    a live owner's pin stays."""
    policy = site_dir.policy(name="zombie.toml")
    child = os.fork()
    if child == 0:
        os._exit(0)                                     # exits; not reaped until the end of the test
    try:
        deadline = time.monotonic() + 5
        while open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for key, owner in (("zombie-owned", child), ("live-owned", os.getpid())):
            r = envsched_cmd("--policy", str(policy), "prepare", "--key", key, "--user", TEST_USER,
                             "--owner-pid", str(owner))
            assert (r.returncode == 0) == (owner == os.getpid()), r.stderr   # a zombie is no owner
        # made while the child still ran: a pin of a process that then became a zombie
        live = subprocess.Popen(["sleep", "30"])
        r = envsched_cmd("--policy", str(policy), "prepare", "--key", "zombie-later", "--user", TEST_USER,
                         "--owner-pid", str(live.pid))
        assert r.returncode == 0, r.stderr
        live.kill()
        deadline = time.monotonic() + 5
        while open(f"/proc/{live.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        r = envsched_cmd("--policy", str(policy), "gc")
        assert r.returncode == 0, r.stderr
        assert "released zombie-later" in r.stdout and "live-owned" not in r.stdout, r.stdout
        live.wait()
    finally:
        os.waitpid(child, 0)
        envsched_cmd("--policy", str(policy), "release", "--key", "live-owned")
