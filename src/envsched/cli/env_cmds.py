"""`envsched env stamp | versions | verify`: pinned versions of tree environments (the admin).

`stamp` records a tree's manifest digest beside the policy (envsched.versions), `versions`
lists what is recorded (several versions side by side, which one the policy points at, which
are gone), `verify` reads the trees again and says which no longer match their stamp.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import List

from .. import audit
from ..errors import UsageError
from ..exitcodes import ExitCode
from ..names import show
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..versions import StampBook, TreeStamp


def _book(policy) -> "StampBook":
    """Imported only when an env command runs: every resolver run builds this parser."""
    from ..versions import StampBook, stamps_dir
    return StampBook(stamps_dir(policy.source))
from .common import policy_from
from .jobargs import require_root


def _environment(policy, name: str):
    env = policy.get(name)
    if env is None:
        raise UsageError(f"no environment {show(name)} in {policy.source} "
                         f"(defined: {', '.join(policy.names()) or 'none'})")
    return env


def cmd_stamp(args: argparse.Namespace) -> int:
    require_root("envsched env stamp")
    policy = policy_from(args)
    audit.configure(policy.site.log_file)
    env = _environment(policy, args.name)
    started = time.monotonic()
    st = _book(policy).stamp(env, args.version or "")
    audit.log("stamped", env=env.name, digest=st.digest, version=st.version or None, path=st.path,
              files=st.files, bytes=st.bytes, ms=round((time.monotonic() - started) * 1000))
    label = f" {st.version}" if st.version else ""
    print(f"{env.name} {st.digest}{label} ({st.files} files, {st.bytes} bytes)")
    return ExitCode.OK


def _rows(book: "StampBook", env) -> List[dict]:
    """Every stamp of `env`, newest first, with its state: current (the tree the policy points at),
    superseded (a newer stamp of the same path), gone (still_there fails: removed or replaced), or ''
    (another version kept side by side, still runnable as NAME@DIGEST or NAME@LABEL)."""
    current = book.current(env)
    live = {id(s) for s in book.live(env.name)}
    rows = []
    for st in book.history(env.name):
        gone = book.still_there(st)
        if id(st) not in live:
            state = "superseded"                 # a newer stamp of the same path replaced it
        elif gone:
            state = "gone"
        elif current is not None and st == current:
            state = "current"
        else:
            state = ""
        rows.append({"stamp": st, "state": state, "why": gone if state == "gone" else None})
    return rows


def cmd_versions(args: argparse.Namespace) -> int:
    policy = policy_from(args)
    book = _book(policy)
    names = [_environment(policy, args.name).name] if args.name else policy.names()
    out = []
    for name in names:
        env = policy.environments[name]
        if env.kind != "tree":
            continue
        out += [(name, r) for r in _rows(book, env)]
    if args.json:
        print(json.dumps([dict(r["stamp"].to_dict(), state=r["state"], why=r["why"]) for _, r in out], indent=1))
        return ExitCode.OK
    if not out:
        print("no stamped versions" + (f" of {args.name}" if args.name else "")
              + " (stamp a tree with `envsched env stamp NAME`)")
        return ExitCode.OK
    table = [("ENVIRONMENT", "DIGEST", "VERSION", "STAMPED", "FILES", "BYTES", "STATE", "PATH")]
    for name, r in out:
        st: "TreeStamp" = r["stamp"]
        table.append((name, st.short, st.version or "-", time.strftime("%Y-%m-%d %H:%M", time.localtime(st.stamped)),
                      str(st.files), str(st.bytes), r["state"] or "-", show(st.path, 200)[1:-1]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return ExitCode.OK


def cmd_verify(args: argparse.Namespace) -> int:
    policy = policy_from(args)
    book = _book(policy)
    names = [_environment(policy, args.name).name] if args.name else policy.names()
    failed = False
    for name in names:
        env = policy.environments[name]
        if env.kind != "tree":
            if args.name:
                print(f"{name}: an image carries its own digest; nothing to verify")
            continue
        problems = book.verify(env)
        for line in problems:
            print(line)
        if problems:
            failed = True
        else:
            st = book.current(env)
            print(f"{name}: ok {st.digest if st else ''} ({st.files if st else 0} files)")
    return ExitCode.CHECK_FAILED if failed else ExitCode.OK


def add_parsers(sub: "argparse._SubParsersAction") -> None:
    """`env` (stamp, versions, verify) on `envsched`'s subcommands."""
    s = sub.add_parser("env", help="pinned versions of tree environments (stamp, versions, verify)")
    esub = s.add_subparsers(dest="env_cmd", required=True, metavar="COMMAND")
    st = esub.add_parser("stamp", help="root: record the manifest digest of NAME's tree beside the policy "
                         "(after building or changing the tree)")
    st.add_argument("name", metavar="NAME")
    st.add_argument("--version", metavar="LABEL", help="a label for this version (e.g. 2026.12), so jobs can "
                    "ask for NAME@LABEL (default: the environment's `version` key, else none)")
    st.set_defaults(func=cmd_stamp)
    v = esub.add_parser("versions", help="the stamped versions of every tree environment (or NAME): digest, "
                        "label, when stamped, size, and which is current or gone")
    v.add_argument("name", metavar="NAME", nargs="?")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_versions)
    c = esub.add_parser("verify", help="read the trees again: exit 1 with a line for each that no longer "
                        "matches its stamp (or has none)")
    c.add_argument("name", metavar="NAME", nargs="?")
    c.set_defaults(func=cmd_verify)
    for p in (st, v, c):
        p.add_argument("--policy", metavar="FILE", default=argparse.SUPPRESS,
                       help="site policy (default /etc/envsched/policy.toml)")
