"""#13's cold path: what makes a resolver run cheap must not change what it does.

records.py against dataclasses, ExitCode against the IntEnum it replaces, quick_args against
argparse, is_valid_name against NAME_RE, and what `envsched validate` imports."""
from __future__ import annotations

import dataclasses
import enum
import os
import pickle
import random
import subprocess
import sys
from typing import Dict, Optional, Tuple

import pytest

from envsched import records
from envsched.cli.common import quick_args
from envsched.cli.envsched import QUICK, build_parser
from envsched.exitcodes import ExitCode
from envsched.names import NAME_RE, is_valid_name

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


# -- records ---------------------------------------------------------------------------------
def _pair(frozen: bool):
    """The same class made by dataclasses and by records."""
    made = []
    for dc, fld in ((dataclasses.dataclass, dataclasses.field), (records.dataclass, records.field)):
        @dc(frozen=frozen)
        class Thing:
            name: str
            size: int = 3
            tags: Tuple[str, ...] = ()
            extra: Dict[str, str] = fld(default_factory=dict)
            note: Optional[str] = None

            @property
            def big(self) -> bool:
                return self.size > 10
        made.append(Thing)
    return made


@pytest.mark.parametrize("frozen", [True, False])
def test_records_build_what_dataclasses_build(frozen):
    std, ours = _pair(frozen)
    for args, kwargs in [(("a",), {}), (("a", 12), {"note": "n"}), ((), {"name": "b", "tags": ("x",)}),
                         (("a", 1, ("t",), {"k": "v"}, "n"), {})]:
        a, b = std(*args, **kwargs), ours(*args, **kwargs)
        assert vars(a) == vars(b) and list(vars(a)) == list(vars(b))          # same fields, same order
        assert repr(a).replace("test_records_build_what_dataclasses_build.<locals>._pair.<locals>.", "") == \
            repr(b).replace("test_records_build_what_dataclasses_build.<locals>._pair.<locals>.", "")
        assert (a.big, b.big) == (a.size > 10, b.size > 10)
        assert b == ours(*args, **kwargs) and b != ours("zz") and (b == a) is False
        assert dataclasses.asdict(a) == dataclasses.asdict(b) == records.asdict(b)
        assert dataclasses.replace(b, size=99) == records.replace(b, size=99) == ours(**dict(vars(b), size=99))
        assert [f.name for f in dataclasses.fields(b)] == [f.name for f in records.fields(b)] == list(vars(a))
        assert dataclasses.is_dataclass(b) and records.is_dataclass(b) and records.is_dataclass(ours)
    assert ours("a").extra is not ours("a").extra                                 # a new one each time
    if frozen:
        for cls in (std, ours):
            with pytest.raises(TypeError):                                      # a dict in it
                hash(cls("a"))

        @records.dataclass(frozen=True)
        class Plain:
            a: str
            b: Tuple[int, ...] = ()
        assert hash(Plain("x", (1,))) == hash(Plain("x", (1,))) == hash(("x", (1,)))
        with pytest.raises(AttributeError):
            ours("a").size = 4
        with pytest.raises(AttributeError):
            del ours("a").size
        from envsched.policy.model import Environment, Mount
        env = Environment("x", "/os/x", binds=(Mount("/a", "/b"),))
        assert pickle.loads(pickle.dumps(env)) == env and __import__("copy").deepcopy(env) == env
    else:
        assert std.__hash__ is None and ours.__hash__ is None
        b = ours("a")
        b.size = 5
        assert b.size == 5
    for bad_args, bad_kwargs in [((), {}), (("a",), {"name": "b"}), (("a",), {"nope": 1}),
                                 (("a", 1, (), {}, None, "too many"), {})]:
        for cls in (std, ours):
            with pytest.raises(TypeError):
                cls(*bad_args, **bad_kwargs)


def test_records_refuse_what_dataclasses_refuse():
    with pytest.raises(ValueError):
        @records.dataclass
        class Mutable:
            items: list = []                # noqa: RUF012
    with pytest.raises(TypeError):
        @records.dataclass
        class Order:
            a: int = 1
            b: int


# -- ExitCode --------------------------------------------------------------------------------
class _Reference(enum.IntEnum):
    OK = 0
    USAGE = 64
    REFUSED = 77


def test_exit_codes_behave_as_the_int_enum_did():
    assert [c.name for c in ExitCode][:2] == ["OK", "CHECK_FAILED"] and len(ExitCode) == len(list(ExitCode))
    for ours, ref in ((ExitCode.OK, _Reference.OK), (ExitCode.USAGE, _Reference.USAGE),
                      (ExitCode.REFUSED, _Reference.REFUSED)):
        assert (ours.name, ours.value, int(ours), str(ours), f"{ours}", f"{ours:>4}", repr(ours), bool(ours)) == \
            (ref.name, ref.value, int(ref), str(ref), f"{ref}", f"{ref:>4}", repr(ref).replace("_Reference", "ExitCode"),
             bool(ref))
        assert ours == ref and hash(ours) == hash(ref) and isinstance(ours, int) and isinstance(ours, ExitCode)
        assert ExitCode(int(ref)) is ours and ExitCode(ours) is ours
        assert pickle.loads(pickle.dumps(ours)) is ours
    with pytest.raises(ValueError):
        ExitCode(5)
    with pytest.raises(AttributeError):
        ExitCode.OK = 1


# -- quick_args ------------------------------------------------------------------------------
JOB = ["--user", "alice", "--request", "deb12"]
LINES = [
    ["validate", *JOB], ["--policy", "/p.toml", "validate", *JOB, "--print"],
    ["--policy=/p.toml", "validate", "--user=alice", "--pin", "--identity-only", "--no-user-file"],
    ["validate", *JOB, "--policy", "/q.toml"], ["--policy", "/p.toml", "validate", *JOB, "--policy", "/q.toml"],
    ["validate", "--user", "alice", "--chos-var", "sl6", "--partition", "p", "--account", "a", "--job", "1",
     "--cwd", "/w", "--user", "bob"],
    ["prepare", *JOB, "--key", "slurm-1", "--owner-pid", "1", "--format", "shim"],
    ["prepare", *JOB, "--key", "k", "--bind", "/a", "--bind", "/b:/c:rw", "--reuse", "--gc", "--record-local",
     "--fallback-key", "k2", "--inputs", "x y z", "--owner-pid", " 7 "],
    ["release", "--key", "slurm-1"], ["release", "--key", "k", "--with-steps", "--quiet", "--policy=/p"],
    # es_prepare.c's line (plugins/common/es_prepare.c), CHOS unset: `--chos-var=` is the value ""
    ["--policy", "/p.toml", "prepare", "--format", "shim", "--reuse", "--record-local", "--gc", "--key", "slurm-1",
     "--user", "65534", "--job", "1", "--owner-pid", "1", "--shared-view", "--decision-cache", "--no-user-file",
     "--chos-var=", "--inputs=u65534 r=deb12", "--request=deb12"],
    # left to argparse (None), which parses them or says why not
    ["validate"], ["validate", "--us", "alice"], ["validate", "-h"], ["validate", *JOB, "extra"],
    ["validate", "--user", "-alice"], ["validate", "--user"], ["validate", "--user="], ["validate", "--pin=1"],
    ["prepare", *JOB, "--key", "k", "--format", "xml"], ["prepare", *JOB, "--key", "k", "--owner-pid", "x"],
    ["prepare", *JOB, "--key", "k", "--bind", "relative"], ["prepare", *JOB], ["release", "--key", "k", "--", "x"],
    ["--pol", "/p", "release", "--key", "k"], ["release", "--key", "-k"], ["release", "--key", "k", "--help"],
    ["--policy", "release", "release", "--key", "k"], ["release", "--key", ""],
]


def _argparse(line):
    try:
        return vars(build_parser().parse_args(line))
    except SystemExit:
        return None


@pytest.mark.parametrize("line", LINES, ids=" ".join)
def test_quick_args_parse_as_argparse_does(line, capsys):
    wanted = next(a for a in line if a in QUICK)
    quick = quick_args(build_parser(wanted, record=True), line)
    if quick is not None:
        assert vars(quick) == _argparse(line)


def test_quick_args_take_the_shims_lines():
    taken = [line for line in LINES[:11] if quick_args(build_parser(
        next(a for a in line if a in QUICK), record=True), line) is not None]
    assert taken == LINES[:11]


def test_quick_args_agree_with_argparse_on_random_lines(capsys):
    rng = random.Random(13)
    words = ["--user", "alice", "--request", "--key", "k", "--policy", "/p", "--print", "--pin", "--bind", "/x",
             "--owner-pid", "3", "--format", "shim", "--quiet", "--with-steps", "-", "--", "x", "--user=bob",
             "--inputs", "a b", "--identity-only", "--reuse", "--chos-var=", "--user=", "--key=", "--quiet="]
    for _ in range(800):
        line = [rng.choice(words) for _ in range(rng.randint(0, 6))]
        line.insert(rng.randint(0, len(line)), rng.choice(QUICK))
        wanted = next(a for a in line if a in QUICK)
        quick = quick_args(build_parser(wanted, record=True), line)
        if quick is not None and line.index(wanted) == next(i for i, a in enumerate(line) if a in QUICK):
            assert vars(quick) == _argparse(line), line


# -- names -----------------------------------------------------------------------------------
def test_is_valid_name_answers_as_name_re():
    rng = random.Random(5)
    alphabet = "aZ09._-/ \n\u00e9\u0661@:"
    values = ["", "a", "a" * 64, "a" * 65, ".a", "-a", "a\n", "\u0661", "deb12", "sl6.4", "a-b_c"]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(3000)]
    for v in values:
        assert is_valid_name(v) == (NAME_RE.match(v) is not None), repr(v)
    assert not is_valid_name(None) and not is_valid_name(5)          # type: ignore[arg-type]


# -- what a shim's validate imports ------------------------------------------------------------
def test_validate_imports_none_of_the_heavy_modules(trusted_dir):
    policy = trusted_dir / "policy.toml"
    policy.write_text('[site]\ndefault = "local"\n[environments.deb12]\npath = "/os/deb12"\n')
    user = __import__("pwd").getpwuid(os.getuid()).pw_name
    code = ("import sys; from envsched.cli.envsched import main; rc = main(); "
            "print(sorted(m for m in ('argparse', 'dataclasses', 'json', "
            "'inspect', 'signal', 'ctypes', 'hashlib') if m in sys.modules)); sys.exit(rc)")
    # not listed: tomllib and what it imports (re, enum, typing, contextlib): the policy is TOML, and
    # the standard library's parser reads it (a parser of our own for a root-read file is not worth
    # its 7 ms)
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {SRC!r}); " + code,
                          "--policy", str(policy), "validate", "--user", user, "--request", "deb12",
                          "--identity-only", "--no-user-file", "--print"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["deb12", "[]"], out.stdout


# -- the collector at exit -----------------------------------------------------------------------
def test_a_command_line_run_leaves_the_collector_frozen_an_in_process_one_does_not(trusted_dir):
    """main() of the process's own command line freezes the collector's objects before the
    interpreter exits (its passes at exit cost ≈ 3.5 ms); a caller that lives on (the plugins,
    main(ARGV)) keeps its collector as it was."""
    policy = trusted_dir / "policy.toml"
    policy.write_text('[site]\ndefault = "local"\n[environments.deb12]\npath = "/os/deb12"\n')
    user = __import__("pwd").getpwuid(os.getuid()).pw_name
    line = ["--policy", str(policy), "validate", "--user", user, "--request", "deb12", "--identity-only",
            "--no-user-file"]
    code = ("import gc, sys; from envsched.cli.envsched import main; "
            "rc = main() if sys.argv[1] != 'argv' else main(sys.argv[2:]); "
            "print(rc, gc.get_freeze_count() > 0, gc.get_threshold()[0]); sys.exit(rc)")
    for how, frozen in (("own", "True"), ("argv", "False")):
        out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {SRC!r}); " + code,
                              *(line if how == "own" else [how, *line])], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["0", frozen, "700"], (how, out.stdout)


# -- what a shim's release imports ---------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="release needs root")
def test_release_imports_neither_the_resolver_nor_the_view_builder(trusted_dir):
    """A release needs the policy (run_dir, log_file, image_hold), the pin store and the admin
    log: not the resolver, the job's context, the plan, the view builder, isolation or json."""
    run_dir = trusted_dir / "run"
    policy = trusted_dir / "policy.toml"
    policy.write_text(f'[site]\nrun_dir = "{run_dir}"\n[environments.deb12]\npath = "/os/deb12"\n')
    heavy = ('argparse', 'json', 'envsched.service', 'envsched.resolve', 'envsched.chosen', 'envsched.plan',
             'envsched.view', 'envsched.enter', 'envsched.isolation', 'envsched.nodehooks', 'envsched.identity',
             'envsched.shim', 'envsched.sharedviews', 'signal')
    parsing = ('tomllib', 'typing', 're')          # the second run finds the policy parsed (POLICY_CACHE)
    code = (f"import sys; import envsched.policy.load as l; l.POLICY_CACHE = {str(trusted_dir / 'kept')!r}; "
            "from envsched.cli.envsched import main; rc = main(); "
            f"print(sorted(m for m in {heavy + parsing!r} if m in sys.modules)); sys.exit(rc)")
    for expected in (list(parsing), []):
        out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {SRC!r}); " + code,
                              "--policy", str(policy), "release", "--key", "slurm-1", "--quiet"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split("\n")[:1] == [str(sorted(expected))], out.stdout


# -- the parsed policy, kept (policy/load.py) ----------------------------------------------------
POLICY_TEXT = '[site]\ndefault = "local"\n[environments.deb12]\npath = "/os/deb12"\n'
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the parsed policy is kept for root only")


@pytest.fixture
def kept(trusted_dir, monkeypatch):
    """POLICY_CACHE in a directory of its own; the policy file beside it."""
    from envsched.policy import load
    monkeypatch.setattr(load, "POLICY_CACHE", str(trusted_dir / "kept"))
    policy = trusted_dir / "policy.toml"
    policy.write_text(POLICY_TEXT)
    return load, policy


def _only_file(load):
    names = os.listdir(load.POLICY_CACHE)
    assert len(names) == 1, names
    return os.path.join(load.POLICY_CACHE, names[0])


@as_root
def test_a_kept_policy_is_the_parsed_one_and_a_changed_text_is_parsed_again(kept):
    load, policy = kept
    first = load.load_policy(str(policy))
    path = _only_file(load)
    st = os.stat(path)
    assert (st.st_uid, st.st_mode & 0o777, os.stat(load.POLICY_CACHE).st_mode & 0o777) == (0, 0o600, 0o700)
    assert load.load_policy(str(policy)) == first
    policy.write_text(POLICY_TEXT + '[environments.deb13]\npath = "/os/deb13"\n')
    assert sorted(load.load_policy(str(policy)).environments) == ["deb12", "deb13"]
    policy.write_text(POLICY_TEXT.replace("deb12", "deb14"))
    assert sorted(load.load_policy(str(policy)).environments) == ["deb14"]


@as_root
def test_an_unchanged_policy_is_not_parsed_again(trusted_dir):
    """The second run takes the kept result: neither tomllib nor what it imports is loaded."""
    policy = trusted_dir / "policy.toml"
    policy.write_text(POLICY_TEXT)
    user = __import__("pwd").getpwuid(os.getuid()).pw_name
    code = (f"import sys; import envsched.policy.load as l; l.POLICY_CACHE = {str(trusted_dir / 'kept')!r}; "
            "from envsched.cli.envsched import main; rc = main(); "
            "print(sorted(m for m in ('tomllib', 're', 'typing', 'datetime') if m in sys.modules)); sys.exit(rc)")
    outs = [subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {SRC!r}); " + code,
                            "--policy", str(policy), "validate", "--user", user, "--request", "deb12",
                            "--identity-only", "--no-user-file", "--print"], capture_output=True, text=True)
            for _ in range(2)]
    assert [(o.returncode, o.stderr) for o in outs] == [(0, ""), (0, "")]
    assert outs[0].stdout.split("\n")[:2] == ["deb12", "['datetime', 're', 'tomllib', 'typing']"]
    assert outs[1].stdout.split("\n")[:2] == ["deb12", "[]"]


@as_root
@pytest.mark.parametrize("forge", ["mode", "link", "symlink", "other-text", "garbage", "directory-mode"])
def test_a_kept_policy_root_does_not_own_alone_is_not_taken(kept, forge):
    """Only a regular file of root's alone (0600, one link, no symbolic link) in a directory of
    root's alone, written for this very text, is taken: anything else is parsed as before."""
    import marshal
    load, policy = kept
    load.load_policy(str(policy))
    path = _only_file(load)
    forged = {"site": {"default": "deb12"}, "environments": {"deb12": {"path": "/forged"}}}
    blob = marshal.dumps((load.POLICY_CACHE_FORMAT, sys.version, POLICY_TEXT, forged))
    with open(path, "wb") as f:
        f.write(blob)
    assert load.load_policy(str(policy)).environments["deb12"].path == "/forged"     # (root's own: taken)
    if forge == "mode":
        os.chmod(path, 0o640)
    elif forge == "link":
        os.link(path, path + ".2")
    elif forge == "symlink":
        os.rename(path, path + ".real")
        os.symlink(path + ".real", path)
    elif forge == "other-text":
        with open(path, "wb") as f:
            f.write(marshal.dumps((load.POLICY_CACHE_FORMAT, sys.version, POLICY_TEXT + "\n", forged)))
    elif forge == "garbage":
        with open(path, "wb") as f:
            f.write(blob[:-3])
    elif forge == "directory-mode":
        os.chmod(load.POLICY_CACHE, 0o755)
    assert load.load_policy(str(policy)).environments["deb12"].path == "/os/deb12"


@as_root
def test_a_refused_policy_is_refused_as_before_and_not_kept(kept):
    """A policy the schema refuses (here for a TOML date, which marshal would not write either)
    gives the error it gave without the cache, every time, and nothing is kept."""
    import datetime
    load, policy = kept
    text = POLICY_TEXT.replace('path = "/os/deb12"', 'path = "/os/deb12"\nwhen = 1979-05-27')
    policy.write_text(text)
    with pytest.raises(load.PolicyError) as pure:
        load.parse_policy_text(text, str(policy))
    for _ in range(2):
        with pytest.raises(load.PolicyError) as e:
            load.load_policy(str(policy))
        assert e.value.message == pure.value.message
    assert not os.path.exists(load.POLICY_CACHE) or os.listdir(load.POLICY_CACHE) == []
    assert load._blob(text, {"when": datetime.date(1979, 5, 27)}) is None


def test_without_root_the_policy_is_parsed_and_nothing_kept(kept, monkeypatch):
    load, policy = kept
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    load.load_policy(str(policy))
    assert not os.path.exists(load.POLICY_CACHE)


def test_tomllib_is_still_there_to_import_from_load():
    from envsched.policy.load import tomllib
    assert tomllib.loads("a = 1") == {"a": 1}


@as_root
def test_the_kept_policies_are_few(kept):
    """One file per policy path; from POLICY_CACHE_FILES on, a policy kept anew takes their place."""
    load, policy = kept
    os.mkdir(load.POLICY_CACHE, 0o700)
    for i in range(load.POLICY_CACHE_FILES):
        (policy.parent / "kept" / f"{i:032x}").write_bytes(b"")
    load.load_policy(str(policy))
    assert len(os.listdir(load.POLICY_CACHE)) == 1
    assert load.load_policy(str(policy)) == load.load_policy(str(policy))
