"""site-config render --scheduler pam: the /etc/pam.d line of plugins/pam."""
from __future__ import annotations

import pytest

from envsched import siteconfig
from envsched.policy import parse_policy_text

pytest.importorskip("jinja2")


def _opts(**kw):
    base = dict(policy_path="/etc/envsched/policy.toml", resolver="/opt/envsched/bin/envsched")
    base.update(kw)
    return siteconfig.RenderOptions(**base)


def _line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 1, text
    return lines[0]


def test_renders_one_session_line():
    policy = parse_policy_text("", "/etc/envsched/policy.toml")
    line = _line(siteconfig.render("pam", policy, _opts()))
    assert line == ("session required pam_envsched.so policy=/etc/envsched/policy.toml "
                    "resolver=/opt/envsched/bin/envsched run_dir=/run/envsched failure=closed")
    assert "pam" in siteconfig.schedulers()


def test_on_error_default_and_debug_and_module_path():
    policy = parse_policy_text('[site]\non_error = "default"\ndefault = "local"\n', "/p.toml")
    line = _line(siteconfig.render("pam", policy, _opts(debug=True, plugin="/usr/local/lib/pam_envsched.so")))
    assert line.startswith("session required /usr/local/lib/pam_envsched.so ")
    assert line.endswith(" failure=default debug")


@pytest.mark.parametrize("kw", [dict(resolver="relative/envsched"), dict(plugin="/a b/pam.so"),
                                dict(policy_path="/etc/#x")])
def test_refuses_what_pam_d_would_split(kw):
    policy = parse_policy_text("", "/p.toml")
    with pytest.raises(siteconfig.SiteConfigError):
        siteconfig.render("pam", policy, _opts(**kw))


def test_pam_service_option_names_the_file(tmp_path):
    from envsched import siteconfig
    from envsched.policy import parse_policy_text
    from envsched.siteconfig import RenderOptions, SiteConfigError
    policy = parse_policy_text('[site]\ndefault = "deb12"\n[environments.deb12]\npath = "/os/deb12"\n',
                               "/etc/envsched/policy.toml")
    opts = dict(policy_path="/etc/envsched/policy.toml", resolver="/usr/bin/envsched")
    text = siteconfig.render("pam", policy, RenderOptions(service="sshd", **opts))
    assert "# Add the line to /etc/pam.d/sshd as the LAST session line" in text
    import pytest
    with pytest.raises(SiteConfigError, match="not a PAM service name"):
        siteconfig.render("pam", policy, RenderOptions(service="../sshd", **opts))
