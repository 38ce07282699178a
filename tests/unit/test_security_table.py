"""docs/security.md, "Where every root input comes from": every row names a forging test that
exists, and every forging test (test_forged_*) is named by some row, so the table cannot rot."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "security.md"
REF = re.compile(r"`(?:([a-z_/]+\.py))?::(test_[A-Za-z0-9_]+)(?:\[[^\]]*\])?`")


def table_rows() -> List[Tuple[str, str]]:
    """(component heading, row) for every row of the section's tables."""
    text = DOC.read_text()
    section = text.split("## Where every root input comes from", 1)[1].split("\n## ", 1)[0]
    rows, heading = [], ""
    for line in section.splitlines():
        if line.startswith("### "):
            heading = line
        elif line.startswith("| ") and not line.startswith(("| value", "| ---")):
            rows.append((heading, line))
    return rows


def cited() -> Dict[Tuple[str, str], str]:
    """(file, test) -> the row citing it. A bare `::name` is in the file named before it in its
    row, else in the first file its table names."""
    out: Dict[Tuple[str, str], str] = {}
    primary, last_heading = "", ""
    for heading, row in table_rows():
        if heading != last_heading:
            primary, last_heading = "", heading
        current = primary
        for m in REF.finditer(row.rstrip(" |").split(" | ")[-1]):
            current = m.group(1) or current
            primary = primary or current
            out[(current, m.group(2))] = row
    return out


def defined(path: str) -> Set[str]:
    return set(re.findall(r"^def (test_[A-Za-z0-9_]+)\(", (REPO / "tests" / path).read_text(), re.M))


def test_every_row_has_a_test():
    for heading, row in table_rows():
        last_cell = row.rstrip(" |").split(" | ")[-1]
        assert REF.search(last_cell) or "(harmless)" in last_cell or last_cell.strip() in ("—", "the shims' rows"), \
            (heading, row)


def test_every_cited_test_exists():
    missing = [f"{f}::{t}" for (f, t) in cited() if not f or t not in defined(f)]
    assert not missing, missing


def test_every_forging_test_is_cited():
    names = {t for (_f, t) in cited()}
    forging = {(str(p.relative_to(REPO / "tests")), t) for p in (REPO / "tests").rglob("test_*.py")
               for t in defined(str(p.relative_to(REPO / "tests"))) if t.startswith("test_forged_")}
    uncited = sorted(f"{f}::{t}" for f, t in forging if t not in names)
    assert not uncited, uncited


def test_the_row_count_is_stated():
    text = DOC.read_text()
    assert f"{len(table_rows())} rows." in text
