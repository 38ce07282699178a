"""The grammar of environment names and pin keys.

A name is never used as a path: it only ever selects a policy entry. Anything outside the
grammar is refused with a message that shows the offending value safely escaped.
"""
from __future__ import annotations

import re

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
NAME_RULE = "1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"

#: The host OS itself: no view is built (CHOS's convention).
LOCAL = "local"


def is_valid_name(value: str) -> bool:
    return isinstance(value, str) and NAME_RE.match(value) is not None


def show(value: object, limit: int = 40) -> str:
    """Render an untrusted value for a one-line message: escaped, quoted, truncated."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "backslashreplace")
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        text = f"<integer of {value.bit_length()} bits>"   # str() refuses more than 4300 digits
    else:
        try:
            text = str(value)
        except (ValueError, RecursionError):
            text = f"<{type(value).__name__}>"
    text = text.encode("unicode_escape").decode("ascii")
    if len(text) > limit:
        text = text[:limit] + "..."
    return "'" + text.replace("'", "\\'") + "'"
