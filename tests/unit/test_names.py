"""The environment-name grammar and the escaping of untrusted values (envsched.names)."""
from __future__ import annotations

import os
import sys

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from envsched.names import LOCAL, NAME_RE, NAME_RULE, is_valid_name, show


@pytest.mark.parametrize("name", [
    "sl6", "sl6.4", "deb12", "a", "Z", "0", "9lives", "A_b-c.d", "local", "sl6..", "x-",
    "a" * 64, "0" + "." * 63,
])
def test_valid_names(name):
    assert is_valid_name(name)


@pytest.mark.parametrize("name", [
    "", ".", "..", "../etc", "./sl6", "/etc", "a/b", "sl 6", " sl6", "sl6 ", "sl6\n", "\nsl6",
    "sl6\0", "\0", "sl6\t", "-x", "_x", ".hidden", "é", "sl6é", "ｓｌ６", "sl6\u200b", "a" * 65,
    "0" + "." * 64, "sl6;rm", "sl6$", "sl*", "a:b", "a,b", "a'b", 'a"b', "a\\b",
])
def test_invalid_names(name):
    assert not is_valid_name(name)


@pytest.mark.parametrize("value", [None, 6, 6.0, b"sl6", ["sl6"], ("sl6",)])
def test_non_strings_are_invalid(value):
    assert is_valid_name(value) is False


def test_name_boundary_64_65():
    assert is_valid_name("x" * 64)
    assert not is_valid_name("x" * 65)
    assert NAME_RE.match("x" * 65) is None


def test_trailing_newline_is_not_accepted_by_dollar_semantics():
    # `$` would match before a trailing newline; the grammar must not.
    assert not is_valid_name("sl6\n")
    assert not is_valid_name("sl6\r\n")


def test_local_constant_and_rule():
    assert LOCAL == "local"
    assert "1-64" in NAME_RULE
    assert "\n" not in NAME_RULE


# -- show ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("sl6", "'sl6'"),
    ("", "''"),
    ("a\0b", "'a\\x00b'"),
    ("a\nb", "'a\\nb'"),
    ("a\rb\tc", "'a\\rb\\tc'"),
    ("\x1b[31m", "'\\x1b[31m'"),
    ("it's", "'it\\'s'"),
    ("é", "'\\xe9'"),
    ("\u200b", "'\\u200b'"),
    ("a\\b", "'a\\\\b'"),
    (6, "'6'"),
    (None, "'None'"),
    (["a"], "'[\\'a\\']'"),
    (b"sl6", "'sl6'"),
])
def test_show_escapes(value, expected):
    assert show(value) == expected


def test_show_truncates_at_default_limit_40():
    assert show("x" * 40) == "'" + "x" * 40 + "'"
    assert show("x" * 41) == "'" + "x" * 40 + "...'"
    assert show("x" * 1000) == "'" + "x" * 40 + "...'"


def test_show_truncates_at_given_limit():
    assert show("abcdefghij", 3) == "'abc...'"
    assert show("abc", 3) == "'abc'"
    assert show("x" * 61, 60) == "'" + "x" * 60 + "...'"


def test_show_truncates_after_escaping():
    # ten NULs become forty characters of escapes: exactly at the limit, not truncated
    assert show("\0" * 10) == "'" + "\\x00" * 10 + "'"
    assert show("\0" * 11).endswith("...'")
    assert len(show("\0" * 11)) == 40 + 5


@pytest.mark.parametrize("value", [
    "line1\nline2", "nul\0nul", "é" * 30, "\u2028sep", "\x85nel", b"\xff\xfe\n", "\r\n" * 50,
])
def test_show_is_one_printable_ascii_line(value):
    out = show(value)
    assert out.isascii()
    assert out.isprintable()
    assert "\n" not in out and "\r" not in out and "\0" not in out
    assert out.startswith("'") and out.endswith("'")


def test_show_bytes_that_are_not_utf8_are_escaped_not_raised():
    out = show(b"sl6\xff")
    assert out.startswith("'sl6")
    assert "xff" in out
    assert out.isascii()
