"""The grammar of environment names and pin keys.

A name is never used as a path: it only ever selects a policy entry. Anything outside the
grammar is refused with a message that shows the offending value safely escaped.
"""
from __future__ import annotations

from .records import dataclass     # dataclasses, without their import cost (#13)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"     # NAME_RE; is_valid_name checks it without `re`
NAME_RULE = "1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _NAME_FIRST | frozenset("._-")

#: The host OS itself: no view is built (CHOS's convention).
LOCAL = "local"


def is_valid_name(value: str) -> bool:
    """NAME_RE matches `value` (the same answer, without compiling it: #13's cold path)."""
    return (isinstance(value, str) and 0 < len(value) <= 64 and value[0] in _NAME_FIRST
            and _NAME_CHARS.issuperset(value))


def __getattr__(name: str) -> object:
    """NAME_RE, compiled when first asked for."""
    if name == "NAME_RE":
        import re
        globals()["NAME_RE"] = compiled = re.compile(NAME_PATTERN)
        return compiled
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


# -- what a job may ask for: [user:]NAME[@SELECTOR] ------------------------------------------
#: A user's own image (`chos image import`), where the site allows them (policy [user_images]).
USER_PREFIX = "user:"
DIGEST_PREFIX = "sha256:"
_HEX = set("0123456789abcdef")
MIN_DIGEST_HEX = 12
REQUEST_RULE = "NAME, NAME@VERSION, NAME@sha256:HEX or user:NAME[@...]; NAME: " + NAME_RULE


def is_digest(value: str, full: bool = False) -> bool:
    """sha256:<hex>: all 64 digits, or (full=False) a prefix of at least MIN_DIGEST_HEX."""
    if not value.startswith(DIGEST_PREFIX):
        return False
    hexpart = value[len(DIGEST_PREFIX):]
    n = len(hexpart)
    return (n == 64 if full else MIN_DIGEST_HEX <= n <= 64) and set(hexpart) <= _HEX


def is_selector(value: str) -> bool:
    """What may follow '@': a digest (or a unique prefix of one) or a version label."""
    return is_digest(value) or is_valid_name(value)


@dataclass(frozen=True)
class EnvRequest:
    """A parsed request: `user` for a user's own image, `selector` for one exact version."""
    name: str
    selector: Optional[str] = None
    user: bool = False

    @property
    def text(self) -> str:
        return (USER_PREFIX if self.user else "") + self.name + (f"@{self.selector}" if self.selector else "")


def parse_request(value: str) -> Optional[EnvRequest]:
    """The request grammar; None when `value` is not in it (the caller refuses it with REQUEST_RULE)."""
    if not isinstance(value, str):
        return None
    user = value.startswith(USER_PREFIX)
    rest = value[len(USER_PREFIX):] if user else value
    name, at, selector = rest.partition("@")
    if not is_valid_name(name) or (at and not is_selector(selector)):
        return None
    if user and name == LOCAL:
        return None
    if name == LOCAL and at:
        return None                       # the host OS has no versions
    return EnvRequest(name, selector or None, user)
