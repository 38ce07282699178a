"""Versions and images in the core: the request grammar, the policy keys, the decision for
`user:NAME` and `NAME@SELECTOR`, and what the plan makes of them (#11)."""
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

from envsched.errors import PolicyError
from envsched.identity import UserInfo
from envsched.names import EnvRequest, is_digest, parse_request
from envsched.pin import PinMeta
from envsched.plan import Plan, build_plan, with_identity
from envsched.policy.load import parse_policy_text
from envsched.resolve import Decision, Refusal, Request, resolve
from envsched.shim import shim_lines
from envsched.userimage import check_report, valid_env_entry

HEX = "0123456789abcdef" * 4
ALICE = UserInfo("alice", 1000, 1000, (1000,), ("alice",), "/home/alice", "/bin/sh")

POLICY = """\
[site]
default = "deb12"
[environments.deb12]
path = "/os/deb12"
version = "2026.12"
[environments.ci]
image = "bookworm"
writable = "tmpfs"
[environments.ci-pinned]
image = "bookworm@sha256:%s"
[environments.deb12rw]
path = "/os/deb12"
writable = "tmpfs"
[user_images]
enabled = true
allow_groups = ["staff"]
deny_users = ["mallory"]
allow_partitions = ["debug"]
max_size = "2G"
store = "/scratch/{user}/images"
writable = "tmpfs"
binds = [{ source = "/global/sw", target = "/opt/sw" }]
[user_images.env]
set = { LANG = "C.UTF-8" }
""" % HEX


def policy(text: str = POLICY):
    return parse_policy_text(textwrap.dedent(text), "policy.toml")


def error(text: str) -> str:
    with pytest.raises(PolicyError) as e:
        policy(text)
    return e.value.message


# -- the request grammar --------------------------------------------------------------------
@pytest.mark.parametrize("value, parsed", [
    ("deb12", EnvRequest("deb12")),
    ("deb12@2026.12", EnvRequest("deb12", "2026.12")),
    ("deb12@sha256:" + HEX[:12], EnvRequest("deb12", "sha256:" + HEX[:12])),
    ("deb12@sha256:" + HEX, EnvRequest("deb12", "sha256:" + HEX)),
    ("user:app", EnvRequest("app", None, True)),
    ("user:app@v2", EnvRequest("app", "v2", True)),
    ("local", EnvRequest("local")),
])
def test_request_grammar_accepts(value, parsed):
    assert parse_request(value) == parsed
    assert parse_request(value).text == value


@pytest.mark.parametrize("value", [
    "deb12@", "@v1", "deb12@sha256:" + HEX[:11], "deb12@sha256:" + HEX + "0", "deb12@SHA256:" + HEX,
    "deb12@sha256:" + HEX.upper(), "a@b@c", "user:", "user:local", "local@v1", "user:../x", "user:app@",
    "deb12@../../etc", "user:user:app", "deb12@v 1", "deb12\n@v1", "",
])
def test_request_grammar_refuses(value):
    assert parse_request(value) is None


def test_digest_grammar():
    assert is_digest("sha256:" + HEX, full=True) and not is_digest("sha256:" + HEX[:12], full=True)
    assert is_digest("sha256:" + HEX[:12]) and not is_digest("sha512:" + HEX)


# -- the policy -----------------------------------------------------------------------------
def test_policy_keys():
    p = policy()
    assert p.environments["deb12"].version == "2026.12"
    ci = p.environments["ci"]
    assert (ci.kind, ci.image, ci.path, ci.writable) == ("image", "bookworm", "", "tmpfs")
    assert p.environments["ci-pinned"].image == "bookworm@sha256:" + HEX
    ui = p.user_images
    assert ui.enabled and ui.allow_groups == ("staff",) and ui.max_size == 2 * 1024 ** 3
    assert ui.store == "/scratch/{user}/images" and ui.binds[0].target == "/opt/sw" and ui.writable == "tmpfs"
    assert ui.env.set == {"LANG": "C.UTF-8"}
    assert p.site.image_dir == "/var/lib/envsched/images" and p.site.pin_at_submit is True


def test_user_images_off_by_default():
    assert policy("[site]\n").user_images.enabled is False


@pytest.mark.parametrize("body, problem", [
    ('[environments.x]\nimage = "b"\npath = "/os/b"\n', "give either path"),
    ('[environments.x]\nimage = "b@sha256:0123"\n', "must be NAME or NAME@sha256:<64 hex digits>"),
    ('[environments.x]\nimage = "../b"\n', "must be NAME or NAME@sha256"),
    ('[environments.x]\nimage = "b"\nkind = "tree"\n', "an environment from the image store is an image"),
    ('[environments.x]\npath = "/os/x"\nwritable = "yes"\n', "must be one of"),
    ('[environments.x]\npath = "/os/x"\nversion = "a b"\n', "not a valid version label"),
    ('[environments.x]\npath = "/os/x"\nenv = { set = { CHOS_DIGEST = "x" } }\n', "CHOS_DIGEST is set by envsched"),
    ('[user_images]\nstore = "/scratch/images"\n', "must contain {user}"),
    ('[user_images]\nstore = "../x"\n', "relative to the home directory"),
    ('[user_images]\nmax_size = "lots"\n', "must be a size"),
    ('[user_images]\nmax_size = 0\n', "must be a size"),
    ('[user_images]\nenabled = true\nsurprise = 1\n', "unknown key"),
])
def test_policy_refuses(body, problem):
    assert problem in error(body)


# -- the decision ---------------------------------------------------------------------------
def test_selector_is_carried():
    d = resolve(policy(), Request("bob", option="deb12@sha256:" + HEX[:12]))
    assert isinstance(d, Decision) and (d.name, d.selector) == ("deb12", "sha256:" + HEX[:12])


def test_user_image_decision():
    d = resolve(policy(), Request("alice", groups=("staff",), partition="debug", option="user:app@v1"))
    assert isinstance(d, Decision) and d.name == "user:app" and d.selector == "v1"
    env = d.environment
    assert (env.kind, env.image, env.writable) == ("user-image", "app", "tmpfs")
    assert env.binds[0].target == "/opt/sw" and env.env.set == {"LANG": "C.UTF-8"}


@pytest.mark.parametrize("req, reason", [
    (Request("bob", partition="debug", option="user:app"), "restricted to other users or groups"),
    (Request("mallory", groups=("staff",), partition="debug", option="user:app"), "may not run their own"),
    (Request("alice", groups=("staff",), partition="batch", option="user:app"), "not allowed in partition"),
])
def test_user_image_refusals(req, reason):
    r = resolve(policy(), req)
    assert isinstance(r, Refusal) and reason in r.reason


def test_user_images_disabled_refuses_with_one_line():
    r = resolve(policy("[site]\n"), Request("alice", option="user:app"))
    assert isinstance(r, Refusal) and r.message().startswith(
        "environment 'user:app' (option) refused: this site does not run users' own images")


def test_allowed_names_mention_user_images_only_when_allowed():
    r = resolve(policy(), Request("alice", groups=("staff",), partition="debug", option="nope"))
    assert "user:NAME (your own images)" in r.allowed
    r = resolve(policy(), Request("bob", option="nope"))
    assert not any(a.startswith("user:") for a in r.allowed)


# -- the plan -------------------------------------------------------------------------------
def test_image_env_under_the_policy_and_chos_digest_last():
    p = policy()
    env = p.environments["deb12"]
    plan = build_plan(p, "deb12", env, ALICE, "/work", digest="sha256:" + HEX,
                      image_env=("PATH=/img/bin", "LANG=img", "CHOS=forged"), workdir="/app")
    envs = [(o["action"], o["name"], o["value"]) for o in plan.process_ops if o["op"] == "env"]
    assert envs == [("set", "PATH", "/img/bin"), ("set", "LANG", "img"), ("set", "CHOS", "deb12"),
                    ("set", "CHOS_DIGEST", "sha256:" + HEX)]
    assert plan.process_ops[0] == {"op": "chdir", "candidates": ["/work", "/app", "/home/alice", "/"]}
    assert plan.digest == "sha256:" + HEX
    assert Plan.from_json(plan.to_json()) == plan


def test_writable_plan_takes_env_dirs_from_the_overlay():
    p = policy()
    plan = build_plan(p, "deb12rw", p.environments["deb12rw"], ALICE, "/work")
    assert plan.ops[0] == {"op": "writable", "kind": "tmpfs"}
    assert {o["root"] for o in plan.ops if o["op"] == "env_dir"} == {"image"}
    read_only = build_plan(p, "deb12", p.environments["deb12"], ALICE, "/work")
    assert not any(o["op"] == "writable" for o in read_only.ops)


def test_user_image_plan_and_identity_found_later():
    p = policy()
    d = resolve(p, Request("alice", groups=("staff",), partition="debug", option="user:app@v1"))
    plan = build_plan(p, d.name, d.environment, ALICE, "/work", selector=d.selector)
    assert plan.kind == "user-image" and plan.digest == ""
    assert {"op": "user_image", "name": "app", "selector": "v1"} in plan.mount_ops
    found = with_identity(plan, "/scratch/alice/images/blobs/x.sqfs", "sha256:" + HEX, ("PATH=/opt/app/bin",),
                          "/opt/app")
    assert found.source.endswith("x.sqfs") and found.digest == "sha256:" + HEX
    envs = [(o["name"], o["value"]) for o in found.process_ops if o["op"] == "env"]
    assert envs[0] == ("PATH", "/opt/app/bin") and envs[-2:] == [("CHOS", "user:app"), ("CHOS_DIGEST", "sha256:" + HEX)]
    assert found.process_ops[0]["candidates"][:2] == ["/work", "/opt/app"]
    assert found.mount_ops == plan.mount_ops       # the same view: a later step may reuse the pin
    lines = shim_lines(d, found, "k", "/run/envsched/k/mnt", False, ALICE)
    assert "userns 1" in lines and f"digest sha256:{HEX}" in lines and f"env set CHOS_DIGEST sha256:{HEX}" in lines


@pytest.mark.parametrize("report", [
    {"source": "rel/path", "digest": "", "image_env": [], "workdir": ""},
    {"source": "/x", "digest": "sha256:short", "image_env": [], "workdir": ""},
    {"source": "/x", "digest": "", "image_env": ["PATH"], "workdir": ""},
    {"source": "/x", "digest": "", "image_env": ["A=b\nenv set LD_PRELOAD /x"], "workdir": ""},
    {"source": "/x", "digest": "", "image_env": ["1A=b"], "workdir": ""},
    {"source": "/x", "digest": "", "image_env": ["A=b"] * 1025, "workdir": ""},
    {"source": "/x", "digest": "", "image_env": [], "workdir": "relative"},
    {"source": "/x\n", "digest": "", "image_env": [], "workdir": ""},
    {"source": "/x", "digest": "", "image_env": "A=b", "workdir": ""},
])
def test_forged_user_builder_report(report):
    """The builder of a user image runs as the user, who may write anything into its pipe."""
    with pytest.raises(Exception) as e:
        check_report(report)
    assert "malformed" in str(e.value)


def test_a_good_report_passes():
    assert check_report({"source": "/s/x.sqfs", "digest": "sha256:" + HEX, "image_env": ["A=b=c", "_X="],
                         "workdir": "/w"}) == ("/s/x.sqfs", "sha256:" + HEX, ("A=b=c", "_X="), "/w")
    assert valid_env_entry("PATH=/a:/b") and not valid_env_entry("=x") and not valid_env_entry("A-B=x")


def test_pin_meta_of_older_pins_still_reads():
    old = {"key": "k", "environment": "deb12", "user": "alice", "uid": 1000, "owner_pid": 1,
           "owner_start": 5, "created": 1.5}
    meta = PinMeta.from_json(json.dumps(old))
    assert (meta.digest, meta.userns) == ("", False)
    meta = PinMeta.from_json(json.dumps(dict(old, digest="sha256:" + HEX, userns=True)))
    assert meta.userns is True
    with pytest.raises(ValueError):
        PinMeta.from_json(json.dumps(dict(old, userns="yes")))
    with pytest.raises(ValueError):
        PinMeta.from_json(json.dumps(dict(old, extra=1)))


def test_the_resolvers_parser_imports_no_image_or_stamp_tools():
    """Every resolver run (a job start) builds `envsched`'s parser: the image and stamp commands
    must not pull hashlib, subprocess or the image store in with it."""
    import subprocess
    code = ("import sys; import envsched.cli.envsched as e; e.build_parser(); "
            "print(sorted(m for m in ('hashlib', 'subprocess', 'envsched.images.store', 'envsched.versions') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "..", "src")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_image_cmds_formats_match_the_store():
    from envsched.cli.image_cmds import FORMATS
    from envsched.images.store import FORMATS as STORE_FORMATS
    assert FORMATS == STORE_FORMATS
