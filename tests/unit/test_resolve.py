"""Which environment a job gets (envsched.resolve): precedence, refusals, access rules."""
from __future__ import annotations

import os
import sys
import textwrap

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from envsched.names import REQUEST_RULE as NAME_RULE
from envsched.policy.load import parse_policy_text
from envsched.policy.model import Policy
from envsched.resolve import (Decision, Refusal, Request, Step, allowed_names, check_name,
                              denial_reason, resolve)
from envsched.userfile import UserFile

POLICY = """\
[site]
default = "deb12"

[defaults]
partitions = { old = "sl6", gpu = "gpu" }
queues = { "long.q" = "sl5" }
accounts = { legacy = "sl5" }
groups = { physics = "sl6", chem = "sl5" }

[environments.sl6]
path = "/os/sl6"
[environments.sl5]
path = "/os/sl5"
[environments.deb12]
path = "/os/deb12"
[environments.off]
path = "/os/off"
enabled = false
[environments.secret]
path = "/os/secret"
allow_users = ["alice"]
allow_groups = ["hep", "astro"]
deny_users = ["mallory"]
deny_groups = ["banned"]
[environments.gpu]
path = "/os/gpu"
allow_accounts = ["gpuacct", "ml"]
allow_partitions = ["gpu"]
"""

# every environment `bob` (no special groups, no account, no partition) may use
BOB_ALLOWED = ("deb12", "sl5", "sl6", "local")
UF = "/home/bob/.chos"


def policy(text: str = POLICY) -> Policy:
    return parse_policy_text(textwrap.dedent(text), "policy.toml")


@pytest.fixture(scope="module")
def pol() -> Policy:
    return policy()


def uf(value=None, error=None) -> UserFile:
    return UserFile(UF, value=value, error=error)


def decided(outcome, name: str, source: str) -> Decision:
    assert isinstance(outcome, Decision), outcome
    assert (outcome.name, outcome.source) == (name, source)
    return outcome


def refused(outcome) -> Refusal:
    assert isinstance(outcome, Refusal), outcome
    return outcome


def notes(outcome):
    return [(s.source, s.value, s.note) for s in outcome.steps]


# -- precedence ---------------------------------------------------------------------------

def full_request(**over) -> Request:
    """A request where every source says something different."""
    args = dict(user="bob", groups=("physics",), account="legacy", partition="old",
                option="sl6", chos_var="sl5", user_file=uf("deb12"))
    args.update(over)
    return Request(**args)


def test_option_wins_over_everything(pol):
    d = decided(resolve(pol, full_request()), "sl6", "option")
    assert d.environment is pol.environments["sl6"]
    assert not d.is_local and d.warning is None
    assert notes(d) == [
        ("option", "sl6", "chosen"),
        ("CHOS variable", "sl5", "overridden"),
        ("~/.chos", "deb12", "overridden"),
        ("partition default", "sl6", "overridden"),
        ("account default", "sl5", "overridden"),
        ("group default (physics)", "sl6", "overridden"),
        ("site default", "deb12", "overridden"),
    ]


def test_chos_variable_is_second(pol):
    d = decided(resolve(pol, full_request(option=None)), "sl5", "CHOS variable")
    assert notes(d)[:3] == [("option", None, "not set"), ("CHOS variable", "sl5", "chosen"),
                            ("~/.chos", "deb12", "overridden")]


def test_user_file_is_third(pol):
    d = decided(resolve(pol, full_request(option=None, chos_var=None)), "deb12", "~/.chos")
    assert notes(d)[:4] == [("option", None, "not set"), ("CHOS variable", None, "not set"),
                            ("~/.chos", "deb12", "chosen"), ("partition default", "sl6", "overridden")]


def test_partition_default_is_fourth(pol):
    d = decided(resolve(pol, full_request(option=None, chos_var=None, user_file=None)),
                "sl6", "partition default")
    assert notes(d)[2:5] == [("~/.chos", None, "not set"), ("partition default", "sl6", "chosen"),
                             ("account default", "sl5", "overridden")]


def test_account_default_is_fifth(pol):
    d = decided(resolve(pol, full_request(option=None, chos_var=None, user_file=None, partition=None)),
                "sl5", "account default")
    assert notes(d)[3:] == [("partition default", None, "not set"), ("account default", "sl5", "chosen"),
                            ("group default (physics)", "sl6", "overridden"),
                            ("site default", "deb12", "overridden")]


def test_group_default_is_sixth(pol):
    d = decided(resolve(pol, Request("bob", groups=("physics",))), "sl6", "group default (physics)")
    assert notes(d)[-2:] == [("group default (physics)", "sl6", "chosen"),
                             ("site default", "deb12", "overridden")]


def test_site_default_is_last(pol):
    d = decided(resolve(pol, Request("bob")), "deb12", "site default")
    assert notes(d) == [
        ("option", None, "not set"), ("CHOS variable", None, "not set"), ("~/.chos", None, "not set"),
        ("partition default", None, "not set"), ("account default", None, "not set"),
        ("group default", None, "not set"), ("site default", "deb12", "chosen"),
    ]
    assert d.environment.path == "/os/deb12"


def test_steps_are_step_objects(pol):
    d = resolve(pol, Request("bob", option="sl6"))
    assert d.steps[0] == Step("option", "sl6", "chosen")
    assert len(d.steps) == 7


def test_queue_default_acts_as_partition_default(pol):
    decided(resolve(pol, Request("bob", partition="long.q")), "sl5", "partition default")


def test_unknown_partition_and_account_say_nothing(pol):
    d = decided(resolve(pol, Request("bob", partition="debug", account="other")), "deb12", "site default")
    assert notes(d)[3:5] == [("partition default", None, "not set"), ("account default", None, "not set")]


def test_group_default_first_listed_in_policy_that_user_is_in(pol):
    # the policy lists physics before chem: the user's own group order does not matter
    d = decided(resolve(pol, Request("bob", groups=("users", "chem", "physics"))),
                "sl6", "group default (physics)")
    assert notes(d)[5] == ("group default (physics)", "sl6", "chosen")
    decided(resolve(pol, Request("bob", groups=("users", "chem"))), "sl5", "group default (chem)")
    decided(resolve(pol, Request("bob", groups=("users",))), "deb12", "site default")


def test_group_default_order_follows_the_policy_file():
    p = policy(POLICY.replace('groups = { physics = "sl6", chem = "sl5" }',
                              'groups = { chem = "sl5", physics = "sl6" }'))
    decided(resolve(p, Request("bob", groups=("physics", "chem"))), "sl5", "group default (chem)")


@pytest.mark.parametrize("empty", ["", None])
def test_empty_option_and_chos_are_unset(pol, empty):
    d = decided(resolve(pol, Request("bob", option=empty, chos_var=empty)), "deb12", "site default")
    assert notes(d)[:2] == [("option", None, "not set"), ("CHOS variable", None, "not set")]


def test_empty_option_falls_to_chos_variable(pol):
    decided(resolve(pol, Request("bob", option="", chos_var="sl5")), "sl5", "CHOS variable")


def test_absent_user_file_says_nothing(pol):
    d = decided(resolve(pol, Request("bob", user_file=uf())), "deb12", "site default")
    assert notes(d)[2] == ("~/.chos", None, "not set")


def test_user_file_label_follows_site_user_file():
    p = policy(POLICY.replace('default = "deb12"', 'default = "deb12"\nuser_file = ".envsched"'))
    d = decided(resolve(p, Request("bob", user_file=uf("sl6"))), "sl6", "~/.envsched")
    r = refused(resolve(p, Request("bob", user_file=uf(value=""))))
    assert r.source == "~/.envsched" and r.reason == "~/.envsched is empty"
    assert d.steps[2] == Step("~/.envsched", "sl6", "chosen")


def test_local_from_option(pol):
    d = decided(resolve(pol, Request("bob", option="local", chos_var="sl6")), "local", "option")
    assert d.is_local and d.environment is None


def test_local_as_site_default():
    p = policy(POLICY.replace('default = "deb12"', 'default = "local"'))
    d = decided(resolve(p, Request("bob")), "local", "site default")
    assert d.is_local


# -- a bad value is refused, never skipped ------------------------------------------------

@pytest.mark.parametrize("over,source", [
    (dict(option="sl7"), "option"),
    (dict(option=None, chos_var="sl7"), "CHOS variable"),
    (dict(option=None, chos_var=None, user_file=uf("sl7")), "~/.chos"),
])
def test_unknown_value_is_refused_not_skipped(pol, over, source):
    r = refused(resolve(pol, full_request(**over)))
    assert (r.requested, r.source, r.reason) == ("'sl7'", source, "no such environment at this site")
    assert r.allowed == BOB_ALLOWED
    chosen = [s for s in r.steps if s.note == "refused"]
    assert chosen == [Step(source, "sl7", "refused")]
    assert all(s.note in ("overridden", "not set") for s in r.steps if s.source != source)
    assert r.steps[-1] == Step("site default", "deb12", "overridden")


def test_denied_option_is_not_skipped_to_an_allowed_chos_variable(pol):
    r = refused(resolve(pol, Request("bob", option="secret", chos_var="sl6")))
    assert (r.source, r.reason) == ("option", "restricted to other users or groups")
    assert notes(r)[:2] == [("option", "secret", "refused"), ("CHOS variable", "sl6", "overridden")]


def test_invalid_chos_variable_is_not_skipped_to_user_file(pol):
    r = refused(resolve(pol, Request("bob", chos_var="../etc", user_file=uf("sl6"))))
    assert r.source == "CHOS variable" and r.requested == "'../etc'"


def test_disabled_partition_default_is_refused_not_skipped():
    p = policy(POLICY.replace('partitions = { old = "sl6", gpu = "gpu" }',
                              'partitions = { old = "off", gpu = "gpu" }'))
    r = refused(resolve(p, Request("bob", partition="old", groups=("physics",))))
    assert (r.requested, r.source, r.reason) == ("'off'", "partition default", "disabled by the site")


def test_denied_site_default_is_refused():
    p = policy(POLICY.replace('default = "deb12"', 'default = "secret"'))
    r = refused(resolve(p, Request("bob")))
    assert (r.source, r.reason) == ("site default", "restricted to other users or groups")
    assert r.steps[-1] == Step("site default", "secret", "refused")


# -- ~/.chos errors -----------------------------------------------------------------------

@pytest.mark.parametrize("error", ["is a symbolic link (not followed)", "is not a regular file",
                                   "is owned by uid 0, not by you", "could not be read within 10 s"])
def test_user_file_error_is_a_refusal_naming_it(pol, error):
    r = refused(resolve(pol, Request("bob", user_file=uf(error=error), groups=("physics",))))
    assert r.source == "~/.chos"
    assert r.reason == f"~/.chos {error}"
    assert r.requested == "from ~/.chos"
    assert r.message() == (f"environment from ~/.chos (~/.chos) refused: ~/.chos {error}; "
                           "allowed for you: deb12, sl5, sl6, local")
    assert notes(r)[2] == ("~/.chos", "", "refused")
    assert notes(r)[5] == ("group default (physics)", "sl6", "overridden")


def test_empty_user_file_is_a_refusal(pol):
    r = refused(resolve(pol, Request("bob", user_file=uf(value=""))))
    assert (r.source, r.reason, r.requested) == ("~/.chos", "~/.chos is empty", "from ~/.chos")
    assert "~/.chos" in r.message()


def test_user_file_error_wins_over_value(pol):
    r = refused(resolve(pol, Request("bob", user_file=UserFile(UF, value="sl6", error="is odd"))))
    assert r.reason == "~/.chos is odd"


def test_user_file_error_below_an_option_is_ignored(pol):
    d = decided(resolve(pol, Request("bob", option="sl6", user_file=uf(error="is not a regular file"))),
                "sl6", "option")
    assert notes(d)[2] == ("~/.chos", "", "overridden")


# -- invalid names ------------------------------------------------------------------------

@pytest.mark.parametrize("value,shown", [
    ("../etc", "'../etc'"),
    ("sl 6", "'sl 6'"),
    ("sl6\0", "'sl6\\x00'"),
    ("sl6\nroot", "'sl6\\nroot'"),
    ("sl6é", "'sl6\\xe9'"),
    ("/os/sl6", "'/os/sl6'"),
    (".", "'.'"),
    ("-x", "'-x'"),
    ("x" * 65, "'" + "x" * 40 + "...'"),
    ("it's", "'it\\'s'"),
    ("\x1b[2Jsl6", "'\\x1b[2Jsl6'"),
])
@pytest.mark.parametrize("field", ["option", "chos_var", "user_file"])
def test_invalid_names_are_refused_escaped(pol, value, shown, field):
    req = Request("bob", **{field: uf(value) if field == "user_file" else value})
    r = refused(resolve(pol, req))
    assert r.requested == shown
    assert r.reason == f"not a valid name ({NAME_RULE})"
    source = {"option": "option", "chos_var": "CHOS variable", "user_file": "~/.chos"}[field]
    msg = r.message()
    assert msg == (f"environment {shown} ({source}) refused: not a valid name ({NAME_RULE}); "
                   "allowed for you: deb12, sl5, sl6, local")
    assert msg.isprintable() and "\n" not in msg and "\0" not in msg


def test_name_of_64_chars_is_valid_but_unknown(pol):
    r = refused(resolve(pol, Request("bob", option="x" * 64)))
    assert r.reason == "no such environment at this site"


@pytest.mark.parametrize("value", ["SL6", "sl6 ", " sl6", "sl6.0"])
def test_names_are_exact(pol, value):
    assert isinstance(resolve(pol, Request("bob", option=value)), Refusal)


def test_check_name_empty_value_without_error_is_invalid(pol):
    r = refused(check_name(pol, Request("bob"), "option", ""))
    assert r.requested == "''" and r.reason.startswith("not a valid name")


# -- access rules -------------------------------------------------------------------------

def test_disabled_environment(pol):
    r = refused(resolve(pol, Request("bob", option="off")))
    assert (r.requested, r.reason) == ("'off'", "disabled by the site")
    assert "off" not in r.allowed


def test_disabled_beats_allow():
    p = policy(POLICY + '[environments.x]\npath = "/x"\nenabled = false\nallow_users = ["bob"]\n')
    assert refused(resolve(p, Request("bob", option="x"))).reason == "disabled by the site"


def test_allow_users(pol):
    decided(resolve(pol, Request("alice", option="secret")), "secret", "option")
    r = refused(resolve(pol, Request("bob", option="secret")))
    assert r.reason == "restricted to other users or groups"


def test_allow_groups_or_users(pol):
    decided(resolve(pol, Request("carol", groups=("users", "astro"), option="secret")), "secret", "option")
    decided(resolve(pol, Request("carol", groups=("hep",), option="secret")), "secret", "option")
    assert isinstance(resolve(pol, Request("carol", groups=("users",), option="secret")), Refusal)


def test_deny_users_overrides_allow():
    p = policy(POLICY.replace('deny_users = ["mallory"]', 'deny_users = ["mallory", "alice"]'))
    r = refused(resolve(p, Request("alice", groups=("hep",), option="secret")))
    assert r.reason == "user alice is denied"


def test_deny_user_not_in_allow(pol):
    r = refused(resolve(pol, Request("mallory", groups=("hep",), option="secret")))
    assert r.reason == "user mallory is denied"


def test_deny_groups_overrides_allow_users_and_groups(pol):
    r = refused(resolve(pol, Request("alice", groups=("hep", "banned"), option="secret")))
    assert r.reason == "group banned is denied"


def test_deny_groups_names_first_denied_group():
    p = policy(POLICY.replace('deny_groups = ["banned"]', 'deny_groups = ["banned", "late"]'))
    r = refused(resolve(p, Request("alice", groups=("users", "late", "banned"), option="secret")))
    assert r.reason == "group late is denied"


def test_deny_only_environment_allows_everyone_else():
    p = policy(POLICY + '[environments.open]\npath = "/x"\ndeny_users = ["eve"]\ndeny_groups = ["g"]\n')
    decided(resolve(p, Request("bob", option="open")), "open", "option")
    assert refused(resolve(p, Request("eve", option="open"))).reason == "user eve is denied"
    assert refused(resolve(p, Request("bob", groups=("g",), option="open"))).reason == "group g is denied"


def test_allow_accounts_and_partitions_are_anded(pol):
    ok = Request("bob", account="ml", partition="gpu", option="gpu")
    decided(resolve(pol, ok), "gpu", "option")
    r = refused(resolve(pol, Request("bob", account="ml", partition="cpu", option="gpu")))
    assert r.reason == "not allowed in partition 'cpu'"
    r = refused(resolve(pol, Request("bob", account="other", partition="gpu", option="gpu")))
    assert r.reason == "not allowed for account 'other'"
    r = refused(resolve(pol, Request("bob", option="gpu")))
    assert r.reason == "not allowed for account (none)"
    r = refused(resolve(pol, Request("bob", account="gpuacct", option="gpu")))
    assert r.reason == "not allowed in partition (none)"


def test_partition_default_still_checked_against_rules(pol):
    # partition gpu defaults to gpu, but the job's account is not allowed there
    r = refused(resolve(pol, Request("bob", partition="gpu", account="other")))
    assert (r.source, r.reason) == ("partition default", "not allowed for account 'other'")
    decided(resolve(pol, Request("bob", partition="gpu", account="ml")), "gpu", "partition default")


def test_user_rules_and_account_rules_are_anded():
    p = policy(POLICY + '[environments.both]\npath = "/x"\nallow_users = ["alice"]\n'
               'allow_accounts = ["a1"]\n')
    decided(resolve(p, Request("alice", account="a1", option="both")), "both", "option")
    assert refused(resolve(p, Request("alice", account="a2", option="both"))).reason == \
        "not allowed for account 'a2'"
    assert refused(resolve(p, Request("bob", account="a1", option="both"))).reason == \
        "restricted to other users or groups"


def test_denial_reason_direct(pol):
    env = pol.environments["secret"]
    assert denial_reason(env, Request("alice")) is None
    assert denial_reason(env, Request("bob")) == "restricted to other users or groups"
    assert denial_reason(pol.environments["off"], Request("alice")) == "disabled by the site"
    assert denial_reason(pol.environments["sl6"], Request("anyone")) is None


# -- local --------------------------------------------------------------------------------

def test_local_allowed_by_default(pol):
    assert resolve(pol, Request("bob", option="local")).is_local
    assert allowed_names(pol, Request("bob"))[-1] == "local"


def test_local_refused_when_allow_local_false():
    p = policy(POLICY.replace('default = "deb12"', 'default = "deb12"\nallow_local = false'))
    r = refused(resolve(p, Request("bob", option="local")))
    assert (r.requested, r.source, r.reason) == ("'local'", "option", "the host OS is not offered at this site")
    assert r.allowed == ("deb12", "sl5", "sl6")
    assert r.message() == ("environment 'local' (option) refused: the host OS is not offered at this site; "
                           "allowed for you: deb12, sl5, sl6")


# -- allowed_names ------------------------------------------------------------------------

def test_allowed_names_sorted_plus_local(pol):
    assert allowed_names(pol, Request("bob")) == BOB_ALLOWED
    assert allowed_names(pol, Request("alice")) == ("deb12", "secret", "sl5", "sl6", "local")
    assert allowed_names(pol, Request("bob", account="ml", partition="gpu")) == \
        ("deb12", "gpu", "sl5", "sl6", "local")
    assert allowed_names(pol, Request("mallory", groups=("hep",))) == BOB_ALLOWED


def test_allowed_names_none():
    p = policy('[site]\nallow_local = false\ndefault = "x"\n[environments.x]\npath = "/x"\nenabled = false\n')
    assert allowed_names(p, Request("bob")) == ()
    r = refused(resolve(p, Request("bob")))
    assert r.message() == "environment 'x' (site default) refused: disabled by the site; allowed for you: none"


# -- on_error = "default" -----------------------------------------------------------------

@pytest.fixture(scope="module")
def lenient() -> Policy:
    return policy(POLICY.replace('default = "deb12"', 'default = "deb12"\non_error = "default"'))


def test_on_error_default_falls_back_with_warning(lenient):
    d = decided(resolve(lenient, Request("bob", option="sl7")), "deb12", "site default (on_error)")
    assert d.environment is lenient.environments["deb12"]
    assert d.warning == ("environment 'sl7' (option) refused: no such environment at this site; "
                         "allowed for you: deb12, sl5, sl6, local; using the site default deb12")
    assert notes(d)[0] == ("option", "sl7", "refused")
    assert notes(d)[-1] == ("site default", "deb12", "overridden")


def test_on_error_default_for_broken_user_file(lenient):
    d = decided(resolve(lenient, Request("bob", user_file=uf(error="is not a regular file"))),
                "deb12", "site default (on_error)")
    assert d.warning.startswith("environment from ~/.chos (~/.chos) refused: ~/.chos is not a regular file;")


def test_on_error_default_for_denied_group_default(lenient):
    p = policy(POLICY.replace('default = "deb12"', 'default = "deb12"\non_error = "default"')
               .replace('groups = { physics = "sl6", chem = "sl5" }', 'groups = { physics = "off" }'))
    d = decided(resolve(p, Request("bob", groups=("physics",))), "deb12", "site default (on_error)")
    assert "disabled by the site" in d.warning


def test_on_error_default_to_local():
    p = policy(POLICY.replace('default = "deb12"', 'default = "local"\non_error = "default"'))
    d = decided(resolve(p, Request("bob", option="off")), "local", "site default (on_error)")
    assert d.is_local and d.warning.endswith("; using the site default local")


def test_on_error_default_not_when_site_default_is_refused_too():
    p = policy(POLICY.replace('default = "deb12"', 'default = "secret"\non_error = "default"'))
    r = refused(resolve(p, Request("bob", option="sl7")))
    assert (r.requested, r.source, r.reason) == ("'sl7'", "option", "no such environment at this site")
    assert notes(r)[0] == ("option", "sl7", "refused")


def test_on_error_default_not_when_the_site_default_itself_was_chosen_and_refused():
    p = policy(POLICY.replace('default = "deb12"', 'default = "secret"\non_error = "default"'))
    r = refused(resolve(p, Request("bob")))
    assert (r.source, r.reason) == ("site default", "restricted to other users or groups")


def test_on_error_closed_is_the_default(pol):
    assert pol.site.on_error == "closed"
    assert isinstance(resolve(pol, Request("bob", option="sl7")), Refusal)


def test_on_error_default_does_not_change_successes(lenient):
    d = decided(resolve(lenient, Request("bob", option="sl6")), "sl6", "option")
    assert d.warning is None


# -- Refusal.message ----------------------------------------------------------------------

def test_refusal_message_format(pol):
    r = refused(resolve(pol, Request("bob", chos_var="secret")))
    assert r.message() == ("environment 'secret' (CHOS variable) refused: restricted to other users or "
                           "groups; allowed for you: deb12, sl5, sl6, local")


def test_refusal_message_direct():
    assert Refusal("'x'", "option", "why").message() == \
        "environment 'x' (option) refused: why; allowed for you: none"
    assert Refusal("'x'", "option", "why", ("a", "local")).message() == \
        "environment 'x' (option) refused: why; allowed for you: a, local"


def test_refusal_message_escapes_huge_value(pol):
    r = refused(resolve(pol, Request("bob", option="\n" * 10000)))
    assert len(r.message()) < 300
    assert "\n" not in r.message()


def test_outcome_is_frozen(pol):
    d = resolve(pol, Request("bob"))
    with pytest.raises(Exception):
        d.name = "sl6"  # type: ignore[misc]


@pytest.mark.parametrize("over,reason_start", [
    (dict(account="ml\nFAKE LOG LINE"), "not allowed for account "),
    (dict(account="ml", partition="gpu\r\x1b[2K"), "not allowed in partition "),
])
def test_refusal_message_escapes_account_and_partition(pol, over, reason_start):
    r = refused(resolve(pol, Request("bob", option="gpu", **over)))
    assert r.reason.startswith(reason_start)
    assert r.message().isprintable(), repr(r.message())
