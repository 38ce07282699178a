"""What both commands share: --policy, error reporting, exit codes; the shims' commands parsed
without argparse (quick_args)."""
from __future__ import annotations

import os
import sys

from ..errors import DISK_FULL, EnvschedError, NotPermitted
from ..exitcodes import ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any, Callable, Dict, List, Optional, Tuple

    from ..policy import Policy
    from ..resolve import Decision, Step

PREFIX = "envsched: "
REMAINDER = "..."                   # argparse.REMAINDER and argparse.SUPPRESS, without argparse
SUPPRESS = "==SUPPRESS=="


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NotPermitted(f"{what} needs root")


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
            # argparse tells its SUPPRESS by identity: its own object, for its own parsers
            default = SUPPRESS if isinstance(sp, Recorder) else sys.modules["argparse"].SUPPRESS
            sp.add_argument("--policy", metavar="FILE", default=default,
                            help="site policy (default /etc/envsched/policy.toml)")


def parser(prog: str, description: str, record: bool = False) -> argparse.ArgumentParser:
    """The command's argparse parser; with `record`, a Recorder that only notes the options
    (quick_args parses with them)."""
    if record:
        p: Any = Recorder()
    else:
        import argparse
        from ..exitcodes import describe
        p = argparse.ArgumentParser(prog=prog, description=description,
                                    formatter_class=argparse.RawDescriptionHelpFormatter,
                                    epilog="exit codes:\n" + describe())
    add_policy_arg(p)
    return p


def policy_from(args: argparse.Namespace) -> Policy:
    from ..policy import load_policy
    return load_policy(getattr(args, "policy", None))


def run_main(handler: Callable[[argparse.Namespace], int], p: argparse.ArgumentParser,
             argv: Optional[List[str]] = None) -> int:
    return run_parsed(handler, p.parse_args(argv))


def run_parsed(handler: Callable[[argparse.Namespace], int], args: Any) -> int:
    """The command's exit code: an EnvschedError's, or INTERNAL for a bug (said in one line)."""
    try:
        return int(handler(args))
    except EnvschedError as e:
        say(e.message)
        return int(e.code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return int(ExitCode.OK)
    except OSError as e:
        if e.errno not in DISK_FULL:                    # the host's state, not a bug
            return _internal(e)
        say(f"cannot write {e.filename or 'to the node'}: {e.strerror} (the node's disk is full)")
        return int(ExitCode.SETUP_FAILED)
    except Exception as e:  # noqa: BLE001 - a bug must still exit with a defined code
        return _internal(e)


def _internal(e: Exception) -> int:
    say(f"internal error: {type(e).__name__}: {e}")
    if os.environ.get("ENVSCHED_DEBUG"):
        raise e
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


# -- the shims' commands without argparse (#13) ----------------------------------------------
# A shim's `validate`, `prepare` or `release` is a plain command line: long options, each with its
# value or none. Importing argparse and building the parser cost such a run ≈ 5 ms, so the command's
# parser is built against a Recorder (the same definitions, nothing kept but the options) and
# quick_args parses the command line with it. Anything else on the line (help, an abbreviation, a
# value that starts with "-", an error of any kind) gets None, and argparse parses it as always:
# its answers and messages stay its own.

class Args:
    """argparse.Namespace's part the commands use: the options as attributes."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __eq__(self, other: object) -> bool:
        return vars(self) == vars(other) if hasattr(other, "__dict__") else NotImplemented

    def __repr__(self) -> str:
        return "Args(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"


class _Option:
    __slots__ = ("dest", "action", "type", "choices", "required", "default")

    def __init__(self, dest: str, action: str, type: Any, choices: Any, required: bool, default: Any) -> None:
        self.dest, self.action, self.type, self.choices = dest, action, type, choices
        self.required, self.default = required, default


class Recorder:
    """Takes a parser's definitions as argparse would (add_argument, set_defaults, subparsers)
    and keeps the options quick_args can parse; anything else makes it `unsupported`."""

    def __init__(self) -> None:
        self.options: Dict[str, _Option] = {}
        self._actions: List[_Option] = []
        self.defaults: Dict[str, Any] = {}
        self.unsupported = False
        self.choices: Dict[str, Recorder] = {}     # as a subparsers action: the subcommands
        self.dest: Optional[str] = None

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        action = kwargs.get("action", "store")
        if (action not in ("store", "store_true", "append") or "nargs" in kwargs or "const" in kwargs
                or not flags or not all(f.startswith("--") and len(f) > 2 for f in flags)):
            self.unsupported = True
            return
        default = kwargs.get("default", False if action == "store_true" else None)
        option = _Option(kwargs.get("dest") or flags[0][2:].replace("-", "_"), action, kwargs.get("type"),
                         kwargs.get("choices"), bool(kwargs.get("required")), default)
        self._actions.append(option)
        for flag in flags:
            self.options[flag] = option

    def set_defaults(self, **kwargs: Any) -> None:
        self.defaults.update(kwargs)

    def add_subparsers(self, dest: Optional[str] = None, **kwargs: Any) -> Recorder:
        sub = Recorder()
        sub.dest = dest
        self.choices[""] = sub                     # (the subparsers action itself)
        return sub

    def add_parser(self, name: str, **kwargs: Any) -> Recorder:
        p = Recorder()
        self.choices[name] = p
        return p

    def __getattr__(self, name: str) -> Any:       # add_mutually_exclusive_group, ...: not for us
        if name.startswith("__"):
            raise AttributeError(name)
        self.unsupported = True
        return _Ignored()


def quick_args(top: Recorder, argv: List[str]) -> Optional[Args]:
    """`argv` parsed as argparse parses it with the parser `top` recorded (options before the one
    subcommand, options after it), or None: argparse must parse it (or say why it cannot)."""
    sub = top.choices.get("")
    if top.unsupported or sub is None or len(sub.choices) != 1:
        return None
    (name, command), = sub.choices.items()
    if command.unsupported or command.choices:
        return None
    values: Dict[str, Any] = {o.dest: o.default for o in top._actions}
    i = _options(top, argv, 0, values, stop_at=name)
    if i is None or i >= len(argv) or argv[i] != name:
        return None
    values[sub.dest or "cmd"] = name
    mine: Dict[str, Any] = {o.dest: o.default for o in command._actions if o.default != SUPPRESS}
    mine.update(command.defaults)
    given: Dict[str, Any] = {}
    if _options(command, argv, i + 1, given) != len(argv):
        return None
    for o in command._actions:
        if o.dest in given:
            continue
        if o.required:
            return None
        if isinstance(o.default, str) and o.default != SUPPRESS and o.type is not None:
            try:                                    # argparse converts a default given as text
                mine[o.dest] = o.type(o.default)
            except Exception:                       # noqa: BLE001
                return None
    mine.update(given)
    values.update(mine)
    return Args(**values)


def _options(p: Recorder, argv: List[str], i: int, values: Dict[str, Any],
             stop_at: Optional[str] = None) -> Optional[int]:
    """Parse the options of `p` from argv[i]: the index after them (at `stop_at`, or the end), or
    None for anything quick_args leaves to argparse."""
    while i < len(argv):
        arg = argv[i]
        if stop_at is not None and arg == stop_at:
            return i
        flag, eq, value = arg.partition("=")
        option = p.options.get(flag)
        if option is None:                          # (`--flag=` is the value "", as argparse has it:
            return None                             # es_prepare.c's `--chos-var=` when CHOS is unset)
        if option.action == "store_true":
            if eq:
                return None
            values[option.dest] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-") or argv[i + 1] == "":
                return None
            value = argv[i + 1]
            i += 1
        i += 1
        if option.type is not None:
            try:
                value = option.type(value)
            except Exception:                       # noqa: BLE001 - argparse words it
                return None
        if option.choices is not None and value not in option.choices:
            return None
        if option.action == "append":
            values[option.dest] = list(values.get(option.dest, option.default) or []) + [value]
        else:
            values[option.dest] = value
    return i if stop_at is None else None
