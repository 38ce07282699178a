"""What both commands share: --policy, error reporting, exit codes."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, List, Optional, Tuple

from ..errors import EnvschedError
from ..exitcodes import ExitCode, describe
from ..policy import Policy, load_policy
from ..resolve import Decision, Step

PREFIX = "envsched: "


def say(message: str) -> None:
    """One line to the user on stderr, always prefixed."""
    sys.stderr.write(PREFIX + message.replace("\n", " ") + "\n")
    sys.stderr.flush()


def add_policy_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", metavar="FILE",
                   help="site policy (default /etc/envsched/policy.toml)")


def command_named(argv: List[str], options_with_value: Tuple[str, ...] = ("--policy",)) -> Optional[str]:
    """The subcommand on a command line (`envsched --policy F prepare ...` -> "prepare"), or None
    when there is none or help is asked for before it: then every subcommand's parser is built."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in options_with_value:
            i += 2
            continue
        if arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg
        i += 1
    return None


class OneCommand:
    """`sub` (argparse's subparsers) for a command line that names one subcommand: only that one's
    parser is built (a shim's `prepare` or `release` pays for none of the other 25); the others'
    definitions run against a stand-in that ignores them. An unknown name builds them all, so that
    argparse's own message lists the choices."""

    def __init__(self, sub: "argparse._SubParsersAction", wanted: Optional[str]) -> None:
        self._sub, self._wanted = sub, wanted

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self._wanted is None or name == self._wanted:
            return self._sub.add_parser(name, **kwargs)
        return _Ignored()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sub, name)


class _Ignored:
    """Accepts a parser's definition calls and keeps nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: self


def policy_on_subcommands(sub: "argparse._SubParsersAction") -> None:
    """`--policy` after the subcommand too (`envsched check --policy F`); never overrides one
    given before it, and a subcommand may define its own first (with its own help)."""
    for sp in sub.choices.values():
        if not any(a.dest == "policy" for a in sp._actions):
            sp.add_argument("--policy", metavar="FILE", default=argparse.SUPPRESS,
                            help="site policy (default /etc/envsched/policy.toml)")


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="exit codes:\n" + describe())
    add_policy_arg(p)
    return p


def policy_from(args: argparse.Namespace) -> Policy:
    return load_policy(getattr(args, "policy", None))


def run_main(handler: Callable[[argparse.Namespace], int], p: argparse.ArgumentParser,
             argv: Optional[List[str]] = None) -> int:
    args = p.parse_args(argv)
    try:
        return int(handler(args))
    except EnvschedError as e:
        say(e.message)
        return int(e.code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as e:  # noqa: BLE001 - a bug must still exit with a defined code
        say(f"internal error: {type(e).__name__}: {e}")
        if os.environ.get("ENVSCHED_DEBUG"):
            raise
        return int(ExitCode.INTERNAL)


def format_steps(steps: "tuple[Step, ...]") -> List[str]:
    width = max((len(s.source) for s in steps), default=10)
    out = []
    for s in steps:
        value = "-" if s.value is None else (repr(s.value) if s.value else "''")
        out.append(f"  {s.source:<{width}}  {value:<20} {s.note}")
    return out


def describe_decision(d: Decision) -> str:
    where = "host OS" if d.environment is None else d.environment.path
    return f"{d.name} ({where}), chosen by {d.source}"


def split_command(argv: List[str]) -> List[str]:
    """argparse.REMAINDER keeps a leading '--'; drop it."""
    return argv[1:] if argv and argv[0] == "--" else argv
