"""`envsched site-config render --scheduler uge`: the sections, what goes into each, and that the
starter configuration holds exactly the keys the set-user-ID starter parses (conf.c)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("jinja2")

from envsched import siteconfig  # noqa: E402
from envsched.policy import parse_policy_text  # noqa: E402
from envsched.siteconfig import RenderOptions, SiteConfigError, section  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONF_C = REPO / "plugins" / "uge" / "starter" / "conf.c"
POLICY = parse_policy_text('[site]\ndefault = "deb12"\nrun_dir = "/run/es"\n[environments.deb12]\npath = "/os/deb12"\n',
                           "/etc/envsched/policy.toml")


def render(**kw) -> str:
    base = dict(policy_path="/etc/envsched/policy.toml", resolver="/usr/bin/envsched")
    base.update(kw)
    return siteconfig.render("uge", POLICY, RenderOptions(**base))


def test_privileged_sections():
    text = render()
    names = re.findall(r"^#### ([a-z_]+):", text, re.M)
    assert names == ["complex", "global", "sge_request", "jsv", "queue", "interactive_queue", "starter_conf"]
    assert section(text, "complex") == "chos chos STRING == YES NO NONE 0\n"
    assert section(text, "global") == "jsv_url /usr/local/libexec/envsched/uge-jsv\n"
    assert section(text, "sge_request") == "-jsv /usr/local/libexec/envsched/uge-jsv\n"
    queue = section(text, "queue").splitlines()
    assert [q.split()[0] for q in queue] == ["prolog", "epilog", "starter_method"]
    assert queue[0].startswith("prolog root@/usr/bin/python3 -I /usr/local/libexec/envsched/envsched_uge.py "
                               "prolog --policy /etc/envsched/policy.toml")
    assert queue[2] == "starter_method /usr/local/libexec/envsched/uge-starter"
    assert section(text, "interactive_queue") == "starter_method /usr/local/libexec/envsched/uge-starter\n"
    assert section(text, "starter_conf") == ("policy=/etc/envsched/policy.toml\nresolver=/usr/bin/envsched\n"
                                             "run_dir=/run/es\nbind=/var/spool/gridengine/execd\n")
    assert queue[1] == "epilog root@/usr/local/libexec/envsched/uge-epilog"
    jsv = section(text, "jsv")
    assert jsv.startswith("#!/bin/sh\nexec /usr/bin/python3 -I /usr/local/libexec/envsched/envsched_jsv.py ")
    assert "--accept-request-var" in jsv


def test_unprivileged_has_no_prolog_and_no_setuid_starter():
    text = render(unprivileged=True)
    assert "prolog" not in section(text, "queue") and "uge-starter\n" not in text
    assert section(text, "queue") == "starter_method /usr/local/libexec/envsched/uge-user-starter\n"
    assert 'envsched_uge.py starter --policy /etc/envsched/policy.toml --bind /var/spool/gridengine/execd ' \
           '-- "$@"' in section(text, "user_starter")
    with pytest.raises(SiteConfigError, match="no section 'starter_conf'"):
        section(text, "starter_conf")


def test_binds_host_tools_and_src():
    text = render(plugin_dir="/opt/es", src="/opt/es/src", spool_dir="/var/spool/sge", host_tools="/opt/es/tools",
                  binds=("/scratch", "/var/spool/sge", "/scratch"))
    prolog = section(text, "queue").splitlines()[0]
    assert prolog.endswith("--src /opt/es/src --bind /var/spool/sge --bind /scratch --bind /opt/es/tools")
    conf = section(text, "starter_conf")
    assert "bind=/var/spool/sge\nbind=/scratch\nhost_tools=/opt/es/tools\n" in conf
    assert render(spool_dir="none").count("--bind") == 0


@pytest.mark.parametrize("field,value", [("plugin_dir", "/opt/my dir"), ("src", "relative/src"),
                                         ("binds", ("/a b",)), ("host_tools", "/x#y")])
def test_bad_values_are_refused(field, value):
    with pytest.raises(SiteConfigError):
        render(**{field: value})


def test_starter_conf_keys_are_those_conf_c_parses():
    parsed = set(re.findall(r'strcmp\(key, "([a-z_]+)"\)', CONF_C.read_text()))
    rendered = {line.split("=", 1)[0] for line in section(render(host_tools="/t"), "starter_conf").splitlines()}
    torque_only = {"mom_config", "root_jobs"}           # the Torque starter shares conf.c
    assert rendered | {"log_file"} | torque_only == parsed == {"policy", "resolver", "run_dir", "bind", "host_tools",
                                                               "log_file"} | torque_only


def test_too_many_binds():
    with pytest.raises(SiteConfigError, match="at most 16"):
        render(binds=tuple(f"/b{i}" for i in range(16)))
