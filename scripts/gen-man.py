#!/usr/bin/python3
"""Write the man pages chos(1), envsched(8) and envsched-policy(5) (`make man`, the packages).

chos(1) and envsched(8) come from the same argparse parsers as `--help` (each command module's
build_parser()), formatted by argparse-manpage (Debian's python3-argparse-manpage 1.2.x, module
build_manpages; also its newer releases, module argparse_manpage), with our own header, NAME and
the sections --help has no place for (environment, files, exit status).

envsched-policy(5) comes from docs/admin.md, section 2 (the file) and section 3 (every key),
checked against the key sets of src/envsched/policy/schema.py: a key the schema accepts and the
key tables do not document, or a documented key the schema does not know, is an error (exit 1),
so a new key without documentation fails `make man`, the package builds and tests/packaging.

Usage: scripts/gen-man.py [--outdir DIR] [--check]   (--check: only the schema/docs check)
Dates come from SOURCE_DATE_EPOCH when set (dpkg-buildpackage and rpmbuild set it).
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

REPO = Path(__file__).resolve().parent.parent
ADMIN_MD = REPO / "docs" / "admin.md"
os.environ["COLUMNS"] = "80"            # argparse wraps usage lines to the terminal: make it fixed
sys.path.insert(0, str(REPO / "src"))

import envsched                                   # noqa: E402
from envsched.exitcodes import ExitCode           # noqa: E402
from envsched.policy import schema                # noqa: E402


class DocsError(Exception):
    pass


# ------------------------------------------------------------------------------------ roff helpers

def roff_escape(text: str) -> str:
    """Plain text for roff: backslashes and minus signs escaped."""
    return text.replace("\\", "\\e").replace("-", "\\-")


def roff_inline(md: str) -> str:
    """One line of Markdown (code, bold, italics, links) as roff text."""
    out: List[str] = []
    pos = 0
    for m in re.finditer(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\([^)]*\)|(?<![\w*])\*([^*\s][^*]*)\*", md):
        out.append(roff_escape(md[pos:m.start()]))
        code, bold, link, ital = m.groups()
        if code is not None:
            out.append("\\fB" + roff_escape(code) + "\\fR")
        elif bold is not None:
            out.append("\\fB" + roff_inline(bold) + "\\fR")
        elif link is not None:
            out.append(roff_inline(link))
        else:
            out.append("\\fI" + roff_inline(ital) + "\\fR")
        pos = m.end()
    out.append(roff_escape(md[pos:]))
    return "".join(out)


def roff_lines(text: str) -> str:
    """Text whose lines must not start a roff request (a leading . or ')."""
    return "\n".join("\\&" + ln if ln.startswith((".", "'")) else ln for ln in text.split("\n"))


def md_blocks_to_roff(lines: Sequence[str]) -> str:
    """Paragraphs, bullet lists and code blocks of Markdown as roff (no tables, no headings)."""
    out: List[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out += [".PP", ".nf", ".RS 4"] + [roff_lines(roff_escape(ln)) for ln in lines[i + 1:j]] + [".RE", ".fi"]
            i = j + 1
            continue
        if line.startswith("- "):
            item = [line[2:].strip()]
            i += 1
            while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                item.append(lines[i].strip())
                i += 1
            out += [".IP \\(bu 2", roff_lines(roff_inline(" ".join(item)))]
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(("```", "- ", "|", "#")):
            para.append(lines[i].strip())
            i += 1
        if not para:                     # a table or heading where none is expected
            raise DocsError(f"docs/admin.md: cannot convert {line!r}")
        out += [".PP", roff_lines(roff_inline(" ".join(para)))]
    return "\n".join(out)


def th(name: str, section: str, title: str) -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc))
    return f'.TH {name.upper()} {section} "{when:%Y-%m-%d}" "envsched {envsched.__version__}" "{title}"'


# ------------------------------------------------------------------------------ chos(1), envsched(8)

def _manpage_class():
    try:                                          # argparse-manpage 2 and later
        from argparse_manpage.manpage import Manpage
    except ImportError:                           # Debian 12: python3-argparse-manpage 1.2.2
        from build_manpages.manpage import Manpage
    return Manpage


def _describe_subcommands(p: argparse.ArgumentParser) -> None:
    """A subcommand's --help line becomes its description, so its man section says what it does."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sp in action.choices.items():
                if not sp.description and helps.get(name):
                    sp.description = helps[name][0].upper() + helps[name][1:] + "."
                _describe_subcommands(sp)


def _tidy(body: str) -> str:
    """argparse-manpage's body, tidied: one COMMANDS section with a subsection per subcommand
    instead of a section per subcommand (1.2: `.SH OPTIONS 'prog sub'`; 4.x: `.SH COMMAND 'prog
    sub'` and `.SH OPTIONS 'prog sub'`), and usage lines kept as they are (no fill, minus signs
    escaped once)."""
    out: List[str] = []
    lines = body.split("\n")
    i = 0
    current = None
    while i < len(lines):
        line = lines[i]
        if line == ".SH" and i + 1 < len(lines):         # 4.x: `.SH` and its title on the next line
            line = lines[i + 1] = ".SH " + lines[i + 1]
            i += 1
        m = re.match(r"\.SH (?:OPTIONS|COMMAND|POSITIONAL ARGUMENTS) (?:\\fI\\,)?'(.+)'(?:\\/\\fR)?$", line)
        if m:
            name = m.group(1).replace("\\-", "-")
            if current is None:
                out.append(".SH COMMANDS")
            if name != current:
                out.append(f'.SS "{roff_escape(name)}"')
            current = name
            i += 1
            continue
        if line == ".SH COMMENTS":           # 4.x: the epilog (exit codes), which EXIT STATUS has
            i += 1
            while i < len(lines) and not lines[i].startswith(".SH"):
                i += 1
            continue
        if line.startswith("usage: "):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            out += [".nf"] + [re.sub(r"(?<!\\)-", r"\\-", b) for b in block] + [".fi"]
            continue
        if line == "" and out and out[-1] == "":
            i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def exit_status() -> str:
    meanings = admin_exit_codes()
    out = [".SH EXIT STATUS",
           "When the command runs a program (a payload), its exit status or signal is passed through. "
           "envsched's own codes:"]
    for code in ExitCode:
        out += [".TP", f"\\fB{code.value}\\fR {code.name}"]
        if meanings.get(code.value):
            out.append(roff_lines(roff_inline(meanings[code.value])))
    return "\n".join(out)


def command_page(name: str, section: str, title: str, summary: str, module: str, extra: str) -> str:
    mod = __import__(f"envsched.cli.{module}", fromlist=["build_parser"])
    p = mod.build_parser()
    _describe_subcommands(p)
    body = str(_manpage_class()(p))
    start = body.find(".SH SYNOPSIS")
    if start < 0:
        raise DocsError(f"argparse-manpage wrote no SYNOPSIS for {name}")
    extra, see_also = extra.split(".SH SEE ALSO")
    return "\n".join([th(name, section, title), ".SH NAME", f"{name} \\- {roff_escape(summary)}",
                      _tidy(body[start:]).rstrip("\n"), extra.strip("\n"), exit_status(),
                      ".SH SEE ALSO" + see_also.rstrip("\n")]) + "\n"


CHOS_EXTRA = r"""
.SH CHOS COMPATIBILITY
When the first argument is not a subcommand,
.B chos
runs its arguments (or, with none, a login shell) in the environment named by
.BR CHOS ,
or else by \fI~/.chos\fR or the site's defaults, as NERSC's CHOS did:
.PP
.nf
.RS 4
CHOS=deb12 chos ./app
.RE
.fi
.SH ENVIRONMENT
.TP
.B CHOS
The environment a command or job asks for (ahead of \fI~/.chos\fR).
.TP
.B ENVSCHED_POLICY
Another policy file, for callers that are not root (ignored as root).
.SH FILES
.TP
.I ~/.chos
Your choice for every job and login, written by \fBchos set\fR.
.TP
.I /etc/envsched/policy.toml
The site policy, see \fBenvsched\-policy\fR(5).
.SH SEE ALSO
\fBenvsched\fR(8), \fBenvsched\-policy\fR(5);
the user's guide, \fI/usr/share/doc/envsched/user.md\fR
"""

ENVSCHED_EXTRA = r"""
.SH ENVIRONMENT
.TP
.B ENVSCHED_POLICY
Another policy file, for callers that are not root (ignored as root).
.TP
.B ENVSCHED_DEBUG
Set to 1 to print the traceback of an internal error (exit 70).
.SH FILES
.TP
.I /etc/envsched/policy.toml
The site policy, see \fBenvsched\-policy\fR(5).
.TP
.I /run/envsched
Pinned views (the policy's \fBsite.run_dir\fR).
.SH SEE ALSO
\fBchos\fR(1), \fBenvsched\-policy\fR(5);
the administrator's guide, \fI/usr/share/doc/envsched/admin.md\fR
"""


# ------------------------------------------------------------------------------- envsched-policy(5)

def admin_sections() -> Dict[str, List[str]]:
    """docs/admin.md split at its `## N. Title` headings: {N: lines}."""
    sections: Dict[str, List[str]] = {}
    current: Optional[str] = None
    for line in ADMIN_MD.read_text(encoding="utf-8").split("\n"):
        m = re.match(r"## (\d+)\. ", line)
        if m:
            current = m.group(1)
            sections[current] = []
        elif line.startswith("## "):
            current = None
        elif current:
            sections[current].append(line)
    for n in ("2", "3", "9"):
        if n not in sections:
            raise DocsError(f"{ADMIN_MD}: no section '## {n}.'")
    return sections


def table_rows(lines: Sequence[str]) -> List[List[str]]:
    """The body rows of a Markdown table (header and rule dropped), cells stripped."""
    rows = [ln for ln in lines if ln.startswith("|")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", r.strip())[1:-1]] for r in rows]
    return [c for c in cells[2:]]


def admin_exit_codes() -> Dict[int, str]:
    out = {}
    for row in table_rows(admin_sections()["9"]):
        if row and row[0].isdigit():
            out[int(row[0])] = row[-1]
    return out


def key_tables(section3: Sequence[str]) -> List[Tuple[str, List[str], List[List[str]], List[str]]]:
    """Section 3's subsections: (table name, text before the table, rows, text after)."""
    subs: List[Tuple[str, List[str]]] = []
    for line in section3:
        m = re.match(r"### `\[(.+)\]`\s*$", line)
        if m:
            subs.append((m.group(1), []))
        elif line.startswith("### "):
            raise DocsError(f"{ADMIN_MD} section 3: unexpected heading {line!r} (expected ### `[table]`)")
        elif subs:
            subs[-1][1].append(line)
    out = []
    for name, lines in subs:
        first = next((i for i, ln in enumerate(lines) if ln.startswith("|")), len(lines))
        last = first
        while last < len(lines) and lines[last].startswith("|"):
            last += 1
        out.append((name, lines[:first], table_rows(lines[first:last]), lines[last:]))
    return out


def documented_keys(rows: Sequence[Sequence[str]]) -> List[str]:
    keys = []
    for row in rows:
        m = re.fullmatch(r"`([A-Za-z_.]+)`", row[0])
        if not m:
            raise DocsError(f"{ADMIN_MD} section 3: a key cell must be one `key`: {row[0]!r}")
        keys.append(m.group(1))
    return keys


def check_schema(tables) -> List[str]:
    """Every problem between the schema's key sets and section 3's tables, one line each."""
    want: Dict[str, Tuple[str, Set[str]]] = {
        "site": ("SITE_KEYS", set(schema.SITE_KEYS)),
        "defaults": ("DEFAULTS_KEYS", set(schema.DEFAULTS_KEYS)),
        "environments.<name>": ("ENV_KEYS and ENV_OPS_KEYS",
                                (set(schema.ENV_KEYS) - {"env"}) | {f"env.{op}" for op in schema.ENV_OPS_KEYS}),
    }
    problems = []
    found = {name: (rows, documented_keys(rows)) for name, _, rows, _ in tables}
    top = {name.split(".")[0] for name in found}
    for key in sorted(set(schema.TOP_KEYS) - top):
        problems.append(f"top-level table [{key}] (schema.TOP_KEYS) has no subsection in section 3")
    for key in sorted(top - set(schema.TOP_KEYS)):
        problems.append(f"section 3 documents a table [{key}] that the schema does not accept")
    for table, (setname, keys) in want.items():
        if table not in found:
            problems.append(f"no ### `[{table}]` subsection in section 3")
            continue
        rows, documented = found[table]
        for key in sorted(keys - set(documented)):
            problems.append(f"[{table}] {key}: accepted by the schema ({setname} in "
                            f"src/envsched/policy/schema.py) but not documented in docs/admin.md section 3")
        for key in sorted(set(documented) - keys):
            problems.append(f"[{table}] {key}: documented in docs/admin.md section 3 but not in the schema")
        for key in sorted({k for k in documented if documented.count(k) > 1}):
            problems.append(f"[{table}] {key}: documented twice")
    # the keys of a mount table, in the text of the two keys that take mount tables
    mounts = {("site", "shared"): set(schema.MOUNT_KEYS) - {"source"},
              ("environments.<name>", "binds"): set(schema.MOUNT_KEYS) - {"path"}}
    for (table, key), subkeys in mounts.items():
        rows, documented = found.get(table, ([], []))
        text = " ".join(" ".join(r[1:]) for r, k in zip(rows, documented) if k == key)
        for sub in sorted(subkeys):
            if f"`{sub}`" not in text:
                problems.append(f"[{table}] {key}: the mount key `{sub}` (schema.MOUNT_KEYS) is not described")
    return problems


def policy_page() -> str:
    sections = admin_sections()
    tables = key_tables(sections["3"])
    problems = check_schema(tables)
    if problems:
        raise DocsError("the policy keys and their documentation differ:\n  " + "\n  ".join(problems))
    intro = []
    for ln in sections["3"]:
        if ln.startswith("### "):
            break
        intro.append(ln)
    out = [th("envsched-policy", "5", "File Formats"),
           ".SH NAME", "envsched\\-policy \\- the envsched site policy, /etc/envsched/policy.toml",
           ".SH SYNOPSIS", ".I /etc/envsched/policy.toml",
           ".SH DESCRIPTION", md_blocks_to_roff(sections["2"]),
           ".SH KEYS", md_blocks_to_roff(intro)]
    for name, before, rows, after in tables:
        out += [f'.SS "[{roff_escape(name)}]"', md_blocks_to_roff(before)]
        for key, row in zip(documented_keys(rows), rows):
            default = "" if len(row) < 3 else (f" {roff_inline(row[1])}" if row[1].startswith("(")
                                               else f" (default: {roff_inline(row[1])})")
            out += [".TP", f"\\fB{roff_escape(key)}\\fR{default}", roff_lines(roff_inline(row[-1]))]
        out.append(md_blocks_to_roff(after))
    out += [".SH FILES", ".TP", ".I /etc/envsched/policy.toml", "The policy (\\fB\\-\\-policy\\fR names another).",
            ".TP", ".I /usr/share/doc/envsched/examples/policy.toml",
            "A commented example that uses every key.",
            ".SH SEE ALSO", "\\fBenvsched\\fR(8), \\fBchos\\fR(1); the administrator's guide, "
            "\\fI/usr/share/doc/envsched/admin.md\\fR, sections 4 to 6 (which environment a job gets, "
            "trees and images, what a view contains). The sections this page names are that guide's."]
    return "\n".join(x for x in out if x) + "\n"


PAGES = {
    "chos.1": lambda: command_page("chos", "1", "User Commands",
                                   "choose the Linux environment your jobs and shells run in", "chos", CHOS_EXTRA),
    "envsched.8": lambda: command_page("envsched", "8", "System Administration",
                                       "site policy, decisions and environment entry for batch jobs",
                                       "envsched", ENVSCHED_EXTRA),
    "envsched-policy.5": policy_page,
}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outdir", default=str(REPO / "build" / "man"))
    ap.add_argument("--check", action="store_true", help="only check the policy keys against docs/admin.md")
    args = ap.parse_args(argv)
    try:
        if args.check:
            problems = check_schema(key_tables(admin_sections()["3"]))
            if problems:
                raise DocsError("the policy keys and their documentation differ:\n  " + "\n  ".join(problems))
            return 0
        pages = {name: make() for name, make in PAGES.items()}
    except DocsError as e:
        print(f"gen-man: {e}", file=sys.stderr)
        return 1
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"gen-man: {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
