"""Metrics for an admin's dashboard: the admin log, counted, in Prometheus text format.

`envsched metrics` (run from cron or a systemd timer, no daemon) reads what is new in the
policy's `site.log_file` since its last run, adds it to running counters kept in a small state
file, counts the pins under `site.run_dir`, and prints (or writes, for node_exporter's textfile
collector) the Prometheus text exposition format 0.0.4.

The state file, `<run_dir>/.metrics-state.json` (root's, 0600; a pin key never starts with a
dot), holds the log's device, inode and read offset, a fingerprint of the bytes just before
that offset, and the counters. Each run reads only what was appended since. Rotation is seen by
a new inode: the rest of the old file is read first if it is still beside the log under
another name (`envsched.log.1`, `envsched.log-20260101`: same inode), then the new file from
its start. A truncation in place (logrotate's copytruncate) is seen by a size below the offset
or by a fingerprint that no longer matches: the file is then read from its start. The counters
only grow, across runs and rotations; a lost or damaged state file starts them again from zero
(Prometheus' rate() treats that as a counter reset) and counts the log as it is now.

The log holds values users chose (a refused request's name, reasons): they are parsed with the
quoting of audit._quote, and only ever select a label from a fixed set (refusal classes, the
policy's environment names, the schedulers' key prefixes) or `other`, so no line can add
unbounded series or break the output. A line that is not an admin log line is counted in
envsched_log_unparsed_lines_total and otherwise ignored.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .errors import SetupError
from .exitcodes import ExitCode
from .names import LOCAL, is_valid_name

STATE_NAME = ".metrics-state.json"
STATE_VERSION = 1
MAX_STATE_BYTES = 1 << 20
MAX_LINE = 64 * 1024             # longer lines are not admin log lines (audit lines are short)
CHUNK = 1 << 20
FINGERPRINT = 64                 # bytes before the offset remembered to notice a truncate-and-regrow
LOCK_TIMEOUT = 30.0             # seconds to wait for a run still going
MAX_SERIES = 512                 # per family, whatever the state file says

GC_REASON = "owner gone (gc)"
ON_ERROR_SOURCE = "site default (on_error)"

# Upper bounds (seconds) of the view setup histogram: a view is built in tens of milliseconds,
# an image mount or a loaded node takes longer.
SETUP_BUCKETS: Tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REFUSAL_CLASSES = ("unknown", "invalid_name", "user_file", "disabled", "disallowed", "account",
                   "partition", "broken_tree", "other")
FAILURE_STEPS = ("exec", "prepare", "prolog", "epilog", "starter", "release")
FAILURE_CODES = {int(c): c.name.lower() for c in ExitCode}


def _scheduler_keys() -> Tuple[str, ...]:
    from .cli.jobargs import SCHEDULER_KEYS      # the shims' key prefixes, the only `scheduler=` values
    return tuple(SCHEDULER_KEYS)


# -- the admin log ------------------------------------------------------------------------------

_PREFIX = re.compile(r"[^ ]+ envsched\[[0-9]+\]: event=([a-z_]+)(?= |\Z)")
_KEY = re.compile(r"[a-z_]+")
_DIGITS = re.compile(r"[0-9]{1,9}")                       # ASCII only: str.isdigit() takes "\u00b2"
_LABEL_VALUE = re.compile(r"[A-Za-z0-9._-]{1,64}")      # every label value this module makes


def parse_line(line: str) -> Optional[Tuple[str, Dict[str, str]]]:
    """(event, fields) of one admin log line (`STAMP envsched[PID]: event=E k=v k="v v" ...`),
    or None when it is not one. Values are unquoted as audit._quote quoted them."""
    m = _PREFIX.match(line)
    if m is None:
        return None
    fields: Dict[str, str] = {}
    i, n = m.end(), len(line)
    while i < n:
        if line[i] != " ":
            return None
        k = _KEY.match(line, i + 1)
        if k is None or k.end() >= n or line[k.end()] != "=":
            return None
        key, i = k.group(), k.end() + 1
        if i < n and line[i] == '"':
            out: List[str] = []
            i += 1
            while True:
                if i >= n:
                    return None                               # unterminated quote
                c = line[i]
                if c == "\\" and i + 1 < n:
                    out.append(line[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    out.append(c)
                    i += 1
            value = "".join(out)
            if i < n and line[i] != " ":
                return None
        else:
            j = line.find(" ", i)
            j = n if j < 0 else j
            value = line[i:j]
            if '"' in value:
                return None
            i = j
        if key in fields or key == "event":
            return None
        fields[key] = value
    return m.group(1), fields


def refusal_class(reason: str) -> str:
    """A fixed class for a refusal's free-text reason (resolve.check_name / denial_reason)."""
    if reason == "no such environment at this site":
        return "unknown"
    if reason.startswith("not a valid name"):
        return "invalid_name"
    if reason.startswith("~/"):
        return "user_file"                                    # ~/.chos unreadable, empty, too large...
    if reason == "disabled by the site":
        return "disabled"
    if reason.startswith("not allowed for account "):
        return "account"
    if reason.startswith("not allowed in partition "):
        return "partition"
    if (reason == "restricted to other users or groups" or reason == "the host OS is not offered at this site"
            or (reason.startswith(("user ", "group ")) and reason.endswith(" is denied"))):
        return "disallowed"
    return "other"


# -- counters -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    name: str                      # exposition name (counters end in _total)
    kind: str                      # counter | gauge | histogram
    help: str
    labels: Tuple[str, ...] = ()


JOBS_STARTED = Family(
    "envsched_jobs_started_total", "counter",
    "Jobs, steps and logins started in an environment: decisions logged as event=decided "
    "(a later failure to build or enter the view is in envsched_failures_total).",
    ("environment", "scheduler"))
REFUSALS = Family(
    "envsched_refusals_total", "counter",
    "Requests refused (event=refused) by reason class, and chosen trees found broken (event=broken).",
    ("reason",))
FALLBACKS = Family(
    "envsched_fallbacks_total", "counter",
    'Jobs started in the site default instead of a refused or broken choice (on_error = "default").')
FAILURES = Family(
    "envsched_failures_total", "counter",
    "Views that could not be built, pinned, entered or released after the decision (event=failed), "
    "by step and exit code.",
    ("step", "code"))
RELEASED = Family(
    "envsched_pins_released_total", "counter",
    "Pins released (event=released): by release at job end, or by gc once their owner was gone.",
    ("cause",))
SETUP = Family(
    "envsched_view_setup_seconds", "histogram",
    "Time to build and pin a job's view once its environment is decided (setup_ms of event=prepared).")
UNPARSED = Family(
    "envsched_log_unparsed_lines_total", "counter",
    "Lines of the admin log that are not admin log lines (ignored).")
ACTIVE = Family("envsched_active_views", "gauge", "Pinned views under site.run_dir now.")
LOG_READ = Family("envsched_log_readable", "gauge",
                  "1 if site.log_file was read on the last run, 0 if it is not set or could not be read.")
POLICY_VALID = Family("envsched_policy_valid", "gauge",
                      "1 if the site policy loaded, 0 if it or its run_dir is invalid or untrusted (then only this is written).")

COUNTERS = (JOBS_STARTED, REFUSALS, FALLBACKS, FAILURES, RELEASED, UNPARSED)
RELEASE_CAUSES = ("release", "gc")
FIXED_LABELS = {REFUSALS.name: REFUSAL_CLASSES, RELEASED.name: RELEASE_CAUSES}


@dataclass
class Histogram:
    buckets: List[int] = field(default_factory=lambda: [0] * len(SETUP_BUCKETS))   # not cumulative
    sum: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(SETUP_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                break
        self.sum += seconds
        self.count += 1


@dataclass
class LogPosition:
    dev: int
    ino: int
    offset: int
    tail: str = ""                 # hex of the FINGERPRINT bytes before offset


@dataclass
class State:
    position: Optional[LogPosition] = None
    counters: Dict[str, Dict[Tuple[str, ...], int]] = field(default_factory=lambda: {f.name: {} for f in COUNTERS})
    setup: Histogram = field(default_factory=Histogram)

    def add(self, family: Family, labels: Tuple[str, ...] = (), n: int = 1) -> None:
        series = self.counters[family.name]
        if labels not in series and len(series) >= MAX_SERIES:
            labels = ("other",) * len(family.labels)
        series[labels] = series.get(labels, 0) + n

    def to_json(self) -> str:
        pos = self.position
        return json.dumps({
            "version": STATE_VERSION,
            "log": None if pos is None else {"dev": pos.dev, "ino": pos.ino, "offset": pos.offset, "tail": pos.tail},
            "counters": {name: [[list(k), v] for k, v in sorted(series.items())]
                         for name, series in self.counters.items()},
            "setup": {"buckets": self.setup.buckets, "sum": self.setup.sum, "count": self.setup.count},
        }, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "State":
        """What to_json wrote, or ValueError."""
        def nat(v: object) -> int:
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError("not a non-negative integer")
            return v
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("not a state of this version")
        state = cls()
        log = data.get("log")
        if log is not None:
            if not isinstance(log, dict) or not isinstance(log.get("tail"), str) \
                    or not re.fullmatch(r"[0-9a-f]{0,%d}" % (2 * FINGERPRINT), log["tail"]):
                raise ValueError("bad log position")
            state.position = LogPosition(nat(log.get("dev")), nat(log.get("ino")), nat(log.get("offset")), log["tail"])
        counters = data.get("counters")
        if not isinstance(counters, dict):
            raise ValueError("no counters")
        for fam in COUNTERS:
            entries = counters.get(fam.name, [])
            if not isinstance(entries, list) or len(entries) > MAX_SERIES + 1:
                raise ValueError(f"bad {fam.name}")
            for entry in entries:
                if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], list)
                        and len(entry[0]) == len(fam.labels)
                        and all(isinstance(v, str) and _LABEL_VALUE.fullmatch(v) for v in entry[0])):
                    raise ValueError(f"bad {fam.name} entry")
                state.counters[fam.name][tuple(entry[0])] = nat(entry[1])
        setup = data.get("setup")
        if not isinstance(setup, dict) or not isinstance(setup.get("buckets"), list) \
                or len(setup["buckets"]) != len(SETUP_BUCKETS) \
                or not isinstance(setup.get("sum"), (int, float)) or isinstance(setup.get("sum"), bool) \
                or not math.isfinite(setup["sum"]) or setup["sum"] < 0:
            raise ValueError("bad setup histogram")
        state.setup = Histogram([nat(b) for b in setup["buckets"]], float(setup["sum"]), nat(setup.get("count")))
        if sum(state.setup.buckets) > state.setup.count:
            raise ValueError("bad setup histogram counts")
        return state


class Counter:
    """Turns admin log lines into State increments; labels only from fixed sets."""

    def __init__(self, state: State, environments: Iterable[str]) -> None:
        self.state = state
        self.environments = set(environments) | {LOCAL}
        self.schedulers = set(_scheduler_keys())

    def _env(self, value: Optional[str]) -> str:
        return value if value in self.environments and is_valid_name(value) else "other"

    def _scheduler(self, value: Optional[str]) -> str:
        if value is None:
            return "none"
        return value if value in self.schedulers else "other"

    def line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        parsed = parse_line(raw.decode("utf-8", "replace")) if len(raw) <= MAX_LINE else None
        if parsed is None:
            self.state.add(UNPARSED)
            return
        event, f = parsed
        s = self.state
        if event == "decided":
            s.add(JOBS_STARTED, (self._env(f.get("env")), self._scheduler(f.get("scheduler"))))
            if f.get("source") == ON_ERROR_SOURCE:
                s.add(FALLBACKS)
        elif event == "refused":
            s.add(REFUSALS, (refusal_class(f.get("reason", "")),))
        elif event == "broken":
            s.add(REFUSALS, ("broken_tree",))
        elif event == "failed":
            step = f.get("step")
            code = f.get("code")
            s.add(FAILURES, (step if step in FAILURE_STEPS else "other" if step else "none",
                             FAILURE_CODES.get(int(code), "other") if code and _DIGITS.fullmatch(code)
                             else "other" if code else "none"))
        elif event == "released":
            s.add(RELEASED, ("gc" if f.get("reason") == GC_REASON else "release",))
        elif event == "prepared":
            ms = f.get("setup_ms")
            if ms is not None and _DIGITS.fullmatch(ms):
                s.setup.observe(int(ms) / 1000.0)


# -- reading what is new ---------------------------------------------------------------------------

def _lines(fd: int, offset: int, final: bool) -> Iterator[Tuple[bytes, int]]:
    """(line, offset after it) for each complete line from `offset`; with `final` (a rotated
    file, never written again) an unterminated last line counts too. A line longer than MAX_LINE
    is yielded cut short (and counted as unparsed), never held whole in memory."""
    pending = b""
    pos = offset
    skipping = False
    while True:
        chunk = os.pread(fd, CHUNK, pos)
        if not chunk:
            break
        pos += len(chunk)
        data = pending + chunk
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            line = data[start:nl]
            if skipping:
                skipping = False
            else:
                yield line, pos - len(data) + nl + 1
            start = nl + 1
        pending = data[start:]
        if len(pending) > MAX_LINE:
            if not skipping:
                yield pending[:MAX_LINE + 1], pos              # too long: unparsed, rest skipped
            skipping = True
            pending = b""
    if final and pending and not skipping:
        yield pending, pos


def _fingerprint(fd: int, offset: int) -> str:
    start = max(0, offset - FINGERPRINT)
    return os.pread(fd, offset - start, start).hex() if offset else ""


def _open_log(path: str) -> Tuple[int, os.stat_result]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a regular file")
    return fd, st


def _rotated(path: str, pos: LogPosition) -> Optional[str]:
    """The log's previous file, still beside it under another name (same device and inode)."""
    directory, base = os.path.split(path)
    try:
        names = sorted(os.listdir(directory or "."))
    except OSError:
        return None
    for name in names:
        if name == base or not name.startswith(base):
            continue
        candidate = os.path.join(directory, name)
        try:
            st = os.lstat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (pos.dev, pos.ino):
            return candidate
    return None


def read_log(path: str, state: State, counter: Counter) -> None:
    """Count what was appended to `path` since state.position and move it on. OSError if the
    log cannot be read (the caller then goes back to the state it saved before)."""
    pos = state.position
    fd, st = _open_log(path)
    try:
        offset = 0
        if pos is not None and (pos.dev, pos.ino) == (st.st_dev, st.st_ino):
            if pos.offset <= st.st_size and _fingerprint(fd, pos.offset) == pos.tail:
                offset = pos.offset                        # else truncated in place: from the start
        elif pos is not None:
            old = _rotated(path, pos)                      # rotated: finish the old file first
            if old is not None:
                try:
                    ofd, ost = _open_log(old)
                except OSError:
                    ofd = -1
                if ofd >= 0:
                    try:
                        if (ost.st_dev, ost.st_ino) == (pos.dev, pos.ino) and pos.offset <= ost.st_size \
                                and _fingerprint(ofd, pos.offset) == pos.tail:
                            for line, _ in _lines(ofd, pos.offset, final=True):
                                counter.line(line)
                    finally:
                        os.close(ofd)
        end = offset
        for line, after in _lines(fd, offset, final=False):
            counter.line(line)
            end = after
        state.position = LogPosition(st.st_dev, st.st_ino, end, _fingerprint(fd, end))
    finally:
        os.close(fd)


# -- the state file -----------------------------------------------------------------------------

def state_path(run_dir: str) -> str:
    return os.path.join(run_dir, STATE_NAME)


def load_state(path: str) -> Tuple[State, Optional[str]]:
    """The saved state, or a fresh one and why the saved one was not used (None if there was none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return State(), None
    except OSError as e:
        return State(), f"{path}: {e.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return State(), f"{path}: not a regular file of ours with mode 0600"
        if st.st_size > MAX_STATE_BYTES:
            return State(), f"{path}: too large"
        data = os.pread(fd, MAX_STATE_BYTES + 1, 0)
    finally:
        os.close(fd)
    try:
        return State.from_json(data.decode("utf-8")), None
    except (ValueError, UnicodeDecodeError) as e:
        return State(), f"{path}: damaged ({e})"


def write_atomic(path: str, text: str, mode: int) -> None:
    """`text` to `path` by a temporary file in the same directory and a rename, with `mode`."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    except OSError as e:
        raise SetupError(f"cannot write {path}: {e.strerror}") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SetupError(f"cannot write {path}: {e.strerror}") from None


def save_state(path: str, state: State) -> None:
    write_atomic(path, state.to_json(), 0o600)


# -- pins ----------------------------------------------------------------------------------------

def active_views(run_dir: str) -> int:
    """Pins holding a view (`<key>/mnt`); record-only pins (the host OS) hold none."""
    try:
        keys = [k for k in os.listdir(run_dir) if is_valid_name(k)]
    except OSError:
        return 0
    n = 0
    for key in keys:
        try:
            os.lstat(os.path.join(run_dir, key, "mnt"))
            n += 1
        except OSError:
            pass
    return n


# -- the exposition format -----------------------------------------------------------------------

def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{escape_label(v)}"' for n, v in zip(names, values)) + "}"


def _header(f: Family) -> List[str]:
    return [f"# HELP {f.name} {escape_help(f.help)}", f"# TYPE {f.name} {f.kind}"]


def exposition(state: Optional[State], active: Optional[int], log_readable: bool, policy_valid: bool = True) -> str:
    """The text exposition format 0.0.4: HELP and TYPE before each family's samples, one family's
    samples together, counters ending in _total, the histogram's cumulative buckets ending in
    le="+Inf" equal to _count, a newline after the last line."""
    out: List[str] = _header(POLICY_VALID) + [f"{POLICY_VALID.name} {int(policy_valid)}"]
    if state is not None:
        out += _header(LOG_READ) + [f"{LOG_READ.name} {int(log_readable)}"]
        if active is not None:
            out += _header(ACTIVE) + [f"{ACTIVE.name} {active}"]
        for fam in COUNTERS:
            series = dict(state.counters[fam.name])
            for value in FIXED_LABELS.get(fam.name, ()):      # a fixed set: every value, zero or not
                series.setdefault((value,), 0)
            if not fam.labels:
                series.setdefault((), 0)
            out += _header(fam)
            out += [f"{fam.name}{_labels(fam.labels, k)} {v}" for k, v in sorted(series.items())]
        h = state.setup
        out += _header(SETUP)
        cumulative = 0
        for bound, n in zip(SETUP_BUCKETS, h.buckets):
            cumulative += n
            out.append(f'{SETUP.name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        out.append(f'{SETUP.name}_bucket{{le="+Inf"}} {h.count}')
        out.append(f"{SETUP.name}_sum {_number(round(h.sum, 6))}")
        out.append(f"{SETUP.name}_count {h.count}")
    return "\n".join(out) + "\n"


# -- one run ---------------------------------------------------------------------------------------

@dataclass
class Run:
    text: str
    warnings: List[str]


def collect(log_file: str, run_dir: str, environments: Iterable[str], state_file: Optional[str] = None,
            output: Optional[str] = None) -> Run:
    """Read what is new in the log into the state under run_dir, save it, write the metrics to
    `output` if given (atomically, 0644), and return them."""
    warnings: List[str] = []
    if state_file is None:
        from .pin import _secure_dir                    # as `prepare` makes it: root's, 0700
        _secure_dir(run_dir, 0o700)
        state_file = state_path(run_dir)
    with _locked(os.path.dirname(os.path.abspath(state_file))):
        run = _collect(log_file, run_dir, environments, state_file, warnings)
        if output:
            write_atomic(output, run.text, 0o644)      # under the lock too: never an older file last
        return run


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """One run at a time (cron may start the next before a slow one ends): else the later to
    finish could save counters below the other's, and a counter would go down."""
    timeout = LOCK_TIMEOUT
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SetupError(f"another `envsched metrics` holds {directory} (for over {timeout:.0f} s)") \
                        from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _collect(log_file: str, run_dir: str, environments: Iterable[str], state_file: str,
             warnings: List[str]) -> Run:
    state, why = load_state(state_file)
    if why:
        warnings.append(f"metrics state not used, counting from zero: {why}")
    readable = False
    if log_file:
        saved = state.to_json()
        try:
            read_log(log_file, state, Counter(state, environments))
            readable = True
        except OSError as e:
            state = State.from_json(saved)             # nothing counted twice on the next run
            warnings.append(f"cannot read the admin log {log_file}: {e.strerror or e}")
    else:
        warnings.append("site.log_file is not set: only the pins are counted")
    save_state(state_file, state)
    return Run(exposition(state, active_views(run_dir), readable), warnings)
