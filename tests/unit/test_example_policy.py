"""site-config/examples/policy.toml: it validates, says what it claims, and uses every key.

The example is the admin's reference for the policy format; these tests keep it from drifting
away from policy/schema.py: a key added to any *_KEYS set there fails here until the example
shows it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Set

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from envsched.policy import parse_policy_text
from envsched.policy import schema
from envsched.policy.load import tomllib
from envsched.policy.model import DEFAULT_IDENTITY, DEFAULT_SHARED, Mount

EXAMPLE = Path(__file__).resolve().parents[2] / "site-config" / "examples" / "policy.toml"


@pytest.fixture(scope="module")
def text() -> str:
    return EXAMPLE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def policy(text):
    return parse_policy_text(text, str(EXAMPLE))


@pytest.fixture(scope="module")
def raw(text) -> Dict[str, Any]:
    return tomllib.loads(text)


# -- it validates, and the values are the ones the comments describe ------------------------
def test_example_validates(policy):
    assert policy.source == str(EXAMPLE)
    assert policy.names() == ["bookworm-ci", "deb12", "deb13", "mck-deb12", "rhel8-vasp", "sl6", "sl7"]


def test_site_values(policy):
    site = policy.site
    assert site.default == "deb12"
    assert site.on_error == "closed"
    assert site.user_file == ".chos"
    assert site.user_file_timeout == 10.0
    assert site.allow_local is True
    assert site.local_root == "/local"
    assert site.run_dir == "/run/envsched"
    assert site.log_file == "/var/log/envsched.log"
    assert site.identity_files[:len(DEFAULT_IDENTITY)] == DEFAULT_IDENTITY


def test_shared_keeps_defaults_and_adds_site_paths(policy):
    shared = {m.target: m for m in policy.site.shared}
    for path in DEFAULT_SHARED:                         # the list replaces the default: kept here
        assert shared[path] == Mount(path, path, writable=True, required=True)
    assert shared["/global/scratch"] == Mount("/global/scratch", "/global/scratch", True, True)
    assert shared["/global/common"].writable is False and shared["/global/common"].required is True
    # what a Slurm client (munge) and the Slurm shim (spooled batch script) need in a view
    assert shared["/run/munge"] == Mount("/run/munge", "/run/munge", writable=False, required=False)
    assert shared["/var/spool/slurmd"] == Mount("/var/spool/slurmd", "/var/spool/slurmd",
                                                writable=False, required=False)


def test_defaults_queues_merge_into_partitions(policy):
    d = policy.defaults
    assert d.partitions == {"legacy": "sl6", "debug": "deb13", "legacy.q": "sl6"}
    assert d.accounts == {"m2001": "deb13"}
    assert list(d.groups) == ["astro", "lattice"]        # order matters: first match wins


def test_environments(policy):
    deb13 = policy.get("deb13")
    assert (deb13.path, deb13.kind, deb13.enabled) == ("/os/deb13", "tree", True)
    assert "lib32" not in deb13.dirs and "usr" in deb13.dirs
    assert deb13.binds[0] == Mount("/global/common/deb13/modulefiles", "/opt/modulefiles",
                                   writable=False, required=True)
    assert deb13.binds[1].required is False
    assert deb13.env.prepend == {"PATH": "/opt/site/bin"}
    assert deb13.env.append == {"MANPATH": "/opt/site/man"}
    assert deb13.env.unset == ("LD_LIBRARY_PATH",)
    sl6 = policy.get("sl6")
    assert (sl6.path, sl6.kind) == ("/os/sl6.sqfs", "image")
    assert sl6.allow_groups == ("cms", "atlas") and sl6.deny_groups == ("cms-guests",)
    assert "legacy.q" in sl6.allow_partitions
    vasp = policy.get("rhel8-vasp")
    assert vasp.allow_users and vasp.allow_groups and vasp.allow_accounts and vasp.deny_users
    assert policy.get("sl7").enabled is False
    assert (vasp.gpus, vasp.gpus_required) == ("nvidia", True)
    assert vasp.devices == ("/dev/infiniband/uverbs*", "/dev/infiniband/rdma_cm")
    assert policy.site.gpu_libraries == "/etc/envsched/nvliblist.conf"
    assert policy.site.gpu_search_dirs == ("/opt/nvidia/driver/lib64", "/opt/nvidia/driver/bin")


def test_defaults_only_name_environments_everyone_in_scope_may_use(policy):
    """A default that names a restricted environment refuses jobs (it never skips to the next
    source): the example's group and account defaults point at unrestricted environments."""
    for env in list(policy.defaults.groups.values()) + list(policy.defaults.accounts.values()):
        e = policy.get(env)
        assert e.enabled and not (e.allow_users or e.allow_groups or e.allow_accounts
                                  or e.allow_partitions or e.deny_users or e.deny_groups), env


# -- every key the schema accepts appears in the example --------------------------------------
def _key_sets() -> Dict[str, Set[str]]:
    return {name: getattr(schema, name) for name in dir(schema)
            if name.endswith("_KEYS") and isinstance(getattr(schema, name), set)}


def _tables(items: Iterable[Any]) -> List[Dict[str, Any]]:
    return [i for i in items if isinstance(i, dict)]


def _used(raw: Dict[str, Any]) -> Dict[str, Set[str]]:
    """Which keys the example really uses (parsed, not grepped), per schema key set."""
    envs = raw["environments"].values()
    shared = _tables(raw["site"]["shared"])
    binds = [b for e in envs for b in _tables(e.get("binds", []))] + _tables(raw["user_images"].get("binds", []))
    return {
        "TOP_KEYS": set(raw),
        "SITE_KEYS": set(raw["site"]),
        "DEFAULTS_KEYS": set(raw["defaults"]),
        "ENV_KEYS": {k for e in envs for k in e},
        "ENV_OPS_KEYS": {k for e in envs for k in e.get("env", {})},
        "USER_IMAGES_KEYS": set(raw["user_images"]),
        "MOUNT_KEYS": {k for t in shared + binds for k in t},
    }


def test_schema_key_sets_are_all_covered_by_this_test():
    """A new *_KEYS set in schema.py must be mapped in _used() above (and shown in the example)."""
    assert set(_key_sets()) == {"TOP_KEYS", "SITE_KEYS", "DEFAULTS_KEYS", "ENV_KEYS", "ENV_OPS_KEYS",
                                "MOUNT_KEYS", "USER_IMAGES_KEYS"}


@pytest.mark.parametrize("set_name", sorted(_key_sets()))
def test_every_schema_key_is_used_in_the_example(raw, set_name):
    missing = _key_sets()[set_name] - _used(raw)[set_name]
    assert not missing, f"{EXAMPLE.name} does not show {set_name} {sorted(missing)}"


def test_every_schema_key_appears_in_the_text(text):
    keys = set().union(*_key_sets().values())
    missing = sorted(k for k in keys if k not in text)
    assert not missing, missing


def test_both_forms_of_shared_entries(raw):
    shared = raw["site"]["shared"]
    assert any(isinstance(s, str) for s in shared)
    tables = _tables(shared)
    assert any("mode" in t for t in tables) and any("required" in t for t in tables)


def test_binds_are_an_array_of_tables(text, raw):
    assert "[[environments.deb13.binds]]" in text
    assert all(isinstance(b, dict) for b in raw["environments"]["deb13"]["binds"])


def test_example_allowed_values_are_shown(raw):
    kinds = {e.get("kind") for e in raw["environments"].values()}
    assert set(schema.KINDS) <= kinds
    assert raw["site"]["on_error"] in schema.ON_ERROR
    modes = {t.get("mode") for e in raw["environments"].values() for t in _tables(e.get("binds", []))}
    modes |= {t.get("mode") for t in _tables(raw["site"]["shared"])}
    assert "ro" in modes
