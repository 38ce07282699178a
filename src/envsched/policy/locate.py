"""Find the line of a key in a TOML text, so validation errors can say `file:line`.

tomllib reports lines only for syntax errors; for meaning errors we look the key up in the
raw text. Best effort: returns None when the key cannot be placed.
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence

_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")

# The text is the policy as written, hostile or not (a long line inside a multi-line string
# reaches these): the two helpers below run in linear time. They give what the regular expressions
#   header:  ^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$        (its group)
#   dotted:  re.findall(r"""\s*("[^"]*"|'[^']*'|[^.\s]+)\s*(?:\.|$)""", text)
# give, which backtrack quadratically over long runs of blanks or of characters other than dots.


def _header(line: str) -> Optional[str]:
    """The inside of a table header line `[a.b]` / `[[a.b]]` (a comment may follow), else None."""
    s = line.lstrip()
    if not s.startswith("["):
        return None
    end = s.find("]")
    if end < 0:
        return None
    tail = s[end + 1:]
    tail = (tail[1:] if tail.startswith("]") else tail).lstrip()
    if tail and not tail.startswith("#"):
        return None
    for start in ((2, 1) if s.startswith("[[") else (1,)):
        inside = s[start:end]
        if inside:
            return inside.strip() or inside[-1]
    return None


def _split_dotted(text: str) -> List[str]:
    """The parts of a dotted key: 'a."b.c".d' -> ['a', 'b.c', 'd']."""
    n = len(text)
    nonblank = [n] * (n + 1)             # the first non-blank at or after i
    run_end = [n] * (n + 1)              # the end of the run of characters other than '.' and blanks at i
    next_quote = {'"': [n] * (n + 1), "'": [n] * (n + 1)}
    for i in range(n - 1, -1, -1):
        c = text[i]
        nonblank[i] = nonblank[i + 1] if c.isspace() else i
        run_end[i] = run_end[i + 1] if c != "." and not c.isspace() and i + 1 < n and \
            text[i + 1] != "." and not text[i + 1].isspace() else i + 1
        for q, table in next_quote.items():
            table[i] = i if c == q else table[i + 1]

    def part_ends(i: int) -> Optional[int]:
        """After a part at i: blanks, then a dot (taken) or the end; where the match ends."""
        j = nonblank[i]
        if j == n:
            return n
        return j + 1 if text[j] == "." else None

    parts: List[str] = []
    i = 0
    while i < n:
        j = nonblank[i]
        if j == n:
            break
        c, part, end = text[j], "", None
        if c in next_quote:
            k = next_quote[c][j + 1] if j + 1 <= n else n
            if k < n:
                end = part_ends(k + 1)
                part = text[j:k + 1]
        if end is None and c != ".":
            end = part_ends(run_end[j])
            part = text[j:run_end[j]]
        if end is None:
            i += 1
            continue
        parts.append(part)
        i = end
    return [p.strip("\"'") for p in parts]


def line_of(text: str, path: Sequence[object]) -> Optional[int]:
    """1-based line where `path` (e.g. ["environments", "sl6", "path"]) is defined."""
    keys = [str(p) for p in path if not isinstance(p, int)]
    if not keys:
        return None
    best: Optional[int] = None
    best_depth = 0
    header: List[str] = []
    for number, line in enumerate(text.split("\n"), start=1):     # TOML's lines, as tomllib counts them
        head = _header(line)
        if head is not None:
            header = _split_dotted(head)
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
