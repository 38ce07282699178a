"""`envsched check`'s second pass (policy/meaning.py): defaults that refuse the jobs they are for."""
from __future__ import annotations

from envsched.policy import parse_policy_text
from envsched.policy.meaning import problems

BASE = """
[site]
default = "{default}"
{site}
[defaults.groups]
{groups}
[defaults.partitions]
{partitions}
[defaults.accounts]
{accounts}
[environments.deb12]
path = "/os/deb12"
{deb12}
[environments.deb13]
path = "/os/deb13"
{deb13}
"""


def check(default="deb12", site="", groups="", partitions="", accounts="", deb12="", deb13=""):
    text = BASE.format(default=default, site=site, groups=groups, partitions=partitions, accounts=accounts,
                       deb12=deb12, deb13=deb13)
    return problems(parse_policy_text(text, "/etc/envsched/policy.toml"))


def test_a_sound_policy_has_none():
    assert check(groups='hpc = "deb13"', partitions='gpu = "deb13"', accounts='p1 = "deb12"',
                 deb13='allow_groups = ["hpc"]\nallow_partitions = ["gpu"]') == []


def test_disabled_site_default():
    assert check(deb12="enabled = false") == [
        "/etc/envsched/policy.toml: site.default: environment deb12 is disabled (enabled = false): every job that "
        "names nothing is refused"]


def test_restricted_site_default():
    out = check(deb12='allow_users = ["alice"]\nallow_partitions = ["a"]')
    assert out == ["/etc/envsched/policy.toml: site.default: environment deb12 is limited by allow_users, "
                   "allow_partitions: jobs of everyone else that name nothing are refused"]


def test_defaults_that_refuse_their_own_jobs():
    out = check(groups='hpc = "deb13"\nold = "deb12"', partitions='gpu = "deb13"', accounts='p1 = "deb13"',
                deb12='deny_groups = ["old"]', deb13='enabled = false')
    assert out == [
        "/etc/envsched/policy.toml: defaults.groups.hpc: environment deb13 is disabled (enabled = false)",
        "/etc/envsched/policy.toml: defaults.groups.old: environment deb12 denies group old (deny_groups)",
        "/etc/envsched/policy.toml: defaults.partitions.gpu: environment deb13 is disabled (enabled = false)",
        "/etc/envsched/policy.toml: defaults.accounts.p1: environment deb13 is disabled (enabled = false)",
    ]


def test_defaults_outside_the_environments_limits():
    out = check(groups='hpc = "deb13"', partitions='cpu = "deb13"', accounts='p2 = "deb13"',
                deb13='allow_groups = ["other"]\nallow_partitions = ["gpu"]\nallow_accounts = ["p1"]')
    assert out == [
        "/etc/envsched/policy.toml: defaults.groups.hpc: environment deb13 is restricted to other users or groups "
        "(allow_users/allow_groups)",
        "/etc/envsched/policy.toml: defaults.partitions.cpu: environment deb13 is not allowed in partition cpu "
        "(allow_partitions)",
        "/etc/envsched/policy.toml: defaults.accounts.p2: environment deb13 is not allowed for account p2 "
        "(allow_accounts)",
    ]
