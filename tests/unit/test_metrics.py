"""`envsched metrics` (envsched.metrics): the admin log counted incrementally into Prometheus text.

Synthetic admin logs: incremental reads, rotation, truncation, partial and garbage lines, hostile
values; the output is checked with prometheus_client's parser, by hand against the format's
grammar and, where installed, with promtool."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from hypothesis import given, settings
from hypothesis import strategies as st

from envsched import audit, metrics
from envsched.errors import one_line
from envsched.policy.load import parse_policy_text
from envsched.resolve import Request, check_name
from envsched.userfile import UserFile

ENVS = ("deb12", "deb13")
STAMP = "2026-11-22T05:23:41+0000 envsched[27099]: "


def line(event: str, **fields: object) -> str:
    """An admin log line exactly as audit.log writes it to the log file."""
    return STAMP + "event=" + event + "".join(f" {k}={audit._quote(v)}" for k, v in fields.items()
                                              if v is not None) + "\n"


def decided(env: str = "deb12", scheduler: str = "slurm", source: str = "option") -> str:
    return line("decided", job="1", user="alice", env=env, source=source, path="/os/" + env, scheduler=scheduler)


class Node:
    """A log file and a state file in a temporary directory, and `envsched metrics` runs on them."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        self.log = tmp / "envsched.log"
        self.state = tmp / "state.json"
        self.run_dir = tmp / "run"
        self.run_dir.mkdir()

    def append(self, *lines: str) -> None:
        with open(self.log, "a") as f:
            f.write("".join(lines))

    def run(self, environments=ENVS) -> Tuple[Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float], metrics.Run]:
        r = metrics.collect(str(self.log), str(self.run_dir), environments, state_file=str(self.state))
        check_exposition(r.text)
        return samples(r.text), r


def samples(text: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    out = {}
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        name, labels, value = SAMPLE.fullmatch(raw).groups()
        pairs = tuple(LABEL.findall(labels or ""))
        out[(name, tuple((k, re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v))
                         for k, v in pairs))] = float(value)
    return out


def get(s, name: str, **labels: str) -> float:
    return s.get((name, tuple(labels.items())), 0.0)


# -- a hand check of the text exposition format 0.0.4 --------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'(?:[^"\\\n]|\\\\|\\"|\\n)*'
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(' + LABEL_VALUE + r')"')
SAMPLE = re.compile(r"(" + NAME + r")(\{(?:[a-zA-Z_][a-zA-Z0-9_]*=\"" + LABEL_VALUE + r"\"(?:,[a-zA-Z_][a-zA-Z0-9_]*=\""
                    + LABEL_VALUE + r"\")*)?\})? ([-+]?(?:[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?|Inf|NaN))")
HELP = re.compile(r"# HELP (" + NAME + r") ((?:[^\\\n]|\\\\|\\n)*)")
TYPE = re.compile(r"# TYPE (" + NAME + r") (counter|gauge|histogram|summary|untyped)")


def check_exposition(text: str) -> None:
    """Every line a HELP, TYPE or sample line; HELP and TYPE once per family, before its samples;
    a family's samples together; counters end in _total; histograms cumulative, +Inf = _count."""
    assert text.endswith("\n") and "\n\n" not in text
    families: Dict[str, str] = {}
    current = None
    seen_samples: List[str] = []
    hist: Dict[str, List[Tuple[float, float]]] = {}
    counts: Dict[str, float] = {}
    for raw in text[:-1].split("\n"):
        h, t, s = HELP.fullmatch(raw), TYPE.fullmatch(raw), SAMPLE.fullmatch(raw)
        assert h or t or s, f"not an exposition line: {raw!r}"
        if h:
            assert h.group(1) not in families, f"family twice: {raw}"
            current = h.group(1)
            continue
        if t:
            assert t.group(1) == current and t.group(1) not in families
            families[current] = t.group(2)
            if t.group(2) == "counter":
                assert current.endswith("_total")
            continue
        name = s.group(1)
        kind = families[current]
        if kind == "histogram":
            assert name in (current + "_bucket", current + "_sum", current + "_count")
            if name.endswith("_bucket"):
                le = dict(LABEL.findall(s.group(2)))["le"]
                hist.setdefault(current, []).append((float(le), float(s.group(3))))
            if name.endswith("_count"):
                counts[current] = float(s.group(3))
        else:
            assert name == current
        key = raw.rsplit(" ", 1)[0]
        assert key not in seen_samples, f"sample twice: {raw}"
        seen_samples.append(key)
        value = float(s.group(3))
        if kind in ("counter", "histogram"):
            assert value >= 0
    for fam, buckets in hist.items():
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == float("inf")
        values = [v for _, v in buckets]
        assert values == sorted(values) and values[-1] == counts[fam]


def test_output_parses_with_prometheus_client(tmp_path):
    parser = pytest.importorskip("prometheus_client.parser")
    node = Node(tmp_path)
    node.append(decided(), decided("deb13", "uge"), line("prepared", env="deb12", key="slurm-1", setup_ms=40),
                line("refused", env="'x'", reason="no such environment at this site"))
    _, r = node.run()
    fams = {f.name: f for f in parser.text_string_to_metric_families(r.text)}
    assert fams["envsched_jobs_started"].type == "counter"
    assert {(s.labels["environment"], s.labels["scheduler"], s.value) for s in fams["envsched_jobs_started"].samples} \
        == {("deb12", "slurm", 1.0), ("deb13", "uge", 1.0)}
    assert fams["envsched_view_setup_seconds"].type == "histogram"
    by = {(s.name, s.labels.get("le")): s.value for s in fams["envsched_view_setup_seconds"].samples}
    assert by[("envsched_view_setup_seconds_bucket", "0.025")] == 0
    assert by[("envsched_view_setup_seconds_bucket", "0.05")] == 1
    assert by[("envsched_view_setup_seconds_bucket", "+Inf")] == 1
    assert by[("envsched_view_setup_seconds_sum", None)] == pytest.approx(0.04)
    assert fams["envsched_active_views"].type == "gauge"


def test_output_passes_promtool(tmp_path):
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian package prometheus) not installed")
    node = Node(tmp_path)
    node.append(decided(), line("failed", env="deb12", step="prepare", code=71, reason="x"), "junk\n")
    _, r = node.run()
    p = subprocess.run(["promtool", "check", "metrics"], input=r.text, text=True, capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr
    _ = metrics.exposition(None, None, False, policy_valid=False)
    p = subprocess.run(["promtool", "check", "metrics"], input=_, text=True, capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_escaping():
    assert metrics.escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert metrics.escape_help("a\\b\nc") == "a\\\\b\\nc"
    assert metrics._labels(("x",), ('"} 1\n',)) == '{x="\\"} 1\\n"}'
    check_exposition('# HELP m_total h\n# TYPE m_total counter\nm_total' + metrics._labels(("x",), ('"} 1\n\\',)) + " 1\n")


def test_policy_invalid_output():
    text = metrics.exposition(None, None, False, policy_valid=False)
    check_exposition(text)
    assert samples(text) == {("envsched_policy_valid", ()): 0.0}


# -- parsing the admin log -----------------------------------------------------------------------

def test_parse_line_as_audit_quotes():
    ev, f = metrics.parse_line(line("refused", job="1", user="bob", env="'sl 5' scheduler=evil",
                                    reason='say "hi" \\ x=1', scheduler="slurm").rstrip("\n"))
    assert ev == "refused"
    assert f == {"job": "1", "user": "bob", "env": "'sl 5' scheduler=evil", "reason": 'say "hi" \\ x=1',
                 "scheduler": "slurm"}
    assert metrics.parse_line(STAMP + 'event=x a=""') == ("x", {"a": ""})
    assert metrics.parse_line(STAMP + "event=x") == ("x", {})


@pytest.mark.parametrize("bad", [
    "", "garbage", "event=decided env=deb12", STAMP + "event=decided env=\"deb12", STAMP + "event=decided env=\"a\"b",
    STAMP + "event=decided env=a\"b", STAMP + "event=decided  env=a", STAMP + "event=decided env", STAMP + "event=decided =a",
    STAMP + "event=decided env=a env=b", STAMP + "event=decided event=x", STAMP + "event=Decided",
    STAMP.replace("envsched", "other") + "event=decided", STAMP + "event=decided env=a ",
])
def test_parse_line_rejects(bad):
    assert metrics.parse_line(bad) is None


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["env", "reason", "user", "key", "source", "scheduler", "setup_ms", "code", "step"]),
                       st.text(max_size=40), max_size=6),
       st.sampled_from(["decided", "refused", "broken", "failed", "released", "prepared", "recorded", "fallback"]))
def test_any_audit_line_round_trips_and_counts_safely(fields, event):
    raw = line(event, **fields)
    assert metrics.parse_line(raw.rstrip("\n")) == (event, {k: one_line(v) for k, v in fields.items()})
    state = metrics.State()
    metrics.Counter(state, ENVS).line(raw.rstrip("\n").encode())
    check_exposition(metrics.exposition(state, 0, True))
    for series in state.counters.values():
        for labels in series:
            assert all(metrics._LABEL_VALUE.fullmatch(v) for v in labels)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_never_crash_nor_break_the_output(data):
    state = metrics.State()
    counter = metrics.Counter(state, ENVS)
    for raw in data.split(b"\n"):
        counter.line(raw)
    check_exposition(metrics.exposition(state, 0, True))


POLICY = """\
[site]
default = "deb12"
allow_local = false
[environments.deb12]
path = "/os/deb12"
[environments.off]
path = "/os/off"
enabled = false
[environments.secret]
path = "/os/secret"
allow_users = ["alice"]
deny_users = ["mallory"]
deny_groups = ["banned"]
[environments.gpu]
path = "/os/gpu"
allow_accounts = ["ml"]
[environments.old]
path = "/os/old"
allow_partitions = ["legacy"]
"""


@pytest.mark.parametrize("value,req,expected", [
    ("nope", {}, "unknown"),
    ("../x", {}, "invalid_name"),
    ("off", {}, "disabled"),
    ("secret", {}, "disallowed"),
    ("secret", {"user": "mallory"}, "disallowed"),
    ("secret", {"user": "alice", "groups": ("banned",)}, "disallowed"),
    ("local", {}, "disallowed"),
    ("gpu", {"account": "other"}, "account"),
    ("old", {"partition": "batch"}, "partition"),
])
def test_refusal_classes_of_the_resolvers_own_reasons(value, req, expected):
    policy = parse_policy_text(POLICY, "policy.toml")
    outcome = check_name(policy, Request(**{"user": "bob", **req}), "option", value)
    assert metrics.refusal_class(outcome.reason) == expected


def test_refusal_class_of_user_file_errors_and_unknown_text():
    policy = parse_policy_text(POLICY, "policy.toml")
    from envsched.resolve import resolve
    for uf in (UserFile("/home/bob/.chos", error="is a symbolic link (not followed)"),
               UserFile("/home/bob/.chos", value="")):
        outcome = resolve(policy, Request(user="bob", user_file=uf))
        assert metrics.refusal_class(outcome.reason) == "user_file", outcome.reason
    assert metrics.refusal_class("something new") == "other"
    assert metrics.refusal_class("user x y z is denied") == "disallowed"


def test_counting_every_event(tmp_path):
    node = Node(tmp_path)
    node.append(
        decided("deb12", "slurm"), decided("deb12", "slurm"), decided("deb13", "uge"),
        line("decided", env="deb13", source="CHOS variable", path="/os/deb13"),        # exec: no scheduler
        decided("local", "pam"), decided("gone", "slurm"), decided("deb12", "lsf"),
        decided("deb12", "slurm", source="site default (on_error)"),
        line("refused", env="'sl5'", source="option", reason="no such environment at this site", scheduler="slurm"),
        line("refused", env="'off'", reason="disabled by the site"),
        line("refused", env="'x'", reason="~/.chos is empty"),
        line("broken", env="deb13", reason="/os/deb13/usr: missing"),
        line("fallback", env="deb12", reason="..."),
        line("failed", env="deb12", key="slurm-1", step="prepare", code=71, reason="mount: x"),
        line("failed", step="prolog", job="3", reason="x"),
        line("failed", step="weird", code="9999", reason="x"),
        line("failed", step="exec", code="²", reason="x"),
        line("prepared", env="deb12", key="slurm-1", owner=1, scheduler="slurm", setup_ms=7),
        line("prepared", env="deb12", key="slurm-2", owner=1, scheduler="slurm", setup_ms=300),
        line("prepared", env="deb12", key="slurm-3", owner=1, scheduler="slurm", setup_ms=99999),
        line("prepared", env="deb12", key="pbs-3", owner=1),                            # no setup_ms: not timed
        line("prepared", env="deb12", key="x", setup_ms="-1"), line("prepared", env="deb12", key="x", setup_ms="1e3"),
        line("recorded", env="local", key="uge-1.1", owner=1),
        line("released", key="slurm-1"), line("released", key="slurm-2", reason="owner gone (gc)"),
        line("released", key="slurm-3", reason="owner gone (gc)"),
    )
    s, r = node.run()
    assert r.warnings == []
    started = {k[1]: v for k, v in s.items() if k[0] == "envsched_jobs_started_total"}
    assert started == {
        (("environment", "deb12"), ("scheduler", "slurm")): 3.0,
        (("environment", "deb13"), ("scheduler", "uge")): 1.0,
        (("environment", "deb13"), ("scheduler", "none")): 1.0,
        (("environment", "local"), ("scheduler", "pam")): 1.0,
        (("environment", "other"), ("scheduler", "slurm")): 1.0,        # not in the policy (any more)
        (("environment", "deb12"), ("scheduler", "other")): 1.0,
    }
    assert get(s, "envsched_fallbacks_total") == 1
    refusals = {k[1][0][1]: v for k, v in s.items() if k[0] == "envsched_refusals_total"}
    assert refusals == {c: 0.0 for c in metrics.REFUSAL_CLASSES} | {"unknown": 1.0, "disabled": 1.0,
                                                                    "user_file": 1.0, "broken_tree": 1.0}
    assert get(s, "envsched_failures_total", step="prepare", code="setup_failed") == 1
    assert get(s, "envsched_failures_total", step="prolog", code="none") == 1
    assert get(s, "envsched_failures_total", step="other", code="other") == 1
    assert get(s, "envsched_failures_total", step="exec", code="other") == 1
    assert get(s, "envsched_pins_released_total", cause="release") == 1
    assert get(s, "envsched_pins_released_total", cause="gc") == 2
    assert get(s, "envsched_view_setup_seconds_count") == 3
    assert get(s, "envsched_view_setup_seconds_sum") == pytest.approx(100.306)
    assert get(s, "envsched_view_setup_seconds_bucket", le="0.005") == 0
    assert get(s, "envsched_view_setup_seconds_bucket", le="0.01") == 1
    assert get(s, "envsched_view_setup_seconds_bucket", le="0.5") == 2
    assert get(s, "envsched_view_setup_seconds_bucket", le="30.0") == 2
    assert get(s, "envsched_view_setup_seconds_bucket", le="+Inf") == 3
    assert get(s, "envsched_log_unparsed_lines_total") == 0
    assert get(s, "envsched_log_readable") == 1 and get(s, "envsched_policy_valid") == 1


# -- incremental reads, rotation, truncation -------------------------------------------------------

def started(s) -> float:
    return sum(v for k, v in s.items() if k[0] == "envsched_jobs_started_total")


def test_each_run_reads_only_what_is_new(tmp_path):
    node = Node(tmp_path)
    node.append(decided(), decided())
    s, _ = node.run()
    assert started(s) == 2
    s, _ = node.run()
    assert started(s) == 2                                  # nothing new: nothing counted twice
    node.append(decided())
    s, _ = node.run()
    assert started(s) == 3
    state, why = metrics.load_state(str(node.state))
    assert why is None and state.position.offset == node.log.stat().st_size
    assert oct(node.state.stat().st_mode & 0o777) == "0o600"


def test_partial_last_line_waits_for_its_end(tmp_path):
    node = Node(tmp_path)
    whole = decided()
    node.append(decided(), whole[:30])
    s, _ = node.run()
    assert started(s) == 1 and get(s, "envsched_log_unparsed_lines_total") == 0
    node.append(whole[30:])
    s, _ = node.run()
    assert started(s) == 2 and get(s, "envsched_log_unparsed_lines_total") == 0


def test_rotation_finishes_the_old_file_then_reads_the_new(tmp_path):
    node = Node(tmp_path)
    node.append(decided(), decided())
    s, _ = node.run()
    assert started(s) == 2
    node.append(decided(), decided()[:20])                  # written after the last run, before rotation
    node.log.rename(node.dir / "envsched.log.1")            # logrotate: rename, create
    node.append(decided(), line("refused", reason="disabled by the site"))
    s, _ = node.run()
    assert started(s) == 4                                  # 2 + 1 from the old file + 1 new
    assert get(s, "envsched_log_unparsed_lines_total") == 1  # the old file's cut last line
    assert get(s, "envsched_refusals_total", reason="disabled") == 1
    s, _ = node.run()
    assert started(s) == 4
    node.append(decided())
    s, _ = node.run()
    assert started(s) == 5


def test_rotation_with_the_old_file_gone_keeps_the_counters(tmp_path):
    node = Node(tmp_path)
    node.append(decided(), decided(), decided())
    s, _ = node.run()
    node.log.rename(node.dir / "envsched.log.1")
    (node.dir / "envsched.log.1").unlink()                  # compressed away or removed
    node.append(decided())
    s, _ = node.run()
    assert started(s) == 4                                  # monotonic: 3 kept, 1 new


def test_rotation_while_the_log_is_missing(tmp_path):
    node = Node(tmp_path)
    node.append(decided())
    node.run()
    node.log.rename(node.dir / "envsched.log.1")
    s, r = node.run()                                       # not yet re-created
    assert get(s, "envsched_log_readable") == 0 and started(s) == 1
    assert any("cannot read the admin log" in w for w in r.warnings)
    node.append(decided())
    s, _ = node.run()
    assert started(s) == 2 and get(s, "envsched_log_readable") == 1


def test_truncation_in_place(tmp_path):
    node = Node(tmp_path)
    node.append(decided(), decided(), decided())
    node.run()
    os.truncate(node.log, 0)                                # copytruncate
    node.append(decided())
    s, _ = node.run()
    assert started(s) == 4


def test_truncated_and_grown_past_the_offset(tmp_path):
    node = Node(tmp_path)
    node.append(decided("deb12"), decided("deb12"))
    node.run()
    os.truncate(node.log, 0)
    node.append(*[decided("deb13")] * 5)                     # longer than before: the offset lands mid-line
    s, _ = node.run()
    assert get(s, "envsched_jobs_started_total", environment="deb13", scheduler="slurm") == 5
    assert get(s, "envsched_log_unparsed_lines_total") == 0


def test_garbage_lines(tmp_path):
    node = Node(tmp_path)
    with open(node.log, "wb") as f:
        f.write(b"\x00\xff\xfe garbage\n\n   \n" + decided().encode() + b"event=decided env=deb12\n"
                + STAMP.encode() + b"event=decided env=\"deb\xff12\" scheduler=slurm\n"
                + b"x" * (metrics.MAX_LINE * 3) + b"\n" + decided().encode()
                + STAMP.encode() + b"event=decided env=\"unterminated\n")
    s, _ = node.run()
    assert started(s) == 3                                   # the invalid UTF-8 env is 'other'
    assert get(s, "envsched_jobs_started_total", environment="other", scheduler="slurm") == 1
    assert get(s, "envsched_log_unparsed_lines_total") == 4
    s, _ = node.run()
    assert get(s, "envsched_log_unparsed_lines_total") == 4


def test_a_huge_unterminated_line_is_skipped(tmp_path):
    node = Node(tmp_path)
    node.append(decided(), "y" * (metrics.MAX_LINE + 10))
    s, _ = node.run()
    assert started(s) == 1 and get(s, "envsched_log_unparsed_lines_total") == 1
    node.append("y" * 10 + "\n", decided())
    s, _ = node.run()
    assert started(s) == 2


def test_damaged_or_untrusted_state_starts_again(tmp_path):
    node = Node(tmp_path)
    node.append(decided())
    node.run()
    node.state.write_text('{"version": 1, "log": null, "counters": {"envsched_jobs_started_total": [[["a b", "c"], 1]]}}')
    s, r = node.run()
    assert started(s) == 1 and any("counting from zero" in w for w in r.warnings)
    node.state.chmod(0o644)
    s, r = node.run()
    assert any("mode 0600" in w for w in r.warnings)
    assert oct(node.state.stat().st_mode & 0o777) == "0o600"  # rewritten
    node.state.unlink()
    node.state.symlink_to(node.log)
    s, r = node.run()
    assert r.warnings and started(s) == 1 and not node.state.is_symlink()


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"version": 1}', "{" * 100000, "\xff",
                                  '{"version":1,"log":{"dev":1,"ino":2,"offset":-1,"tail":""},"counters":{},'
                                  '"setup":{"buckets":[0,0,0,0,0,0,0,0,0,0,0,0],"sum":0,"count":0}}'])
def test_state_from_json_refuses(text):
    with pytest.raises(ValueError):
        metrics.State.from_json(text)


def test_state_round_trips(tmp_path):
    node = Node(tmp_path)
    node.append(decided(), line("prepared", setup_ms=12), line("released", key="k"))
    node.run()
    state, why = metrics.load_state(str(node.state))
    assert why is None
    assert metrics.State.from_json(state.to_json()) == state


def test_no_log_file_counts_pins_only(tmp_path):
    (tmp_path / "run").mkdir()
    r = metrics.collect("", str(tmp_path / "run"), ENVS, state_file=str(tmp_path / "state"))
    check_exposition(r.text)
    s = samples(r.text)
    assert get(s, "envsched_log_readable") == 0 and get(s, "envsched_active_views") == 0
    assert r.warnings == ["site.log_file is not set: only the pins are counted"]


def test_active_views_counts_pins_with_a_view(tmp_path):
    run = tmp_path / "run"
    for key, view in (("slurm-1", True), ("slurm-2", True), ("uge-3.1", False)):   # the last: record-only
        (run / key).mkdir(parents=True)
        if view:
            (run / key / "mnt").touch()
    (run / ".hidden").mkdir()
    (run / ".hidden" / "mnt").touch()
    (run / metrics.STATE_NAME).touch()
    assert metrics.active_views(str(run)) == 2
    assert metrics.active_views(str(tmp_path / "missing")) == 0


def test_write_atomic(tmp_path):
    out = tmp_path / "envsched.prom"
    out.write_text("old\n")
    metrics.write_atomic(str(out), "new\n", 0o644)
    assert out.read_text() == "new\n" and oct(out.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envsched.prom"]
    with pytest.raises(metrics.SetupError):
        metrics.write_atomic(str(tmp_path / "no" / "x.prom"), "x\n", 0o644)


def test_one_run_at_a_time(tmp_path, monkeypatch):
    import fcntl
    node = Node(tmp_path)
    node.append(decided())
    monkeypatch.setattr(metrics, "LOCK_TIMEOUT", 0.3)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)                      # another run, still going
        with pytest.raises(metrics.SetupError, match="another `envsched metrics`"):
            node.run()
        assert not node.state.exists()
    finally:
        os.close(fd)
    s, _ = node.run()
    assert started(s) == 1


def test_collect_writes_the_output(tmp_path):
    node = Node(tmp_path)
    node.append(decided())
    out = tmp_path / "envsched.prom"
    r = metrics.collect(str(node.log), str(node.run_dir), ENVS, state_file=str(node.state), output=str(out))
    assert out.read_text() == r.text and oct(out.stat().st_mode & 0o777) == "0o644"


def test_cli_has_metrics():
    from envsched.cli.envsched import build_parser
    args = build_parser().parse_args(["metrics", "--output", "/x/envsched.prom", "--policy", "/p.toml"])
    assert args.output == "/x/envsched.prom" and args.policy == "/p.toml"
    assert args.func.__name__ == "cmd_metrics"
