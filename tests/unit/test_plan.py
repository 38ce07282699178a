"""The plan of entering an environment, as plain data (envsched.plan)."""
from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from envsched.identity import UserInfo
from envsched.plan import PLAN_VERSION, Plan, build_plan, env_ops
from envsched.policy.load import parse_policy_text
from envsched.policy.model import Environment, Policy

UNSET_DIGEST = {"op": "env", "action": "unset", "name": "CHOS_DIGEST", "value": None}
ALICE = UserInfo(name="alice", uid=1000, gid=1000, gids=(1000, 50), groups=("alice", "hep"),
                 home="/home/alice", shell="/bin/bash")

POLICY = """\
[site]
shared = ["/proc", "/dev", { path = "/gpfs/home", target = "/home" },
          { path = "/scratch", mode = "ro", required = false }, "/dev/shm"]
identity_files = ["/etc/passwd", "/etc/group"]
local_root = "/host"

[environments.sl6]
path = "/os/sl6"
dirs = ["usr", "etc", "lib64"]
binds = ["/opt/sw", { source = "/data/x", target = "/x", mode = "rw", required = false }]

[environments.sl6.env]
set = { LANG = "C", A = "1" }
prepend = { PATH = "/opt/sw/bin:" }
append = { MANPATH = ":/opt/man" }
unset = ["LD_PRELOAD", "PYTHONPATH"]

[environments.deb12]
path = "/images/deb12.sqfs"
kind = "image"
dirs = ["usr", "etc"]
"""


def policy(text: str = POLICY) -> Policy:
    return parse_policy_text(textwrap.dedent(text), "policy.toml")


@pytest.fixture(scope="module")
def pol() -> Policy:
    return policy()


@pytest.fixture(scope="module")
def sl6_plan(pol) -> Plan:
    return build_plan(pol, "sl6", pol.environments["sl6"], ALICE, "/home/alice/run")


def bind(source, target, required=True, root="host"):
    return {"op": "bind", "root": root, "source": source, "target": target, "required": required,
            "recursive": True}


def remount(target, ro, nodev=True, required=True, recursive=True):
    return {"op": "remount", "target": target, "ro": ro, "nosuid": True, "nodev": nodev,
            "recursive": recursive, "required": required}


# -- local --------------------------------------------------------------------------------

def test_local_plan_has_no_mount_ops(pol):
    plan = build_plan(pol, "local", None, ALICE, "/work")
    assert (plan.environment, plan.kind, plan.source) == ("local", "local", "")
    assert plan.ops == [
        {"op": "chdir", "candidates": ["/work", "/home/alice", "/"]},
        {"op": "env", "action": "set", "name": "CHOS", "value": "local"},
        {"op": "env", "action": "unset", "name": "CHOS_DIGEST", "value": None},
    ]
    assert plan.mount_ops == []
    assert plan.process_ops == plan.ops
    assert not any(op["op"] in ("bind", "remount", "env_dir", "pivot_root") for op in plan.ops)


# -- tree ---------------------------------------------------------------------------------

def test_tree_plan_header(sl6_plan):
    assert (sl6_plan.environment, sl6_plan.kind, sl6_plan.source) == ("sl6", "tree", "/os/sl6")


def test_tree_plan_full_op_order(sl6_plan):
    assert sl6_plan.ops == [
        {"op": "env_dir", "root": "host", "name": "usr"},
        {"op": "env_dir", "root": "host", "name": "etc"},
        {"op": "env_dir", "root": "host", "name": "lib64"},
        # shared, in policy order, each followed by its remount
        bind("/proc", "/proc"), remount("/proc", ro=False),
        bind("/dev", "/dev"), remount("/dev", ro=False, nodev=False),
        bind("/gpfs/home", "/home"), remount("/home", ro=False),
        bind("/scratch", "/scratch", required=False), remount("/scratch", ro=True, required=False),
        bind("/dev/shm", "/dev/shm"), remount("/dev/shm", ro=False, nodev=False),
        # identity files: read-only, optional
        bind("/etc/passwd", "/etc/passwd", required=False),
        remount("/etc/passwd", ro=True, required=False),
        bind("/etc/group", "/etc/group", required=False),
        remount("/etc/group", ro=True, required=False),
        # the environment's own binds
        bind("/opt/sw", "/opt/sw"), remount("/opt/sw", ro=True),
        bind("/data/x", "/x", required=False), remount("/x", ro=False, required=False),
        # the host, read-only and recursive
        bind("/", "/host"), remount("/host", ro=True, recursive=True),
        # login shells: the env operations again after the tree's /etc/profile (loginenv.py)
        {"op": "login_env", "dir": "/etc/profile.d", "name": "zz-envsched.sh"},
        # the view's root
        remount("/", ro=True, recursive=False),
        {"op": "pivot_root"},
        {"op": "chdir", "candidates": ["/home/alice/run", "/home/alice", "/"]},
        {"op": "env", "action": "set", "name": "LANG", "value": "C"},
        {"op": "env", "action": "set", "name": "A", "value": "1"},
        {"op": "env", "action": "prepend", "name": "PATH", "value": "/opt/sw/bin:"},
        {"op": "env", "action": "append", "name": "MANPATH", "value": ":/opt/man"},
        {"op": "env", "action": "unset", "name": "LD_PRELOAD", "value": None},
        {"op": "env", "action": "unset", "name": "PYTHONPATH", "value": None},
        {"op": "env", "action": "set", "name": "CHOS", "value": "sl6"},
        {"op": "env", "action": "unset", "name": "CHOS_DIGEST", "value": None},
    ]


def test_every_bind_is_followed_by_its_remount_with_nosuid(sl6_plan):
    ops = sl6_plan.ops
    for i, op in enumerate(ops):
        if op["op"] == "bind":
            nxt = ops[i + 1]
            assert nxt["op"] == "remount" and nxt["target"] == op["target"]
            assert nxt["nosuid"] is True
            assert nxt["nodev"] is (not (op["target"] == "/dev" or op["target"].startswith("/dev/")))


def test_all_remounts_nosuid_and_nodev_except_dev(sl6_plan):
    remounts = {op["target"]: op for op in sl6_plan.ops if op["op"] == "remount"}
    assert all(op["nosuid"] for op in remounts.values())
    assert {t for t, op in remounts.items() if not op["nodev"]} == {"/dev", "/dev/shm"}


def test_devices_is_not_dev():
    p = policy('[site]\nshared = ["/devices", "/dev"]\n[environments.x]\npath = "/x"\n')
    ops = build_plan(p, "x", p.environments["x"], ALICE, "/").ops
    nodev = {op["target"]: op["nodev"] for op in ops if op["op"] == "remount"}
    assert nodev["/devices"] is True and nodev["/dev"] is False


def test_chos_is_last_env_op(sl6_plan):
    env = [op for op in sl6_plan.ops if op["op"] == "env"]
    # CHOS last but for CHOS_DIGEST, unset here: a version without a digest keeps none the job brought
    assert env[-2:] == [{"op": "env", "action": "set", "name": "CHOS", "value": "sl6"}, UNSET_DIGEST]
    assert sl6_plan.ops[-1] == env[-1]
    assert [op["name"] for op in env].count("CHOS") == 1


def test_chdir_candidates(pol):
    plan = build_plan(pol, "sl6", pol.environments["sl6"], ALICE, "/tmp/x y")
    chdir = [op for op in plan.ops if op["op"] == "chdir"]
    assert chdir == [{"op": "chdir", "candidates": ["/tmp/x y", "/home/alice", "/"]}]


def test_pivot_root_once_and_before_process_ops(sl6_plan):
    kinds = [op["op"] for op in sl6_plan.ops]
    assert kinds.count("pivot_root") == 1
    p = kinds.index("pivot_root")
    assert set(kinds[p + 1:]) == {"chdir", "env"}
    assert "chdir" not in kinds[:p] and "env" not in kinds[:p]
    assert kinds[p - 1] == "remount" and sl6_plan.ops[p - 1]["target"] == "/"


def test_env_dirs_come_first(sl6_plan):
    kinds = [op["op"] for op in sl6_plan.ops]
    assert kinds[:3] == ["env_dir"] * 3
    assert "env_dir" not in kinds[3:]


def test_no_local_root():
    p = policy('[site]\nlocal_root = ""\nshared = []\nidentity_files = []\n[environments.x]\npath = "/x"\n'
               'dirs = ["usr"]\n')
    plan = build_plan(p, "x", p.environments["x"], ALICE, "/w")
    assert plan.ops == [
        {"op": "env_dir", "root": "host", "name": "usr"},
        remount("/", ro=True, recursive=False),
        {"op": "pivot_root"},
        {"op": "chdir", "candidates": ["/w", "/home/alice", "/"]},
        {"op": "env", "action": "set", "name": "CHOS", "value": "x"},
        {"op": "env", "action": "unset", "name": "CHOS_DIGEST", "value": None},
    ]


def test_default_site_plan_uses_default_shared_and_identity():
    p = policy('[environments.x]\npath = "/x"\n')
    plan = build_plan(p, "x", p.environments["x"], ALICE, "/")
    binds = [(op["source"], op["target"], op["required"]) for op in plan.ops if op["op"] == "bind"]
    assert binds == [("/proc", "/proc", True), ("/dev", "/dev", True), ("/sys", "/sys", True),
                     ("/tmp", "/tmp", True), ("/var/tmp", "/var/tmp", True), ("/home", "/home", True),
                     ("/etc/passwd", "/etc/passwd", False), ("/etc/group", "/etc/group", False),
                     ("/etc/hosts", "/etc/hosts", False), ("/etc/resolv.conf", "/etc/resolv.conf", False),
                     ("/etc/nsswitch.conf", "/etc/nsswitch.conf", False), ("/", "/local", True)]
    dirs = [op["name"] for op in plan.ops if op["op"] == "env_dir"]
    assert dirs == ["bin", "etc", "lib", "lib32", "lib64", "libx32", "opt", "sbin", "usr"]


# -- image --------------------------------------------------------------------------------

def test_image_plan_uses_image_root_for_env_dirs(pol):
    plan = build_plan(pol, "deb12", pol.environments["deb12"], ALICE, "/w")
    assert (plan.environment, plan.kind, plan.source) == ("deb12", "image", "/images/deb12.sqfs")
    env_dirs = [op for op in plan.ops if op["op"] == "env_dir"]
    assert env_dirs == [{"op": "env_dir", "root": "image", "name": "usr"},
                        {"op": "env_dir", "root": "image", "name": "etc"}]
    # host paths still come from the host
    assert {op["root"] for op in plan.ops if op["op"] == "bind"} == {"host"}
    assert plan.ops[-2] == {"op": "env", "action": "set", "name": "CHOS", "value": "deb12"}


def test_image_and_tree_differ_only_in_env_dir_root(pol):
    deb = pol.environments["deb12"]
    as_tree = Environment(deb.name, deb.path, "tree", dirs=deb.dirs)
    tree_ops = build_plan(pol, "deb12", as_tree, ALICE, "/").ops
    image_ops = build_plan(pol, "deb12", deb, ALICE, "/").ops
    assert len(tree_ops) == len(image_ops)
    diffs = [(a, b) for a, b in zip(tree_ops, image_ops) if a != b]
    assert diffs == [({"op": "env_dir", "root": "host", "name": d}, {"op": "env_dir", "root": "image", "name": d})
                     for d in ("usr", "etc")]


# -- mount_ops / process_ops --------------------------------------------------------------

def test_mount_ops_stop_at_pivot_root(sl6_plan):
    m = sl6_plan.mount_ops
    assert m[-1] == {"op": "pivot_root"}
    assert m == sl6_plan.ops[:len(m)]
    assert len(m) == len(sl6_plan.ops) - 9   # chdir + 8 env ops follow


def test_process_ops(sl6_plan):
    p = sl6_plan.process_ops
    assert [op["op"] for op in p] == ["chdir"] + ["env"] * 8
    assert p == sl6_plan.ops[-9:]
    assert len(sl6_plan.mount_ops) + len(p) == len(sl6_plan.ops)


def test_mount_ops_of_hand_made_plan_stop_at_first_pivot_root():
    plan = Plan("x", "tree", "/x", [{"op": "bind"}, {"op": "pivot_root"}, {"op": "bind"},
                                    {"op": "chdir", "candidates": ["/"]}])
    assert plan.mount_ops == [{"op": "bind"}, {"op": "pivot_root"}]
    assert plan.process_ops == [{"op": "chdir", "candidates": ["/"]}]


def test_env_ops_function():
    assert env_ops(None, "local") == [{"op": "env", "action": "set", "name": "CHOS", "value": "local"}, UNSET_DIGEST]
    env = Environment("x", "/x")
    assert env_ops(env, "x") == [{"op": "env", "action": "set", "name": "CHOS", "value": "x"}, UNSET_DIGEST]


# -- JSON ---------------------------------------------------------------------------------

def test_json_round_trip(sl6_plan):
    text = sl6_plan.to_json()
    back = Plan.from_json(text)
    assert back == sl6_plan
    assert back.ops == sl6_plan.ops and back.ops is not sl6_plan.ops


def test_json_round_trip_local_and_image(pol):
    for plan in (build_plan(pol, "local", None, ALICE, "/"),
                 build_plan(pol, "deb12", pol.environments["deb12"], ALICE, "/")):
        assert Plan.from_json(plan.to_json()) == plan


def test_json_content(sl6_plan):
    data = json.loads(sl6_plan.to_json())
    assert data["version"] == PLAN_VERSION == 1
    assert set(data) == {"version", "environment", "kind", "source", "ops", "digest"}
    assert data["environment"] == "sl6" and data["source"] == "/os/sl6"
    assert data["ops"][-2] == {"op": "env", "action": "set", "name": "CHOS", "value": "sl6"}
    assert {"op": "env", "action": "unset", "name": "LD_PRELOAD", "value": None} in data["ops"]


def test_json_is_deterministic(pol, sl6_plan):
    again = build_plan(pol, "sl6", pol.environments["sl6"], ALICE, "/home/alice/run")
    assert again.to_json() == sl6_plan.to_json()


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_wrong_plan_version_rejected(sl6_plan, version):
    data = json.loads(sl6_plan.to_json())
    data["version"] = version
    with pytest.raises(ValueError, match="unsupported plan version"):
        Plan.from_json(json.dumps(data))


def test_missing_plan_version_rejected(sl6_plan):
    data = json.loads(sl6_plan.to_json())
    del data["version"]
    with pytest.raises(ValueError, match="unsupported plan version"):
        Plan.from_json(json.dumps(data))


def test_from_json_rejects_garbage():
    with pytest.raises(ValueError):
        Plan.from_json("{not json")


# -- purity -------------------------------------------------------------------------------

def test_build_plan_does_not_touch_the_file_system(pol):
    # a policy and cwd naming paths that cannot exist: the plan is still built
    env = Environment("ghost", "/nonexistent/ghost", dirs=("usr",))
    plan = build_plan(pol, "ghost", env, ALICE, "/nonexistent/cwd")
    assert plan.source == "/nonexistent/ghost"
    assert plan.process_ops[0]["candidates"][0] == "/nonexistent/cwd"
