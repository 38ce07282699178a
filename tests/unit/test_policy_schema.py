"""The site policy: TOML text to typed Policy, and every way a policy is refused.

Every refusal is one line, `policy.toml[:line]: key.path: problem[: 'value']`; the tests
assert whole messages, line numbers included, so a drifting locator or a reworded key shows.
"""
from __future__ import annotations

import os
import sys
import textwrap

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from envsched.errors import PolicyError
from envsched.exitcodes import ExitCode
from envsched.names import NAME_RULE
from envsched.policy.load import parse_policy_text
from envsched.policy.locate import line_of
from envsched.policy.model import (DEFAULT_DIRS, DEFAULT_IDENTITY, DEFAULT_RUN_DIR, DEFAULT_SHARED,
                                   Defaults, EnvOps, Environment, Mount, Policy, Site)
from envsched.policy.schema import build_policy

SRC = "policy.toml"
BAD_NAME = f"not a valid environment name ({NAME_RULE})"
SITE_ALLOWED = ("allow_local, decision_cache, default, gpu_libraries, gpu_search_dirs, identity_files, image_dir, "
                "image_hold, local_root, log_file, node_hook_timeout, on_error, "
                "pin_at_submit, run_dir, shared, user_file, user_file_timeout, view_hold")
ENV_ALLOWED = ("allow_accounts, allow_groups, allow_partitions, allow_users, binds, deny_groups, "
               "deny_users, description, devices, dirs, enabled, env, gpus, gpus_required, hostname, image, "
               "kind, launcher, namespaces, node_epilog, node_prolog, path, version, writable")


def parse(text: str) -> Policy:
    return parse_policy_text(textwrap.dedent(text), SRC)


def error(text: str) -> str:
    """The one-line message a policy is refused with (asserting it is refused)."""
    with pytest.raises(PolicyError) as info:
        parse(text)
    e = info.value
    msg = str(e)
    assert msg == e.message
    assert e.code == ExitCode.POLICY_INVALID
    assert len(msg.splitlines()) == 1, msg
    assert msg.startswith(SRC + ":") or msg.startswith(SRC + " ")
    return msg


# A policy that sets every key there is. Line numbers matter: messages are checked against them.
FULL = """\
[site]
default = "sl6"
on_error = "default"
user_file = ".envsched"
shared = [
  "/proc",
  "/dev",
  { path = "/home", mode = "rw" },
  { path = "/gpfs/scratch", target = "/scratch", mode = "ro", required = false },
]
identity_files = ["/etc/passwd", "/etc/group"]
local_root = "/host"
allow_local = true
run_dir = "/run/es"
log_file = "/var/log/envsched.log"
user_file_timeout = 2.5

[defaults]
groups = { physics = "sl6", chem = "deb12" }
partitions = { old = "sl6" }
queues = { "batch.q" = "deb12" }
accounts = { legacy = "sl6" }

[environments.sl6]
path = "/os/sl6/"
kind = "tree"
description = "Scientific Linux 6"
enabled = true
dirs = ["usr", "etc", "lib64"]
binds = [
  "/opt/sw",
  { source = "/data/sl6-etc", target = "/etc/sl6", mode = "rw", required = false },
]
allow_users = ["alice", "bob"]
allow_groups = ["physics"]
allow_accounts = ["legacy", "hep"]
allow_partitions = ["old"]
deny_users = ["mallory"]
deny_groups = ["banned"]

[environments.sl6.env]
set = { LANG = "C", SITE_OS = "sl6" }
prepend = { PATH = "/opt/sl6/bin:" }
append = { MANPATH = ":/opt/sl6/man" }
unset = ["LD_PRELOAD", "PYTHONPATH"]

[environments.deb12]
path = "/images/deb12.sqfs"
kind = "image"
enabled = false
"""


# -- a full, valid policy -----------------------------------------------------------------

@pytest.fixture(scope="module")
def full() -> Policy:
    return parse_policy_text(FULL, SRC)


def test_full_policy_site(full):
    assert full.source == SRC
    assert full.site == Site(
        default="sl6", on_error="default", user_file=".envsched",
        shared=(Mount("/proc", "/proc", True, True), Mount("/dev", "/dev", True, True),
                Mount("/home", "/home", True, True),
                Mount("/gpfs/scratch", "/scratch", writable=False, required=False)),
        identity_files=("/etc/passwd", "/etc/group"), local_root="/host", allow_local=True,
        run_dir="/run/es", log_file="/var/log/envsched.log", user_file_timeout=2.5)


def test_full_policy_defaults_queues_merge_into_partitions(full):
    assert full.defaults == Defaults(partitions={"old": "sl6", "batch.q": "deb12"},
                                     groups={"physics": "sl6", "chem": "deb12"},
                                     accounts={"legacy": "sl6"})
    assert list(full.defaults.groups) == ["physics", "chem"]   # order of the file is kept


def test_full_policy_tree_environment(full):
    assert full.environments["sl6"] == Environment(
        name="sl6", path="/os/sl6", kind="tree", description="Scientific Linux 6", enabled=True,
        dirs=("usr", "etc", "lib64"),
        binds=(Mount("/opt/sw", "/opt/sw", writable=False, required=True),
               Mount("/data/sl6-etc", "/etc/sl6", writable=True, required=False)),
        env=EnvOps(set={"LANG": "C", "SITE_OS": "sl6"}, prepend={"PATH": "/opt/sl6/bin:"},
                   append={"MANPATH": ":/opt/sl6/man"}, unset=("LD_PRELOAD", "PYTHONPATH")),
        allow_users=("alice", "bob"), allow_groups=("physics",), allow_accounts=("legacy", "hep"),
        allow_partitions=("old",), deny_users=("mallory",), deny_groups=("banned",))


def test_full_policy_image_environment_gets_defaults(full):
    deb = full.environments["deb12"]
    assert deb == Environment(name="deb12", path="/images/deb12.sqfs", kind="image", enabled=False)
    assert deb.dirs == DEFAULT_DIRS
    assert deb.binds == () and deb.env == EnvOps()
    assert deb.description == ""


def test_full_policy_names_and_get(full):
    assert full.names() == ["deb12", "sl6"]
    assert full.get("sl6").path == "/os/sl6"
    assert full.get("nope") is None
    assert full.get("local") is None


def test_types_are_tuples_and_frozen(full):
    env = full.environments["sl6"]
    assert isinstance(env.dirs, tuple) and isinstance(env.allow_users, tuple)
    assert isinstance(full.site.shared, tuple) and isinstance(full.site.identity_files, tuple)
    with pytest.raises(Exception):
        env.path = "/"  # type: ignore[misc]


# -- defaults when keys are absent --------------------------------------------------------

def test_empty_policy_is_all_defaults():
    p = parse("")
    assert p.site == Site()
    assert p.site.default == "local" and p.site.on_error == "closed"
    assert p.site.user_file == ".chos"
    assert p.site.shared == tuple(Mount(x, x, True, True) for x in DEFAULT_SHARED)
    assert [m.target for m in p.site.shared] == ["/proc", "/dev", "/sys", "/tmp", "/var/tmp", "/home"]
    assert p.site.identity_files == DEFAULT_IDENTITY
    assert p.site.local_root == "/local" and p.site.allow_local is True
    assert p.site.run_dir == DEFAULT_RUN_DIR == "/run/envsched"
    assert p.site.log_file == "" and p.site.user_file_timeout == 10.0
    assert p.defaults == Defaults()
    assert p.environments == {}
    assert p.names() == []


def test_comments_only_policy_is_all_defaults():
    assert parse("# nothing here\n\n# at all\n").site == Site()


def test_empty_tables_are_defaults():
    p = parse("""
        [site]
        [defaults]
        [environments]
    """)
    assert p.site == Site() and p.defaults == Defaults() and p.environments == {}


def test_minimal_environment_defaults():
    p = parse("""
        [environments.sl6]
        path = "/os/sl6"
    """)
    assert p.environments == {"sl6": Environment("sl6", "/os/sl6")}
    env = p.environments["sl6"]
    assert env.kind == "tree" and env.enabled is True and env.dirs == DEFAULT_DIRS
    assert env.allow_users == env.deny_groups == ()


def test_inline_environment_table():
    p = parse("""
        [environments]
        sl6 = { path = "/os/sl6", kind = "image" }
    """)
    assert p.environments["sl6"].kind == "image"


def test_paths_are_normalised():
    p = parse("""
        [site]
        run_dir = "/run//envsched/"
        local_root = "/host/"
        shared = ["/home/"]
        identity_files = ["/etc//passwd"]
        [environments.sl6]
        path = "/os//sl6/"
    """)
    assert p.site.run_dir == "/run/envsched"
    assert p.site.local_root == "/host"
    assert p.site.shared == (Mount("/home", "/home"),)
    assert p.site.identity_files == ("/etc/passwd",)
    assert p.environments["sl6"].path == "/os/sl6"


def test_empty_local_root_means_none():
    assert parse('[site]\nlocal_root = ""\n').site.local_root == ""


def test_empty_log_file_means_none():
    assert parse('[site]\nlog_file = ""\n').site.log_file == ""


def test_empty_lists_are_allowed():
    p = parse("""
        [site]
        shared = []
        identity_files = []
        [environments.x]
        path = "/x"
        dirs = []
        binds = []
    """)
    assert p.site.shared == () and p.site.identity_files == ()
    assert p.environments["x"].dirs == () and p.environments["x"].binds == ()


def test_shared_table_defaults_target_rw_required():
    p = parse('[site]\nshared = [{ path = "/home" }]\n')
    assert p.site.shared == (Mount("/home", "/home", writable=True, required=True),)


def test_bind_table_defaults_target_ro_required():
    p = parse('[environments.x]\npath = "/x"\nbinds = [{ source = "/opt" }]\n')
    assert p.environments["x"].binds == (Mount("/opt", "/opt", writable=False, required=True),)


def test_bind_string_is_read_only_shared_string_is_writable():
    p = parse('[site]\nshared = ["/a"]\n[environments.x]\npath = "/x"\nbinds = ["/b"]\n')
    assert p.site.shared[0].writable is True
    assert p.environments["x"].binds[0].writable is False


@pytest.mark.parametrize("value,expected", [("1", 1.0), ("0.5", 0.5), ("3600", 3600.0)])
def test_user_file_timeout_numbers(value, expected):
    got = parse(f"[site]\nuser_file_timeout = {value}\n").site.user_file_timeout
    assert got == expected and isinstance(got, float)


def test_local_may_be_the_default_and_in_defaults():
    p = parse("""
        [site]
        default = "local"
        [defaults]
        groups = { admins = "local" }
    """)
    assert p.site.default == "local" and p.defaults.groups == {"admins": "local"}


def test_allow_local_false_with_real_default():
    p = parse("""
        [site]
        default = "sl6"
        allow_local = false
        [environments.sl6]
        path = "/os/sl6"
    """)
    assert p.site.allow_local is False and p.site.default == "sl6"


def test_default_may_name_a_disabled_environment():
    # the schema only checks the reference; refusing a disabled one is the resolver's job
    p = parse('[site]\ndefault = "x"\n[environments.x]\npath = "/x"\nenabled = false\n')
    assert p.site.default == "x"


def test_build_policy_without_text_has_no_line():
    with pytest.raises(PolicyError) as info:
        build_policy({"site": {"default": "nope"}}, "some/file")
    assert str(info.value) == "some/file: site.default: no such environment (defined: none): 'nope'"


def test_build_policy_from_data():
    p = build_policy({"environments": {"a": {"path": "/a"}}}, "x")
    assert p.source == "x" and p.names() == ["a"]


# -- the issue's example and exact messages with line numbers -----------------------------

def test_issue_example_relative_environment_path():
    assert error("""\
        [site]
        default = "local"

        [environments.sl6]
        description = "SL6"
        path = "os/sl6"
    """) == "policy.toml:6: environments.sl6.path: not an absolute path: 'os/sl6'"


def test_relative_path_in_inline_environment_table():
    assert error("""\
        [environments]
        deb12 = { path = "/os/deb12" }
        sl6 = { path = "os/sl6" }
    """) == "policy.toml:3: environments.sl6.path: not an absolute path: 'os/sl6'"


def test_relative_path_as_dotted_key():
    assert error("""\
        [environments]
        sl6.kind = "tree"
        sl6.path = "os/sl6"
    """) == "policy.toml:3: environments.sl6.path: not an absolute path: 'os/sl6'"


def test_line_points_into_the_right_environment():
    assert error("""\
        [environments.sl6]
        path = "/os/sl6"
        kind = "tree"

        [environments.deb12]
        kind = "tree"
        path = "/os/deb12"
        dirs = ["usr", "bin/sh"]
    """) == ("policy.toml:8: environments.deb12.dirs[1]: must be a top-level directory name "
             "like 'usr': 'bin/sh'")


def test_line_with_quoted_header_and_comment():
    assert error("""\
        # site policy
        [ environments . "sl6.4" ]   # the point release
        path = "/os/sl64"
        kind = "vm"
    """) == "policy.toml:4: environments.sl6.4.kind: must be one of tree, image: 'vm'"


def test_line_of_direct():
    text = "[site]\ndefault = 'x'\n\n[environments.a]\npath = '/a'\n[environments.b]\npath = 'b'\n"
    assert line_of(text, ["environments", "b", "path"]) == 7
    assert line_of(text, ["environments", "a", "path"]) == 5
    assert line_of(text, ["environments", "a"]) == 4
    assert line_of(text, ["site", "default"]) == 2
    assert line_of(text, ["site", "shared", 3]) == 1           # only the table is there
    assert line_of(text, ["defaults", "groups"]) is None
    assert line_of(text, []) is None


# -- shape: unknown keys ------------------------------------------------------------------

def test_unknown_top_level_table():
    assert error("""\
        [site]
        default = "local"

        [sitee]
        default = "sl6"
    """) == "policy.toml:4: sitee: unknown key (allowed: defaults, environments, site, user_images)"


def test_unknown_top_level_key_in_dotted_header():
    assert error("""\
        [site]
        default = "local"

        [environment.sl6]
        path = "/os/sl6"
    """) == "policy.toml:4: environment: unknown key (allowed: defaults, environments, site, user_images)"


def test_unknown_top_level_bare_key():
    assert error('version = 2\n') == \
        "policy.toml:1: version: unknown key (allowed: defaults, environments, site, user_images)"


def test_unknown_site_key():
    assert error("""\
        [site]
        default = "local"
        defualt_env = "sl6"
    """) == f"policy.toml:3: site.defualt_env: unknown key (allowed: {SITE_ALLOWED})"


def test_unknown_defaults_key():
    assert error("""\
        [defaults]
        groups = {}
        users = { alice = "sl6" }
    """) == "policy.toml:3: defaults.users: unknown key (allowed: accounts, groups, partitions, queues)"


def test_unknown_environment_key():
    assert error("""\
        [environments.sl6]
        path = "/os/sl6"
        root = "/os/sl6"
    """) == f"policy.toml:3: environments.sl6.root: unknown key (allowed: {ENV_ALLOWED})"


def test_unknown_env_ops_key():
    assert error("""\
        [environments.sl6]
        path = "/os/sl6"

        [environments.sl6.env]
        set = { A = "1" }
        export = { B = "2" }
    """) == "policy.toml:6: environments.sl6.env.export: unknown key (allowed: append, prepend, set, unset)"


def test_unknown_shared_table_key():
    assert error("""\
        [site]
        shared = [
          "/proc",
          { path = "/home", options = "noexec" },
        ]
    """) == "policy.toml:2: site.shared[1].options: unknown key (allowed: mode, path, required, target)"


def test_shared_table_does_not_take_source():
    assert error('[site]\nshared = [{ source = "/home" }]\n') == \
        "policy.toml:2: site.shared[0].source: unknown key (allowed: mode, path, required, target)"


def test_unknown_bind_key():
    assert error("""\
        [environments.sl6]
        path = "/os/sl6"
        binds = [{ source = "/opt", flags = "ro" }]
    """) == ("policy.toml:3: environments.sl6.binds[0].flags: unknown key "
             "(allowed: mode, required, source, target)")


def test_bind_does_not_take_path():
    assert error('[environments.x]\npath = "/x"\nbinds = [{ path = "/opt" }]\n') == \
        ("policy.toml:3: environments.x.binds[0].path: unknown key "
         "(allowed: mode, required, source, target)")


# -- shape: missing keys ------------------------------------------------------------------

def test_environment_without_path():
    assert error("""\
        [environments.sl6]
        kind = "tree"
    """) == "policy.toml:1: environments.sl6.path: missing (the environment's tree or image file; or image = \"NAME\" from the image store)"


def test_shared_table_without_path():
    assert error('[site]\nshared = [{ target = "/x" }]\n') == \
        "policy.toml:2: site.shared[0].path: missing"


def test_bind_table_without_source():
    assert error('[environments.x]\npath = "/x"\nbinds = [{ target = "/x" }]\n') == \
        "policy.toml:3: environments.x.binds[0].source: missing"


# -- shape: wrong types -------------------------------------------------------------------

@pytest.mark.parametrize("line,message", [
    ('site = "x"', "policy.toml:1: site: must be a table: 'x'"),
    ("site = 1", "policy.toml:1: site: must be a table: '1'"),
    ("defaults = []", "policy.toml:1: defaults: must be a table: '[]'"),
    ("environments = 3", "policy.toml:1: environments: must be a table of environments: '3'"),
    ('environments = ["sl6"]',
     "policy.toml:1: environments: must be a table of environments: '[\\'sl6\\']'"),
])
def test_top_level_wrong_types(line, message):
    assert error(line + "\n") == message


@pytest.mark.parametrize("key,value,problem", [
    ("default", "6", "must be a string: '6'"),
    ("default", "true", "must be a string: 'True'"),
    ("default", '["sl6"]', "must be a string: '[\\'sl6\\']'"),
    ("on_error", "false", "must be a string: 'False'"),
    ("user_file", "1", "must be a string: '1'"),
    ("shared", '"/home"', "must be a list: '/home'"),
    ("shared", "{ path = '/home' }", "must be a list: '{\\'path\\': \\'/home\\'}'"),
    ("identity_files", '"/etc/passwd"', "must be a list of strings: '/etc/passwd'"),
    ("local_root", "false", "must be a string: 'False'"),
    ("allow_local", '"no"', "must be true or false: 'no'"),
    ("allow_local", "0", "must be true or false: '0'"),
    ("run_dir", "[]", "must be a string: '[]'"),
    ("log_file", "5", "must be a string: '5'"),
    ("log_file", "true", "must be a string: 'True'"),
    ("user_file_timeout", '"10"', "must be a positive number: '10'"),
    ("user_file_timeout", "true", "must be a positive number: 'True'"),
    ("user_file_timeout", "0", "must be a positive number: '0'"),
    ("user_file_timeout", "-1.5", "must be a positive number: '-1.5'"),
    ("user_file_timeout", "[]", "must be a positive number: '[]'"),
])
def test_site_wrong_types(key, value, problem):
    assert error(f"[site]\n{key} = {value}\n") == f"policy.toml:2: site.{key}: {problem}"


@pytest.mark.parametrize("value,shown", [("0", "0"), ("false", "False"), ("[]", "[]")])
def test_site_log_file_falsy_wrong_types(value, shown):
    assert error(f"[site]\nlog_file = {value}\n") == \
        f"policy.toml:2: site.log_file: must be a string: '{shown}'"   # as for log_file = 5


@pytest.mark.parametrize("value", ["nan", "inf", "+inf"])
def test_site_user_file_timeout_not_finite(value):
    shown = {"nan": "nan", "inf": "inf", "+inf": "inf"}[value]
    msg = error(f"[site]\nuser_file_timeout = {value}\n")
    assert msg.startswith("policy.toml:2: site.user_file_timeout: ")
    assert msg.endswith(f": '{shown}'")


@pytest.mark.parametrize("item,message", [
    ("5", "policy.toml:2: site.shared[1]: must be a table: '5'"),
    ("true", "policy.toml:2: site.shared[1]: must be a table: 'True'"),
    ('["/a"]', "policy.toml:2: site.shared[1]: must be a table: '[\\'/a\\']'"),
    ('{ path = 5 }', "policy.toml:2: site.shared[1].path: must be a string: '5'"),
    ('{ path = "/a", target = 5 }', "policy.toml:2: site.shared[1].target: must be a string: '5'"),
    ('{ path = "/a", mode = true }', "policy.toml:2: site.shared[1].mode: must be a string: 'True'"),
    ('{ path = "/a", required = "no" }',
     "policy.toml:2: site.shared[1].required: must be true or false: 'no'"),
])
def test_shared_item_wrong_types(item, message):
    assert error(f'[site]\nshared = ["/home", {item}]\n') == message


def test_identity_file_item_wrong_type():
    assert error('[site]\nidentity_files = ["/etc/passwd", 3]\n') == \
        "policy.toml:2: site.identity_files[1]: must be a string: '3'"


@pytest.mark.parametrize("key,value,problem", [
    ("path", "5", "must be a string: '5'"),
    ("path", '["/a"]', "must be a string: '[\\'/a\\']'"),
    ("kind", "1", "must be a string: '1'"),
    ("description", "false", "must be a string: 'False'"),
    ("enabled", '"yes"', "must be true or false: 'yes'"),
    ("enabled", "1", "must be true or false: '1'"),
    ("dirs", '"usr"', "must be a list of strings: 'usr'"),
    ("dirs", "{ usr = 1 }", "must be a list of strings: '{\\'usr\\': 1}'"),
    ("binds", '"/opt"', "must be a list: '/opt'"),
    ("env", '"A=1"', "must be a table: 'A=1'"),
    ("env", "[]", "must be a table: '[]'"),
    ("allow_users", '"alice"', "must be a list of strings: 'alice'"),
    ("allow_groups", "true", "must be a list of strings: 'True'"),
    ("allow_accounts", "{}", "must be a list of strings: '{}'"),
    ("allow_partitions", "1", "must be a list of strings: '1'"),
    ("deny_users", '"mallory"', "must be a list of strings: 'mallory'"),
    ("deny_groups", "0", "must be a list of strings: '0'"),
])
def test_environment_wrong_types(key, value, problem):
    text = f'[environments.sl6]\n{key} = {value}\n' if key == "path" else \
        f'[environments.sl6]\npath = "/os/sl6"\n{key} = {value}\n'
    line = 2 if key == "path" else 3
    assert error(text) == f"policy.toml:{line}: environments.sl6.{key}: {problem}"


@pytest.mark.parametrize("key", ["allow_users", "allow_groups", "allow_accounts", "allow_partitions",
                                 "deny_users", "deny_groups"])
def test_environment_name_list_items_must_be_strings(key):
    assert error(f'[environments.sl6]\npath = "/x"\n{key} = ["a", 7]\n') == \
        f"policy.toml:3: environments.sl6.{key}[1]: must be a string: '7'"


def test_environment_must_be_a_table():
    assert error('[environments]\nsl6 = "/os/sl6"\n') == \
        "policy.toml:2: environments.sl6: must be a table: '/os/sl6'"


@pytest.mark.parametrize("item,message", [
    ("5", "policy.toml:3: environments.x.binds[0]: must be a table: '5'"),
    ('{ source = "/a", mode = 1 }', "policy.toml:3: environments.x.binds[0].mode: must be a string: '1'"),
    ('{ source = "/a", required = 1 }',
     "policy.toml:3: environments.x.binds[0].required: must be true or false: '1'"),
])
def test_bind_wrong_types(item, message):
    assert error(f'[environments.x]\npath = "/x"\nbinds = [{item}]\n') == message


@pytest.mark.parametrize("body,message", [
    ('set = "A=1"', "environments.x.env.set: must be a table of NAME = \"value\": 'A=1'"),
    ('prepend = ["A"]', "environments.x.env.prepend: must be a table of NAME = \"value\": '[\\'A\\']'"),
    ("append = 1", "environments.x.env.append: must be a table of NAME = \"value\": '1'"),
    ("set = { A = 1 }", "environments.x.env.set.A: must be a string: '1'"),
    ('prepend = { PATH = ["/a"] }', "environments.x.env.prepend.PATH: must be a string: '[\\'/a\\']'"),
    ('unset = "A"', "environments.x.env.unset: must be a list of strings: 'A'"),
    ("unset = [1]", "environments.x.env.unset[0]: must be a string: '1'"),
])
def test_env_ops_wrong_types(body, message):
    assert error(f'[environments.x]\npath = "/x"\n[environments.x.env]\n{body}\n') == \
        f"policy.toml:4: {message}"


@pytest.mark.parametrize("key", ["groups", "partitions", "queues", "accounts"])
def test_defaults_wrong_types(key):
    assert error(f'[defaults]\n{key} = ["sl6"]\n') == \
        f"policy.toml:2: defaults.{key}: must be a table of strings: '[\\'sl6\\']'"


@pytest.mark.parametrize("key", ["groups", "partitions", "queues", "accounts"])
def test_defaults_value_wrong_type(key):
    assert error(f'[defaults]\n{key} = {{ x = 6 }}\n') == \
        f"policy.toml:2: defaults.{key}.x: must be a string: '6'"


@pytest.mark.parametrize("where,text", [
    ("site.default", '[site]\ndefault = "sl\\u0000"\n'),
    ("site.run_dir", '[site]\nrun_dir = "/run/\\nx"\n'),
    ("environments.x.description", '[environments.x]\npath = "/x"\ndescription = """a\nb"""\n'),
    ("environments.x.env.set.A", '[environments.x]\npath = "/x"\nenv = { set = { A = "1\\u0000" } }\n'),
])
def test_nul_or_newline_in_strings(where, text):
    msg = error(text)
    assert f" {where}: must not contain NUL or newline: '" in msg
    assert "\0" not in msg and "\n" not in msg


# -- meaning: paths -----------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [
    ("run_dir", "run/envsched"),
    ("run_dir", ""),
    ("log_file", "envsched.log"),
    ("local_root", "local"),
    ("local_root", "~/local"),
])
def test_site_relative_paths(key, value):
    assert error(f'[site]\n{key} = "{value}"\n') == \
        f"policy.toml:2: site.{key}: not an absolute path: '{value}'"


@pytest.mark.parametrize("key,value", [
    ("run_dir", "/run/../tmp"),
    ("log_file", "/var/log/./x"),
    ("local_root", "/.."),
    ("run_dir", "/run/envsched/.."),
])
def test_site_dot_components(key, value):
    assert error(f'[site]\n{key} = "{value}"\n') == \
        f"policy.toml:2: site.{key}: must not contain '.' or '..' components: '{value}'"


@pytest.mark.parametrize("value,problem", [
    ("os/sl6", "not an absolute path"),
    ("./os/sl6", "not an absolute path"),
    ("", "not an absolute path"),
    ("/os/../etc", "must not contain '.' or '..' components"),
    ("/os/sl6/..", "must not contain '.' or '..' components"),
    ("/os/./sl6", "must not contain '.' or '..' components"),
    ("/..", "must not contain '.' or '..' components"),
])
def test_environment_bad_paths(value, problem):
    assert error(f'[environments.sl6]\npath = "{value}"\n') == \
        f"policy.toml:2: environments.sl6.path: {problem}: '{value}'"


def test_dot_dot_inside_a_name_is_fine():
    p = parse('[environments.sl6]\npath = "/os/sl6..old/x.."\n')
    assert p.environments["sl6"].path == "/os/sl6..old/x.."


@pytest.mark.parametrize("value", ["/", "///"])
def test_environment_path_cannot_be_host_root(value):
    assert error(f'[environments.sl6]\npath = "{value}"\n') == \
        "policy.toml:2: environments.sl6.path: the host root is the 'local' environment: '/'"


def test_environment_path_double_slash_is_host_root():
    assert error('[environments.sl6]\npath = "//"\n').startswith(
        "policy.toml:2: environments.sl6.path: the host root is the 'local' environment: ")


@pytest.mark.parametrize("item,message", [
    ('"home"', "site.shared[0]: not an absolute path: 'home'"),
    ('"/home/../etc"', "site.shared[0]: must not contain '.' or '..' components: '/home/../etc'"),
    ('{ path = "home" }', "site.shared[0].path: not an absolute path: 'home'"),
    ('{ path = "/a", target = "b" }', "site.shared[0].target: not an absolute path: 'b'"),
    ('{ path = "/a", target = "/b/.." }',
     "site.shared[0].target: must not contain '.' or '..' components: '/b/..'"),
    ('{ path = "/a", target = "/" }', "site.shared[0].target: cannot replace the view's root: '/'"),
    ('{ path = "/" }', "site.shared[0].target: cannot replace the view's root: '/'"),
])
def test_shared_bad_paths(item, message):
    assert error(f"[site]\nshared = [{item}]\n") == f"policy.toml:2: {message}"


def test_identity_file_relative():
    assert error('[site]\nidentity_files = ["/etc/passwd", "etc/group"]\n') == \
        "policy.toml:2: site.identity_files[1]: not an absolute path: 'etc/group'"


@pytest.mark.parametrize("item,message", [
    ('"opt"', "environments.x.binds[0]: not an absolute path: 'opt'"),
    ('{ source = "/a/../b" }', "environments.x.binds[0].source: must not contain '.' or '..' components: '/a/../b'"),
    ('{ source = "/a", target = "rel" }', "environments.x.binds[0].target: not an absolute path: 'rel'"),
    ('{ source = "/a", target = "/" }', "environments.x.binds[0].target: cannot replace the view's root: '/'"),
])
def test_bind_bad_paths(item, message):
    assert error(f'[environments.x]\npath = "/x"\nbinds = [{item}]\n') == f"policy.toml:3: {message}"


@pytest.mark.parametrize("text,where", [
    ('[site]\nshared = ["/proc", "/"]\n', "policy.toml:2: site.shared[1]"),
    ('[environments.x]\npath = "/x"\nbinds = ["/"]\n', "policy.toml:3: environments.x.binds[0]"),
])
def test_string_mount_cannot_be_root(text, where):
    msg = error(text)
    assert msg.startswith(where)
    assert msg.endswith(": cannot replace the view's root: '/'")


def test_shared_target_double_slash_is_root():
    assert error('[site]\nshared = [{ path = "/a", target = "//" }]\n').startswith(
        "policy.toml:2: site.shared[0].target: cannot replace the view's root: ")


# -- meaning: names -----------------------------------------------------------------------

@pytest.mark.parametrize("key,name,shown", [
    ('"sl 6"', "sl 6", "'sl 6'"),
    ('"../etc"', "../etc", "'../etc'"),
    ('"sl6é"', "sl6é", "'sl6\\xe9'"),
    ('".hidden"', ".hidden", "'.hidden'"),
    ('"-x"', "-x", "'-x'"),
    ('""', "", "''"),
    ("a" * 65, "a" * 65, "'" + "a" * 60 + "...'"),
])
def test_invalid_environment_name_as_table_key(key, name, shown):
    assert error(f"[environments.{key}]\npath = \"/x\"\n") == \
        f"policy.toml:1: environments.{name}: {BAD_NAME}: {shown}"


def test_invalid_environment_name_65_chars_exact():
    name = "a" * 65
    assert error(f'[environments]\n{name} = {{ path = "/x" }}\n') == \
        f"policy.toml:2: environments.{name}: {BAD_NAME}: '{'a' * 60}...'"


def test_environment_name_64_chars_is_fine():
    name = "a" * 64
    assert parse(f'[environments.{name}]\npath = "/x"\n').names() == [name]


def test_defining_local_is_refused():
    assert error("""\
        [environments.sl6]
        path = "/os/sl6"
        [environments.local]
        path = "/os/host"
    """) == "policy.toml:3: environments.local: 'local' is reserved for the host OS and cannot be defined"


@pytest.mark.parametrize("value,shown", [
    ("sl 6", "sl 6"), ("../etc", "../etc"), ("sl6é", "sl6\\xe9"), ("", ""), ("a" * 65, "a" * 60 + "..."),
    ("sl6\\t", "sl6\\t"),
])
def test_invalid_environment_name_as_site_default(value, shown):
    assert error(f'[site]\ndefault = "{value}"\n') == f"policy.toml:2: site.default: {BAD_NAME}: '{shown}'"


@pytest.mark.parametrize("key", ["groups", "partitions", "queues", "accounts"])
def test_invalid_environment_name_in_defaults(key):
    assert error(f'[defaults]\n{key} = {{ x = "../etc" }}\n') == \
        f"policy.toml:2: defaults.{key}.x: {BAD_NAME}: '../etc'"


@pytest.mark.parametrize("value,shown", [
    ("usr/bin", "usr/bin"), ("..", ".."), (".", "."), ("", ""), ("us r", "us r"), ("/usr", "/usr"),
])
def test_bad_dirs(value, shown):
    assert error(f'[environments.x]\npath = "/x"\ndirs = ["bin", "{value}"]\n') == \
        f"policy.toml:3: environments.x.dirs[1]: must be a top-level directory name like 'usr': '{shown}'"


# -- meaning: references ------------------------------------------------------------------

def test_site_default_undefined():
    assert error("""\
        [site]
        default = "sl7"

        [environments.sl6]
        path = "/os/sl6"
        [environments.deb12]
        path = "/os/deb12"
    """) == "policy.toml:2: site.default: no such environment (defined: deb12, sl6): 'sl7'"


def test_site_default_undefined_none_defined():
    assert error('[site]\ndefault = "sl6"\n') == \
        "policy.toml:2: site.default: no such environment (defined: none): 'sl6'"


@pytest.mark.parametrize("key", ["groups", "partitions", "accounts"])
def test_defaults_reference_undefined(key):
    assert error(f"""\
        [environments.sl6]
        path = "/os/sl6"

        [defaults]
        {key} = {{ a = "sl6", b = "sl7" }}
    """) == f"policy.toml:5: defaults.{key}.b: no such environment (defined: sl6): 'sl7'"


def test_defaults_queue_reference_undefined():
    assert error("""\
        [defaults]
        groups = {}
        queues = { batch = "sl7" }
    """) == "policy.toml:3: defaults.queues.batch: no such environment (defined: none): 'sl7'"


def test_local_while_allow_local_false_as_default():
    assert error("""\
        [site]
        allow_local = false
        default = "local"
    """) == "policy.toml:3: site.default: 'local' is used but site.allow_local is false: 'local'"


def test_local_while_allow_local_false_implicit_default_has_no_line():
    # site.default is not in the file (it defaults to local): the message has no line number
    assert error("site.allow_local = false\n") == \
        "policy.toml: site.default: 'local' is used but site.allow_local is false: 'local'"


@pytest.mark.parametrize("key", ["groups", "partitions", "queues", "accounts"])
def test_local_while_allow_local_false_in_defaults(key):
    msg = error(f"""\
        [site]
        allow_local = false
        default = "sl6"
        [environments.sl6]
        path = "/os/sl6"
        [defaults]
        {key} = {{ x = "local" }}
    """)
    if key == "queues":   # key path and line: see test_defaults_queue_reference_undefined
        assert msg.endswith(".x: 'local' is used but site.allow_local is false: 'local'")
    else:
        assert msg == f"policy.toml:7: defaults.{key}.x: 'local' is used but site.allow_local is false: 'local'"


def test_queue_also_under_partitions():
    assert error("""\
        [environments.sl6]
        path = "/os/sl6"
        [defaults]
        partitions = { batch = "sl6" }
        queues = { batch = "sl6" }
    """) == "policy.toml:5: defaults.queues.batch: also listed under defaults.partitions"


def test_duplicate_shared_targets():
    assert error("""\
        [site]
        shared = [
          "/home",
          { path = "/gpfs/home", target = "/home" },
        ]
    """) == "policy.toml:2: site.shared[1]: duplicate target: '/home'"


def test_duplicate_shared_targets_after_normalisation():
    assert error('[site]\nshared = ["/tmp", "/tmp/"]\n') == \
        "policy.toml:2: site.shared[1]: duplicate target: '/tmp'"


def test_same_shared_source_to_different_targets_is_fine():
    p = parse('[site]\nshared = ["/home", { path = "/home", target = "/u" }]\n')
    assert [m.target for m in p.site.shared] == ["/home", "/u"]


def test_local_root_also_in_shared():
    assert error("""\
        [site]
        shared = ["/home", "/host"]
        local_root = "/host"
    """) == "policy.toml:3: site.local_root: also listed in site.shared: '/host'"


def test_default_local_root_also_in_shared():
    assert error('[site]\nshared = ["/local"]\n') == \
        "policy.toml:1: site.local_root: also listed in site.shared: '/local'"


def test_local_root_empty_may_not_clash():
    p = parse('[site]\nshared = ["/local"]\nlocal_root = ""\n')
    assert p.site.local_root == "" and p.site.shared[0].target == "/local"


# -- meaning: duplicates ------------------------------------------------------------------

@pytest.mark.parametrize("key,a,b", [
    ("dirs", "usr", "usr"),
    ("allow_users", "alice", "alice"),
    ("allow_groups", "hep", "hep"),
    ("allow_accounts", "a1", "a1"),
    ("allow_partitions", "p", "p"),
    ("deny_users", "bob", "bob"),
    ("deny_groups", "g", "g"),
])
def test_duplicate_list_entries_in_environment(key, a, b):
    assert error(f'[environments.x]\npath = "/x"\n{key} = ["{a}", "other", "{b}"]\n') == \
        f"policy.toml:3: environments.x.{key}[2]: duplicate entry: '{b}'"


def test_duplicate_identity_files():
    assert error('[site]\nidentity_files = ["/etc/passwd", "/etc//passwd"]\n') == \
        "policy.toml:2: site.identity_files[1]: duplicate entry: '/etc/passwd'"


def test_duplicate_unset():
    assert error('[environments.x]\npath = "/x"\nenv = { unset = ["A", "A"] }\n') == \
        "policy.toml:3: environments.x.env.unset[1]: duplicate entry: 'A'"


# -- meaning: env ops ---------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    'set = { CHOS = "sl5" }',
    'prepend = { CHOS = "x" }',
    'append = { CHOS = "x" }',
    'unset = ["CHOS"]',
])
def test_chos_in_env_ops(body):
    assert error(f'[environments.x]\npath = "/x"\nenv = {{ {body} }}\n') == \
        "policy.toml:3: environments.x.env: CHOS is set by envsched itself and cannot be changed here"


def test_chos_in_env_ops_table_form():
    msg = error('[environments.x]\npath = "/x"\n[environments.x.env]\nset = { CHOS = "x" }\n')
    assert msg.endswith(" environments.x.env: CHOS is set by envsched itself and cannot be changed here")


def test_chos_lowercase_is_another_variable():
    p = parse('[environments.x]\npath = "/x"\nenv = { set = { chos = "1" } }\n')
    assert p.environments["x"].env.set == {"chos": "1"}


@pytest.mark.parametrize("op", ["set", "prepend", "append"])
@pytest.mark.parametrize("name,shown", [
    ('"1X"', "1X"), ('"A-B"', "A-B"), ('"A B"', "A B"), ('""', ""), ('"A=B"', "A=B"), ('"É"', "\\xc9"),
])
def test_bad_variable_names(op, name, shown):
    key = name.strip('"')
    assert error(f'[environments.x]\npath = "/x"\nenv = {{ {op} = {{ {name} = "v" }} }}\n') == \
        f"policy.toml:3: environments.x.env.{op}.{key}: not a valid environment variable name: '{shown}'"


@pytest.mark.parametrize("name,shown", [("1X", "1X"), ("A-B", "A-B"), ("", "")])
def test_bad_variable_names_in_unset(name, shown):
    assert error(f'[environments.x]\npath = "/x"\nenv = {{ unset = ["OK", "{name}"] }}\n') == \
        f"policy.toml:3: environments.x.env.unset[1]: not a valid environment variable name: '{shown}'"


def test_good_variable_names():
    p = parse('[environments.x]\npath = "/x"\n'
              'env = { set = { _A = "", a1 = "x", A_B_9 = "=;$" }, unset = ["_"] }\n')
    assert p.environments["x"].env == EnvOps(set={"_A": "", "a1": "x", "A_B_9": "=;$"}, unset=("_",))


# -- meaning: choices ---------------------------------------------------------------------

@pytest.mark.parametrize("value", ["open", "Closed", "", "fallback"])
def test_on_error_choices(value):
    assert error(f'[site]\non_error = "{value}"\n') == \
        f"policy.toml:2: site.on_error: must be one of closed, default: '{value}'"


@pytest.mark.parametrize("value", ["docker", "Tree", "", "squashfs"])
def test_kind_choices(value):
    assert error(f'[environments.x]\npath = "/x"\nkind = "{value}"\n') == \
        f"policy.toml:3: environments.x.kind: must be one of tree, image: '{value}'"


@pytest.mark.parametrize("value", ["rx", "RO", "", "readonly"])
def test_mode_choices_shared(value):
    assert error(f'[site]\nshared = [{{ path = "/a", mode = "{value}" }}]\n') == \
        f"policy.toml:2: site.shared[0].mode: must be one of ro, rw: '{value}'"


def test_mode_choices_bind():
    assert error('[environments.x]\npath = "/x"\nbinds = [{ source = "/a", mode = "rwx" }]\n') == \
        "policy.toml:3: environments.x.binds[0].mode: must be one of ro, rw: 'rwx'"


@pytest.mark.parametrize("value", ["a/b", ".", "..", "", "/abs", ".chos/"])
def test_user_file_must_be_a_plain_name(value):
    assert error(f'[site]\nuser_file = "{value}"\n') == \
        f"policy.toml:2: site.user_file: must be a file name in the home directory: '{value}'"


def test_user_file_hidden_name_is_fine():
    assert parse('[site]\nuser_file = ".chos_env"\n').site.user_file == ".chos_env"


# -- TOML syntax --------------------------------------------------------------------------

def test_toml_syntax_error_reports_line():
    msg = error("""\
        [site]
        default = "local"
        on_error = closed
    """)
    assert msg.startswith("policy.toml:3: TOML syntax error: ")
    assert "(at line" not in msg


def test_toml_duplicate_key_reports_line():
    msg = error('[site]\ndefault = "a"\n\n\ndefault = "b"\n')
    assert msg.startswith("policy.toml:5: TOML syntax error: ")


def test_toml_duplicate_table_reports_line():
    msg = error('[environments.a]\npath = "/a"\n[environments.a]\npath = "/b"\n')
    assert msg.startswith("policy.toml:3: TOML syntax error: ")


def test_toml_error_at_end_of_document_has_no_line():
    msg = error('[site]\ndefault = "local"\nshared = [\n')
    assert msg.startswith("policy.toml: TOML syntax error: ")


def test_toml_error_is_a_policy_error_with_cause():
    with pytest.raises(PolicyError) as info:
        parse_policy_text("[[[", "/etc/envsched/policy.toml")
    assert str(info.value).startswith("/etc/envsched/policy.toml:1: TOML syntax error: ")
    assert info.value.__cause__ is not None


def test_source_is_used_verbatim_in_messages():
    with pytest.raises(PolicyError) as info:
        parse_policy_text('[site]\ndefault = "x"\n', "/etc/envsched/site.toml")
    assert str(info.value) == \
        "/etc/envsched/site.toml:2: site.default: no such environment (defined: none): 'x'"


# -- one line, whatever the input ---------------------------------------------------------

@pytest.mark.parametrize("text", [
    '[site]\ndefault = "a\\nb"\n',
    '[site]\nuser_file = "a\\u0000b"\n',
    '[site]\ndefault = "\\u001b[2J"\n',
    '[environments."a\\nb"]\npath = "/x"\n',
    '[site]\ndefault = "a\\u2028b\\u0085c"\n',
])
def test_messages_are_one_line(text):
    msg = error(text)
    assert "\n" not in msg and "\0" not in msg and "\x1b" not in msg
    assert msg.isprintable(), repr(msg)


@pytest.mark.parametrize("text", [
    '[environments."a\\rb"]\npath = "/x"\n',
    '[environments."a\\u0000b"]\npath = "/x"\n',
    '[site]\n"x\\ry" = 1\n',
    '[environments.x]\npath = "/x"\nenv.set."A\\u001bB" = "1"\n',
])
def test_key_path_is_escaped_in_messages(text):
    # the key path is not show()n by the schema; PolicyError must still make it one printable line
    msg = error(text)
    assert msg.isprintable(), repr(msg)


@pytest.mark.parametrize("text", [
    '[environments."a\\u2028b"]\npath = "/x"\n',
    '[site]\n"x\\u0085y" = 1\n',
])
def test_key_path_unicode_line_breaks_are_escaped(text):
    msg = error(text)
    assert msg.isprintable(), repr(msg)
