"""Importing a legacy CHOS /etc/chos into an envsched policy (envsched.policy.chos_import)."""
from __future__ import annotations

import os
import secrets
import shutil
import sys

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from envsched.errors import PolicyError
from envsched.policy.chos_import import convert_chos_text, import_chos, parse_chos_text
from envsched.policy.load import parse_policy_text

# Shaped like CHOS's own conf/chos and README example, plus a site's usual additions.
REALISTIC = """\
#
# List valid trees below.  The format should be...
# <alias>:<path>
#
%SHELLS
local:/
root:/
# Scientific Linux 6, the production tree
sl6:/auto/os/sl6/

sl6.4:/auto/os/sl64
deb12:/export/os/debian12
default:/auto/os/sl6

%ENV
USER
HOME
"""


def convert(text: str, source: str = "/etc/chos"):
    out = convert_chos_text(text, source)
    return out, parse_policy_text(out, source + " (imported)")


def test_realistic_file_converts_and_parses() -> None:
    out, policy = convert(REALISTIC)
    assert {n: e.path for n, e in policy.environments.items()} == {
        "sl6": "/auto/os/sl6", "sl6.4": "/auto/os/sl64", "deb12": "/export/os/debian12"}
    assert all(e.kind == "tree" for e in policy.environments.values())
    assert "local" not in policy.environments and "root" not in policy.environments
    assert policy.site.default == "sl6"              # CHOS 'default' pointed at sl6's tree
    assert out.lstrip().startswith("#")
    assert "not imported: line 15: %ENV" in out and "line 16: USER" in out
    assert "'root' is the host root" in out


def test_no_default_alias_means_host() -> None:
    _, policy = convert("%SHELLS\nlocal:/\nsl6:/auto/sl6\n")
    assert policy.site.default == "local"
    assert list(policy.environments) == ["sl6"]


def test_default_to_host_root() -> None:
    _, policy = convert("%SHELLS\ndefault:/\nsl6:/auto/sl6\n")
    assert policy.site.default == "local"
    assert list(policy.environments) == ["sl6"]


def test_default_with_its_own_tree_becomes_an_environment() -> None:
    _, policy = convert("%SHELLS\nsl6:/auto/sl6\ndefault:/auto/sl7\n")
    assert policy.site.default == "default"
    assert policy.environments["default"].path == "/auto/sl7"


def test_only_first_shells_section_counts_as_in_chos() -> None:
    out, policy = convert("early:/x\n%SHELLS\nsl6:/a\n%ENV\nPATH\n%SHELLS\nlate:/b\n")
    assert list(policy.environments) == ["sl6"]
    assert "line 1: early:/x" in out and "line 7: late:/b" in out


def test_empty_shells_section_gives_host_only() -> None:
    _, policy = convert("# nothing yet\n%SHELLS\n\n")
    assert policy.environments == {} and policy.site.default == "local"


def test_blanks_and_crlf_are_tolerated() -> None:
    _, policy = convert("%SHELLS\r\n  sl6 : /auto/sl6 \r\n")
    assert policy.environments["sl6"].path == "/auto/sl6"


def test_parse_returns_lines() -> None:
    shells, ignored = parse_chos_text("# c\n%SHELLS\nsl6:/a\n%ENV\nHOME\n", "f")
    assert shells == [("sl6", "/a", 3)]
    assert [n for n, _, _ in ignored] == [4, 5]


@pytest.mark.parametrize("text, line, words", [
    ("%SHELLS\nlocal:/\nbad name:/x\n", 3, "not a valid environment name"),
    ("%SHELLS\n/auto/rh73:/auto/rh73\n", 2, "CHOS allowed paths as aliases"),
    ("%SHELLS\n-x:/x\n", 2, "not a valid environment name"),
    ("%SHELLS\nsl6:/a\n# again\nsl6:/b\n", 4, "duplicate alias (first at line 2)"),
    ("%SHELLS\nlocal:/\nlocal:/\n", 3, "duplicate alias"),
    ("# hi\n%SHELLS\nsl6 /auto/sl6\n", 3, "missing ':'"),
    ("%SHELLS\nsl6:auto/sl6\n", 2, "not absolute"),
    ("%SHELLS\nsl6:\n", 2, "not absolute"),
    ("%SHELLS\nsl6:/auto/../etc\n", 2, "'..'"),
    ("%SHELLS\nsl6:/auto/sl6 # prod\n", 2, "blanks"),
    ("%SHELLS\nlocal:/auto/sl6\n", 2, "reserved for the host"),
])
def test_errors_name_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        convert_chos_text(text, "/etc/chos")
    message = str(info.value)
    assert message.startswith(f"/etc/chos:{line}: "), message
    assert words in message and "\n" not in message


def test_no_shells_section() -> None:
    with pytest.raises(PolicyError, match=r"^/etc/chos: no %SHELLS section"):
        convert_chos_text("# only comments\nsl6:/a\n%ENV\nHOME\n", "/etc/chos")


def test_import_from_file(tmp_path) -> None:
    # as root, files under tmp_path (/tmp) are rightly not trusted: use a root-owned directory
    base = f"/run/envsched-test-chos-{secrets.token_hex(6)}" if os.geteuid() == 0 else str(tmp_path)
    os.makedirs(base, 0o755, exist_ok=True)
    try:
        path = os.path.join(base, "chos")
        with open(path, "w") as f:
            f.write(REALISTIC)
        os.chmod(path, 0o644)
        out = import_chos(path)
        assert parse_policy_text(out, "x").environments["deb12"].path == "/export/os/debian12"
    finally:
        if base != str(tmp_path):
            shutil.rmtree(base)


def test_import_missing_file(tmp_path) -> None:
    with pytest.raises(PolicyError, match="cannot"):
        import_chos(str(tmp_path / "absent" / "chos"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the trust check applies to root only")
def test_root_requires_trusted_file() -> None:
    base = f"/run/envsched-test-chos-{secrets.token_hex(6)}"
    os.mkdir(base, 0o755)
    try:
        os.chmod(base, 0o755)                        # whatever the umask
        path = os.path.join(base, "chos")
        with open(path, "w") as f:
            f.write(REALISTIC)
        os.chmod(path, 0o644)
        assert "[environments.deb12]" in import_chos(path)
        os.chmod(path, 0o666)
        with pytest.raises(PolicyError, match="CHOS config not trusted"):
            import_chos(path)
        os.chmod(path, 0o644)
        os.chown(path, 1, -1)                        # daemon, like a non-root /etc/chos
        with pytest.raises(PolicyError, match="owned by uid 1"):
            import_chos(path)
    finally:
        shutil.rmtree(base)
