"""Find the line of a key in a TOML text, so validation errors can say `file:line`.

tomllib reports lines only for syntax errors; for meaning errors we look the key up in the
raw text. Best effort: returns None when the key cannot be placed.
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


def _split_dotted(text: str) -> List[str]:
    parts = re.findall(r"""\s*("[^"]*"|'[^']*'|[^.\s]+)\s*(?:\.|$)""", text)
    return [p.strip("\"'") for p in parts]


def line_of(text: str, path: Sequence[object]) -> Optional[int]:
    """1-based line where `path` (e.g. ["environments", "sl6", "path"]) is defined."""
    keys = [str(p) for p in path if not isinstance(p, int)]
    if not keys:
        return None
    best: Optional[int] = None
    best_depth = 0
    header: List[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        head = _HEADER.match(line)
        if head:
            header = _split_dotted(head.group(1))
            depth = min(len(header), len(keys))
            if header[:depth] == keys[:depth] and depth > best_depth:
                best, best_depth = number, depth
            continue
        key = _KEY.match(line)
        if not key:
            continue
        full = header + _split_dotted(key.group(1))
        depth = 0
        while depth < min(len(full), len(keys)) and full[depth] == keys[depth]:
            depth += 1
        if depth < len(full):
            continue                      # this key is not on our path
        # an inline table on this line may hold the rest of the path
        rest = keys[depth:]
        if rest and not all(re.search(r"\b%s\b" % re.escape(k), line) for k in rest):
            depth_here = depth
        else:
            depth_here = len(keys)
        if depth_here > best_depth:
            best, best_depth = number, depth_here
    return best
