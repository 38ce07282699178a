"""`envsched site-config render --scheduler torque`: the sections, a starter that is not run
privileged, and a starter configuration the set-user-ID starter parses (conf.c)."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("jinja2")

from envsched import siteconfig  # noqa: E402
from envsched.policy import parse_policy_text  # noqa: E402
from envsched.siteconfig import RenderOptions, section  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from scheduler_fakes import fake_cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONF_C = REPO / "plugins" / "uge" / "starter" / "conf.c"
POLICY = parse_policy_text('[site]\ndefault = "deb12"\nrun_dir = "/run/es"\n[environments.deb12]\npath = "/os/deb12"\n',
                           "/etc/envsched/policy.toml")


@pytest.fixture(autouse=True)
def cluster(monkeypatch):
    return fake_cluster(monkeypatch)


def render(**kw) -> str:
    base = dict(policy_path="/etc/envsched/policy.toml", resolver="/usr/bin/envsched")
    base.update(kw)
    return siteconfig.render("torque", POLICY, RenderOptions(**base))


def test_sections():
    text = render()
    names = re.findall(r"^#### ([a-z_]+):", text, re.M)
    assert names == ["mom_config", "starter_conf", "prologue", "prologue_parallel", "epilogue", "epilogue_parallel",
                     "submitfilter", "torque_cfg"]


def test_the_starter_is_not_run_privileged():
    config = [line for line in section(render(), "mom_config").splitlines() if not line.startswith("#")]
    assert config == ["$job_starter /usr/local/libexec/envsched/torque-starter"]


def test_starter_conf_keys_are_those_conf_c_parses():
    parsed = set(re.findall(r'strcmp\(key, "([a-z_]+)"\)', CONF_C.read_text()))
    conf = section(render(), "starter_conf")
    rendered = {line.split("=", 1)[0] for line in conf.splitlines()}
    assert rendered <= parsed
    assert "root_jobs=refuse\n" in conf and "mom_config=/var/spool/torque/mom_priv/config\n" in conf


def test_sister_scripts_record_like_the_prologue():
    text = render(spool_dir="/var/spool/pbs")
    assert section(text, "prologue_parallel") == section(text, "prologue")
    assert section(text, "epilogue_parallel") == section(text, "epilogue")
