"""Hypothesis on the Python parsers that see hostile bytes. Each target's only allowed outcomes are
its documented ones (a value, or the project's own error type); any other exception, a hang
(fuzzlib.bounded) or a broken property is a failing test.

    policy_*        policy/load.py + schema.py: TOML text and bytes, TOML documents built from the
                    schema's keys, mutations of the example policy -> Policy or PolicyError; a
                    Policy is then usable (plans, decisions, shim lines, its timeout)
    locate_*        policy/locate.py (file:line of an error): same answers as the regular
                    expressions it replaced, in linear time
    userfile_*      userfile.py: ~/.chos bytes -> a name or an error; the reader child's report
    names           names.py: the name grammar, show()
    shim_lines      shim.py: decisions from hostile requests -> protocol lines the C shims split
                    back into exactly what was meant (es_envop_parse's grammar)
    plan_json, pin_files   plan.py / pin.py: plan.json, meta.json -> a usable Plan/PinMeta or ValueError
    chos_import     policy/chos_import.py: /etc/chos -> a policy that loads, with CHOS's trees
    torque_*        plugins/torque/torque/envsched_torque.py: qsub -v, #PBS -v, the script stamp
    uge_spool       plugins/uge/envsched_uge.py: execd's job config and environment -> NAME=VALUE, as
                    the shepherd reads them, or SpoolError
    jsv             plugins/uge/envsched_jsv.py: the JSV protocol, one RESULT per job, one line each
"""
from __future__ import annotations

import datetime
import json
import os
import re
import select
from pathlib import Path
from typing import Any, List, Optional

import pytest
from hypothesis import assume, example, given, strategies as st

from fuzzlib import bounded, fuzz

from envsched.enter import apply_env_ops, chdir_candidates
from envsched.errors import PolicyError
from envsched.identity import UserInfo
from envsched.names import NAME_RE, is_valid_name, show
from envsched.pin import PinMeta, PinStore
from envsched.plan import Plan, build_plan
from envsched.policy import schema
from envsched.policy.chos_import import convert_chos_text, parse_chos_text
from envsched.policy.load import parse_policy_text, read_policy_text
from envsched.policy.locate import _header, _split_dotted, line_of
from envsched.policy.model import Policy
from envsched.resolve import Decision, Refusal, Request, resolve
from envsched.shim import shim_lines
from envsched.userfile import MAX_BYTES, UserFile, decode_report, parse_user_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_POLICY = (REPO / "site-config" / "examples" / "policy.toml").read_text(encoding="utf-8")
ALICE = UserInfo(name="alice", uid=1000, gid=1000, gids=(1000, 2000), groups=("alice", "physics"),
                 home="/home/alice", shell="/bin/sh")

# ------------------------------------------------------------------------------ strategies
no_surrogates = st.characters(blacklist_categories=("Cs",))
any_text = st.text(no_surrogates, max_size=120)
SYNTAX = list("[]{}=.\"'#,\n\t :/\\-_+") + ["'''", '"""', "\r\n", "0x", "inf", "nan", "true"]
toml_ish = st.lists(st.one_of(st.sampled_from(SYNTAX), st.text(no_surrogates, max_size=6),
                              st.sampled_from(sorted(schema.SITE_KEYS | schema.ENV_KEYS | schema.TOP_KEYS))),
                    max_size=60).map("".join)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True)
env_names = st.sampled_from(["deb12", "deb13", "sl6", "sl6.4", "a-b_c"]) | names
abspaths = st.from_regex(r"(/[a-z0-9._ -]{1,6}){1,3}", fullmatch=True) | st.sampled_from(
    ["/", "//x//y", "/a/../b", "/a/./b", "relative", "", "/x\ny", "/nul\0", "/tmp", "/home", "/proc"])
varnames = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True) | st.sampled_from(
    ["PATH", "CHOS", "LD_LIBRARY_PATH", "1X", "A-B", "A=B", ""])
hostile = st.text(st.one_of(no_surrogates, st.sampled_from(list("\0\n\r\t \x1b\x85\u2028'\"\\"))), max_size=40)


class Raw(str):
    """A TOML literal written as it is (numbers tomllib must refuse or read as huge)."""


RAW_NUMBERS = ["0x" + "f" * 600, "9" * 5000, "-" + "9" * 400, "1e400", "-1e400", "1_000", "+inf", "-inf",
               "nan", "-0", "0o777", "0b101", "9223372036854775807", "9223372036854775808", "86400", "86400.5",
               "1e-300"]
scalars = st.one_of(
    any_text, hostile, names, abspaths, st.booleans(),
    st.integers(), st.integers(min_value=-2 ** 80, max_value=2 ** 80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(RAW_NUMBERS).map(Raw),
    st.datetimes(min_value=datetime.datetime(1, 1, 1)), st.dates(), st.times(),
)
keys = st.one_of(st.sampled_from(sorted(schema.SITE_KEYS | schema.ENV_KEYS | schema.MOUNT_KEYS
                                        | schema.ENV_OPS_KEYS | schema.DEFAULTS_KEYS)), names, any_text)
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4),
                      max_leaves=10)


def toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else toml_value(k)


def toml_value(v: Any) -> str:
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, str):
        out = []
        for ch in v:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_document(doc: dict) -> str:
    """Tables as [headers] (so that errors are located by line), anything else inline."""
    lines = []
    for k, v in doc.items():
        if not isinstance(v, dict):
            lines.append(f"{toml_key(k)} = {toml_value(v)}")
    for k, v in doc.items():
        if isinstance(v, dict):
            sub = {n: t for n, t in v.items() if k == "environments" and isinstance(t, dict)}
            lines.append(f"\n[{toml_key(k)}]")
            lines += [f"{toml_key(n)} = {toml_value(x)}" for n, x in v.items() if n not in sub]
            for n, t in sub.items():
                lines.append(f"\n[{toml_key(k)}.{toml_key(n)}]")
                lines += [f"{toml_key(a)} = {toml_value(x)}" for a, x in t.items()]
    return "\n".join(lines) + "\n"


def maybe(plausible: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly what the schema wants, sometimes anything."""
    return st.one_of(plausible, plausible, plausible, values)


mounts = maybe(abspaths | st.fixed_dictionaries(
    {}, optional={"path": abspaths, "source": abspaths, "target": abspaths,
                  "mode": st.sampled_from(["ro", "rw", "rx"]), "required": st.booleans()}))
env_ops = st.fixed_dictionaries({}, optional={
    "set": st.dictionaries(varnames, maybe(hostile), max_size=3),
    "prepend": st.dictionaries(varnames, maybe(abspaths), max_size=2),
    "append": st.dictionaries(varnames, maybe(abspaths), max_size=2),
    "unset": st.lists(varnames, max_size=3)})


@st.composite
def documents(draw) -> dict:
    envs = draw(st.lists(env_names, min_size=0, max_size=3, unique=True))
    refs = st.sampled_from(envs + ["local"]) if envs else st.just("local")
    who = st.lists(st.sampled_from(["alice", "bob", "physics", "root"]) | names, max_size=3)
    site = draw(st.fixed_dictionaries({}, optional={
        "default": maybe(refs), "on_error": maybe(st.sampled_from(["closed", "default", "open"])),
        "user_file": maybe(st.sampled_from([".chos", ".envsched-fuzz-none", "", "a/b", ".."])),
        "shared": maybe(st.lists(mounts, max_size=4)), "identity_files": maybe(st.lists(abspaths, max_size=3)),
        "local_root": maybe(abspaths), "allow_local": maybe(st.booleans()), "run_dir": maybe(abspaths),
        "log_file": maybe(abspaths),
        "user_file_timeout": maybe(st.floats(min_value=-1, max_value=1e6) | st.integers(-5, 10 ** 6)
                                   | st.sampled_from(RAW_NUMBERS).map(Raw))}))
    environments = {}
    for name in envs:
        environments[name] = draw(st.fixed_dictionaries({"path": maybe(abspaths)}, optional={
            "kind": maybe(st.sampled_from(["tree", "image"])), "description": maybe(hostile),
            "enabled": maybe(st.booleans()),
            "dirs": maybe(st.lists(st.sampled_from(["usr", "bin", "etc", "lib", "..", "a/b", ""]), max_size=4)),
            "binds": maybe(st.lists(mounts, max_size=3)), "env": maybe(env_ops),
            "allow_users": maybe(who), "allow_groups": maybe(who), "allow_accounts": maybe(who),
            "allow_partitions": maybe(who), "deny_users": maybe(who), "deny_groups": maybe(who)}))
    table = lambda: st.dictionaries(st.sampled_from(["alice", "physics", "debug", "long"]) | names,  # noqa: E731
                                    maybe(refs), max_size=3)
    defaults = draw(st.fixed_dictionaries({}, optional={
        "groups": maybe(table()), "partitions": maybe(table()), "queues": maybe(table()),
        "accounts": maybe(table())}))
    doc = {}
    if site or draw(st.booleans()):
        doc["site"] = site
    if environments:
        doc["environments"] = environments
    if defaults:
        doc["defaults"] = defaults
    if draw(st.integers(0, 9)) == 0:
        doc[draw(keys)] = draw(values)          # an unknown top-level key
    return doc


# ------------------------------------------------------------------------------ policy
_READY_R, _READY_W = os.pipe()
os.write(_READY_W, b"x")                       # readable at once: select() returns immediately


def parsed(text: str, source: str = "fuzz.toml") -> Optional[Policy]:
    """The Policy, or None for a PolicyError (which must be one line naming the file)."""
    try:
        with bounded():
            return parse_policy_text(text, source)
    except PolicyError as e:
        assert "\n" not in e.message and e.message.startswith(source), e.message
        return None


def usable(policy: Policy) -> None:
    """What a job start does with a valid policy must work."""
    select.select([_READY_R], [], [], policy.site.user_file_timeout)      # read_user_file's wait
    for name, env in policy.environments.items():
        plan = build_plan(policy, name, env, ALICE, "/home/alice/work")
        assert Plan.from_json(plan.to_json()) == plan
        assert plan.mount_ops and plan.process_ops
    for req in (Request("alice", groups=ALICE.groups), Request("alice", option="local", partition="debug"),
                Request("bob", chos_var=next(iter(policy.environments), "x"), account="long")):
        outcome = resolve(policy, req)
        assert isinstance(outcome, (Decision, Refusal))
        if isinstance(outcome, Decision):
            plan = build_plan(policy, outcome.name, outcome.environment, ALICE, "/")
            check_shim(shim_lines(outcome, plan, "k-1", "/run/envsched/k-1/mnt", False, ALICE), plan)
        else:
            assert "\n" not in outcome.message()


@fuzz()
@given(text=st.one_of(any_text, toml_ish))
@example(text="[site]\nuser_file_timeout = " + "9" * 400 + "\n")
@example(text="[site]\ndefault = 0x" + "f" * 5000 + "\n")
@example(text="[site]\ndefault = " + "9" * 5000 + "\n")
@example(text="a = " + "[" * 900 + "]" * 900 + "\n")
@example(text="[site]\nuser_file_timeout = 1e300\n")
def test_policy_text(text: str, examples) -> None:
    examples.hit()
    policy = parsed(text)
    if policy is not None:
        usable(policy)


@fuzz(0.5)
@given(data=st.binary(max_size=300) | toml_ish.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_policy_bytes(data: bytes, examples, tmp_path: Path) -> None:
    """read_policy_text + parse: the file's bytes (not UTF-8, NUL, ...)."""
    examples.hit()
    path = tmp_path / "policy.toml"
    path.write_bytes(data)
    try:
        text = read_policy_text(str(path))
    except PolicyError:
        return
    policy = parsed(text, str(path))
    if policy is not None:
        usable(policy)


@fuzz()
@given(doc=documents())
def test_policy_documents(doc: dict, examples) -> None:
    examples.hit()
    policy = parsed(toml_document(doc))
    if policy is not None:
        usable(policy)


@st.composite
def mutations(draw) -> str:
    text = EXAMPLE_POLICY
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "dup-line", "swap"]))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif kind == "insert":
            text = text[:at] + draw(st.one_of(st.sampled_from(SYNTAX), hostile, values.map(toml_value))) + text[at:]
        elif kind == "replace":
            text = text[:at] + draw(st.sampled_from(SYNTAX)) + text[at + 1:]
        else:
            lines = text.split("\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "dup-line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


@fuzz()
@given(text=mutations())
def test_policy_mutations(text: str, examples) -> None:
    examples.hit()
    policy = parsed(text)
    if policy is not None:
        usable(policy)


# ------------------------------------------------------------------------------ locate
_OLD_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_OLD_DOTTED = re.compile(r"""\s*("[^"]*"|'[^']*'|[^.\s]+)\s*(?:\.|$)""")
LINE_TEXT = st.text(st.one_of(st.sampled_from(list("[]\"'.# \t=ab_-")), no_surrogates.filter(lambda c: c != "\n")),
                    max_size=40)


@fuzz()
@given(line=LINE_TEXT, dotted=LINE_TEXT)
def test_locate_same_as_regex(line: str, dotted: str, examples) -> None:
    """The linear-time helpers give what the regular expressions gave (on the lines split_lines gives)."""
    examples.hit()
    old = _OLD_HEADER.match(line)
    assert _header(line) == (old.group(1) if old else None)
    assert _split_dotted(dotted) == [p.strip("\"'") for p in _OLD_DOTTED.findall(dotted)]


@fuzz(0.5)
@given(text=st.lists(st.one_of(LINE_TEXT, toml_ish.map(lambda t: t.replace("\r", ""))), max_size=12).map("\n".join),
       path=st.lists(st.sampled_from(["site", "environments", "deb12", "path", "env", "set", "a", "b"]) | names
                     | st.integers(0, 3), max_size=4))
def test_locate_line_of(text: str, path: list, examples) -> None:
    examples.hit()
    with bounded():
        n = line_of(text, path)
    assert n is None or 1 <= n <= text.count("\n") + 1


@pytest.mark.parametrize("line", ["[" + "a" * 200_000 + " b]", "[a" + " " * 200_000 + "x",
                                  '"a"a' * 50_000 + " x", "[" + '"a"a' * 50_000 + " x]"])
def test_locate_linear_time(line: str) -> None:
    """A long line in a multi-line string of a policy with an error took minutes (quadratic)."""
    text = f"[site]\nbogus = '''\n{line}\n'''\n"
    with bounded(2):
        with pytest.raises(PolicyError):
            parse_policy_text(text, "p.toml")


# ------------------------------------------------------------------------------ ~/.chos, names
def one_line_ascii(value: Optional[str]) -> bool:
    return value is None or (value.isascii() and "\n" not in value and len(value) <= MAX_BYTES)


@fuzz()
@given(data=st.binary(max_size=MAX_BYTES + 20) | st.sampled_from([b"deb12\n", b" sl6 \r\nx", b"\xff\n", b"\n\n"]))
def test_userfile_content(data: bytes, examples) -> None:
    examples.hit()
    uf = parse_user_file("/home/alice/.chos", data)
    assert uf.path == "/home/alice/.chos" and (uf.value is None) != (uf.error is None)
    assert one_line_ascii(uf.value) and one_line_ascii(uf.error)
    if uf.value is not None:
        assert uf.value == data.split(b"\n", 1)[0].strip(b" \t\r").decode("ascii")
    # what the parent makes of the child's report of it
    assert decode_report(uf.path, json.dumps(uf.__dict__).encode()) == uf


USER_FILE_DRIVER = r"""
#include <stdio.h>
#include "es_cache.h"
int main(void)
{
    unsigned char data[4096];
    char value[512];
    size_t len = fread(data, 1, sizeof data, stdin);
    if (es_user_file_value(data, len, value, sizeof value) != 0)
        return 3;
    fputs(value, stdout);
    return 0;
}
"""


@pytest.fixture(scope="module")
def user_file_in_c(tmp_path_factory) -> Path:
    """plugins/common/es_cache.c's ~/.chos parser (es_user_file_value) behind a small driver."""
    top = Path(__file__).resolve().parents[2] / "plugins" / "common"
    out = tmp_path_factory.mktemp("userfile-c")
    (out / "driver.c").write_text(USER_FILE_DRIVER)
    import subprocess
    subprocess.run(["cc", "-O1", "-D_GNU_SOURCE", f"-I{top}", "-o", str(out / "driver"), str(out / "driver.c"),
                    str(top / "es_cache.c"), str(top / "es_release.c"), str(top / "es_join.c"),
                    str(top / "es_fault.c")], check=True)
    return out / "driver"


@fuzz()
@given(data=st.binary(max_size=MAX_BYTES + 20)
       | st.sampled_from([b"deb12\n", b" sl6 \r\nx", b"\xff\n", b"\n\n", b"\0deb12\n", b"deb12\0", b"\t\r\n"]))
def test_userfile_same_in_c(data: bytes, user_file_in_c: Path, examples) -> None:
    """The decision cache's C reader of ~/.chos never finds a value the resolver would not: where C
    gives one, Python gives the same (C may give none where Python does: a miss, the resolver)."""
    import subprocess
    examples.hit()
    r = subprocess.run([str(user_file_in_c)], input=data, capture_output=True)
    uf = parse_user_file("/home/alice/.chos", data)
    assert r.returncode in (0, 3), r
    if r.returncode == 0:
        assert uf.value is not None and r.stdout.decode("ascii") == uf.value, (data, r.stdout, uf)
    elif uf.value is not None:
        assert "\0" in uf.value, (data, uf)                  # the one case C leaves to the resolver


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | any_text | hostile,
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(any_text, kids, max_size=3),
                           max_leaves=8)
reports = st.fixed_dictionaries({}, optional={"path": json_values, "value": json_values, "error": json_values,
                                              "extra": json_values}).map(lambda d: json.dumps(d).encode())


@fuzz()
@given(data=st.one_of(st.binary(max_size=200), reports, json_values.map(lambda v: json.dumps(v).encode()),
                      st.just(b"[" * 100_000)))
def test_userfile_report(data: bytes, examples) -> None:
    """The child's report (what a broken or subverted reader could send) -> a UserFile, never an exception."""
    examples.hit()
    uf = decode_report("/home/alice/.chos", data)
    assert isinstance(uf, UserFile) and uf.path == "/home/alice/.chos"
    assert one_line_ascii(uf.value) and (uf.error is None or "\n" not in uf.error)
    assert uf.value is None or uf.error is None
    outcome = resolve(_PLAN_POLICY, Request("alice", user_file=uf))
    assert isinstance(outcome, (Decision, Refusal))
    if isinstance(outcome, Decision):
        assert is_valid_name(outcome.name)
    else:
        assert "\n" not in outcome.message()


@fuzz()
@given(value=st.one_of(any_text, hostile, st.binary(max_size=80), st.integers(), st.just(2 ** 20000), st.none(),
                       st.floats(), st.lists(hostile, max_size=3)),
       limit=st.integers(0, 80))
def test_names(value: Any, limit: int, examples) -> None:
    examples.hit()
    ok = is_valid_name(value)
    assert ok in (True, False)
    if ok:
        assert NAME_RE.match(value) and "/" not in value and value not in (".", "..") and len(value) <= 64
    shown = show(value, limit)
    assert shown[0] == shown[-1] == "'" and all(" " <= c <= "~" for c in shown)
    assert len(shown) <= 2 * limit + 5


# ------------------------------------------------------------------------------ shim protocol
def check_shim(lines: List[str], plan: Plan) -> None:
    """Lines as the C shims read them: split at "\\n" (no value may hold one), the key up to the first
    blank; "env ACTION NAME VALUE" split as es_envop_parse does, giving back the plan's operation."""
    assert all("\n" not in line and "\0" not in line for line in lines), lines
    keys = [line.split(" ", 1)[0] for line in lines]
    assert keys[:5] == ["environment", "key", "pin", "reused", "uid"] and keys[-1] == "home", lines
    assert set(keys) <= {"environment", "key", "pin", "reused", "uid", "warning", "env", "home"}
    envs = [line[4:] for line in lines if line.startswith("env ")]
    ops = [op for op in plan.process_ops if op["op"] == "env"]
    assert len(envs) == len(ops)
    for text, op in zip(envs, ops):
        action, _, rest = text.partition(" ")
        name, _, value = rest.partition(" ")
        assert (action, name) == (op["action"], op["name"]) and action and name and " " not in name
        assert value == (op["value"] if op["action"] != "unset" else "")


clean_paths = st.from_regex(r"(/[a-z0-9_-]{1,6}){1,3}", fullmatch=True)
clean_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\n"), max_size=20)
clean_vars = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(lambda v: v != "CHOS")


@st.composite
def valid_documents(draw) -> dict:
    """Policies the schema accepts (nearly always): hostile only where it may be, in env values."""
    envs = draw(st.lists(env_names.filter(lambda n: n != "local"), min_size=1, max_size=3, unique=True))
    who = st.lists(st.sampled_from(["alice", "bob", "physics", "root"]), max_size=2, unique=True)
    environments = {name: draw(st.fixed_dictionaries({"path": clean_paths}, optional={
        "kind": st.sampled_from(["tree", "image"]), "enabled": st.booleans(),
        "env": st.fixed_dictionaries({}, optional={
            "set": st.dictionaries(clean_vars, clean_values, max_size=3),
            "prepend": st.dictionaries(clean_vars, clean_values, max_size=2),
            "append": st.dictionaries(clean_vars, clean_values, max_size=2),
            "unset": st.lists(clean_vars, max_size=2, unique=True)}),
        "allow_users": who, "allow_groups": who, "allow_accounts": who, "allow_partitions": who,
        "deny_users": who, "deny_groups": who})) for name in envs}
    for env in environments.values():      # a name in two operations is refused: keep each once
        ops, seen = env.get("env", {}), set()
        for action in ("set", "prepend", "append"):
            ops[action] = {k: v for k, v in ops.get(action, {}).items() if k not in seen and not seen.add(k)}
        ops["unset"] = [k for k in ops.get("unset", []) if k not in seen and not seen.add(k)]
    refs = st.sampled_from(envs + ["local"])
    site = draw(st.fixed_dictionaries({"default": refs}, optional={
        "on_error": st.sampled_from(["closed", "default"]), "allow_local": st.booleans(),
        "user_file": st.just(".envsched-fuzz-none")}))
    if site.get("allow_local") is False and site["default"] == "local":
        site["default"] = envs[0]
    table = st.dictionaries(st.sampled_from(["alice", "physics", "debug", "long"]), st.sampled_from(envs), max_size=2)
    defaults = draw(st.fixed_dictionaries({}, optional={"groups": table, "partitions": table, "accounts": table}))
    return {"site": site, "environments": environments, "defaults": defaults}


@fuzz()
@given(doc=valid_documents(), option=st.none() | hostile | env_names, chos=st.none() | hostile | env_names,
       user_file=st.none() | st.binary(max_size=40).map(lambda b: parse_user_file("/home/alice/.chos", b)),
       account=st.none() | hostile, partition=st.none() | hostile, groups=st.lists(hostile, max_size=2))
def test_shim_lines(doc, option, chos, user_file, account, partition, groups, examples) -> None:
    examples.hit()
    policy = parsed(toml_document(doc))
    assume(policy is not None)              # rare: the strategy above builds valid policies
    req = Request("alice", groups=tuple(groups) + ALICE.groups, account=account, partition=partition,
                  option=option, chos_var=chos, user_file=user_file)
    outcome = resolve(policy, req)
    if isinstance(outcome, Refusal):
        assert "\n" not in outcome.message()
        return
    assert outcome.name == "local" or is_valid_name(outcome.name)
    assert outcome.warning is None or "\n" not in outcome.warning
    plan = build_plan(policy, outcome.name, outcome.environment, ALICE, "/home/alice")
    check_shim(shim_lines(outcome, plan, "slurm-5.0", "/run/envsched/slurm-5.0/mnt", True, ALICE), plan)


# ------------------------------------------------------------------------------ plan.json, meta.json
_PLAN_POLICY = parse_policy_text('[environments.deb12]\npath = "/os/deb12"\n[environments.deb12.env]\n'
                                 'set = { A = "1" }\nprepend = { PATH = "/opt/bin" }\nunset = ["B"]\n', "p")
GOOD_PLAN_VIEW = build_plan(_PLAN_POLICY, "deb12", _PLAN_POLICY.get("deb12"), ALICE, "/home/alice").to_json()
GOOD_PLAN = build_plan(_PLAN_POLICY, "local", None, ALICE, "/home/alice").to_json()
GOOD_META = json.dumps({"key": "k", "environment": "deb12", "user": "alice", "uid": 1000, "owner_pid": 1,
                        "owner_start": 5, "created": 1.5})


@st.composite
def json_edits(draw, base: str) -> str:
    """A valid document with one value replaced by anything JSON can hold."""
    data = json.loads(base)
    target = data
    for _ in range(draw(st.integers(0, 3))):
        if isinstance(target, dict) and target:
            k = draw(st.sampled_from(sorted(target)))
            if draw(st.booleans()) or not isinstance(target[k], (dict, list)):
                target[k] = draw(json_values)
                break
            target = target[k]
        elif isinstance(target, list) and target:
            i = draw(st.integers(0, len(target) - 1))
            if draw(st.booleans()) or not isinstance(target[i], (dict, list)):
                target[i] = draw(json_values)
                break
            target = target[i]
    return json.dumps(data)


plan_texts = st.one_of(json_edits(GOOD_PLAN), json_edits(GOOD_PLAN_VIEW), json_values.map(json.dumps), any_text,
                       st.just("[" * 100_000), st.just('{"version": 1, "ops": ' + "[" * 5000 + "]" * 5000 + "}"))


@fuzz()
@given(text=plan_texts)
def test_plan_json(text: str, examples) -> None:
    examples.hit()
    try:
        plan = Plan.from_json(text)
    except ValueError:
        return
    plan.mount_ops, plan.process_ops
    env = {"PATH": "/bin", "B": "x"}
    apply_env_ops(plan, env)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    assert all(isinstance(c, str) for c in chdir_candidates(plan, None))
    assert Plan.from_json(plan.to_json()).to_json() == plan.to_json()


@fuzz(0.5)
@given(meta=st.one_of(json_edits(GOOD_META), json_values.map(json.dumps), any_text, st.just("[" * 100_000),
                      st.just(json.dumps({**json.loads(GOOD_META), "owner_pid": "../sys/kernel"}))),
       plan=plan_texts)
def test_pin_files(meta: str, plan: str, examples, tmp_path: Path) -> None:
    """A pin's meta.json and plan.json, whatever they hold: meta() and plan() raise ValueError or
    OSError at most; list, stale (gc) and reusable never raise."""
    examples.hit()
    pin = tmp_path / "k"
    pin.mkdir(exist_ok=True)
    (pin / "meta.json").write_text(meta, errors="surrogatepass")
    (pin / "plan.json").write_text(plan, errors="surrogatepass")
    store = PinStore(str(tmp_path))
    try:
        got = store.meta("k")
        assert isinstance(got, PinMeta) and isinstance(got.uid, int) and isinstance(got.owner_pid, int)
    except (OSError, ValueError):
        pass
    try:
        store.plan("k")
    except (OSError, ValueError):
        pass
    assert len(store.list()) == 1
    store.stale()
    store.reusable("k", Plan.from_json(GOOD_PLAN_VIEW), ALICE)


# ------------------------------------------------------------------------------ /etc/chos
chos_lines = st.one_of(
    st.sampled_from(["%SHELLS", "%ENV", "%OTHER", "# comment", "", "  %SHELLS  ", "USER", "local:/", "root:/",
                     "default:/", "default:/os/sl6", "local:/os/x"]),
    st.tuples(st.one_of(names, st.sampled_from(["default", "local", "root", "a/b", "", " sl6 "]), hostile),
              st.one_of(abspaths, hostile, st.sampled_from(["/os/sl6/", "/os/sl6", "//os//sl6", "/os/\"q\\",
                                                            "/os/é", "/os/a b"])))
    .map(lambda t: f"{t[0]}:{t[1]}"),
    hostile)


@fuzz(2)
@given(text=st.one_of(st.lists(chos_lines, max_size=12).map("\n".join), any_text))
def test_chos_import(text: str, examples) -> None:
    examples.hit()
    with bounded():
        try:
            shells, _ = parse_chos_text(text)
        except PolicyError as e:
            assert "\n" not in e.message
            return
        # what CHOS read, the converter must turn into a policy that loads (it is parsed inside)
        out = convert_chos_text(text)
    policy = parse_policy_text(out, "imported")
    paths = {alias: path for alias, path, _ in shells}
    for name, env in policy.environments.items():
        assert paths.get(name) == env.path
    for alias, path in paths.items():
        if path != "/" and alias != "default":
            assert policy.environments[alias].path == path
    assert policy.site.default == "local" or policy.site.default in policy.environments


# ------------------------------------------------------------------------------ Torque submit filter
import envsched_torque  # noqa: E402  (plugins/torque/torque, on sys.path by conftest)


def script_lines(breaks: str) -> st.SearchStrategy:
    return st.lists(st.one_of(st.sampled_from(["#!/bin/sh", "#!/bin/bash -l", "#PBS -v CHOS=sl6", "#PBS -N x",
                                               "#ENVSCHED chos=evil", "echo hi", "", "  ", "#PBS -v"]),
                              st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=breaks),
                                      max_size=30)),
                    max_size=8)


qsub_args = st.lists(st.one_of(st.sampled_from(["-v", "-V", "-N", "job", "-q", "batch", "-vCHOS=deb12",
                                                "CHOS=deb13,X=1", "CHOS", "-v CHOS=x"]), hostile), max_size=6)


@fuzz()
@given(value=st.one_of(hostile, st.lists(st.sampled_from(["CHOS=deb12", "CHOS", "=x", "A=1=2", " CHOS = x ", ""]))
                       .map(",".join)),
       args=qsub_args, script=script_lines("").map("\n".join))
def test_torque_v(value: str, args: List[str], script: str, examples) -> None:
    examples.hit()
    out = envsched_torque.v_assignments(value)
    assert all(k and k == k.strip() and "," not in k and "=" not in k for k in out)
    chos = envsched_torque.requested_chos(args, script)
    assert chos is None or isinstance(chos, str)


LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"      # str.splitlines() breaks lines there too


@fuzz()
@given(lines=script_lines("\n" + LINE_BREAKS), chos=env_names, final=st.booleans())
def test_torque_stamp(lines: List[str], chos: str, final: bool, examples, tmp_path: Path) -> None:
    """The submit filter's stamp is what the prologue reads back, and the script's first line (its
    #! line) stays as it was. (Scripts whose first line ends otherwise than with "\\n": see
    test_torque_stamp_first_line_without_newline.)"""
    examples.hit()
    script = "\n".join(lines) + ("\n" if final else "")
    out = envsched_torque.stamped(script, chos)
    path = tmp_path / "job.SC"
    path.write_text(out)
    assert envsched_torque.read_stamp(str(path)) == chos
    if script.startswith("#!"):
        assert out.split("\n", 1)[0] == script.split("\n", 1)[0]


@pytest.mark.parametrize("script", ["#!/bin/sh", "#!/bin/sh\x85echo hi\n", "#!/bin/sh\u2028echo hi\n"])
def test_torque_stamp_first_line_without_newline(script: str, tmp_path: Path) -> None:
    out = envsched_torque.stamped(script, "deb12")
    assert out.split("\n", 1)[0] == script.split("\n", 1)[0]


# ------------------------------------------------------------------------------ Grid Engine
import envsched_jsv  # noqa: E402  (plugins/uge, on sys.path by conftest)
import envsched_uge  # noqa: E402

SPOOL_LINES = st.one_of(st.sampled_from([b"JOB_ID=17", b"SGE_TASK_ID=3", b"job_owner=alice", b"job_owner root",
                                         b"queue=all.q", b"CHOS=deb12", b"ENVSCHED_REQUEST=sl6", b"JOB_ID=\xd9\xa3",
                                         b"= =", b"=", b"", b"a\\nb=c", b"x" * 10001, b"y" * 100000]),
                        st.binary(max_size=30))
spool_data = st.one_of(st.binary(max_size=300), st.lists(SPOOL_LINES, max_size=6).map(b"\n".join))


@fuzz()
@given(data=spool_data, size=st.integers(2, 40))
def test_uge_spool(data: bytes, size: int, examples, tmp_path: Path) -> None:
    """execd's job config and environment (the user's -v variables, arguments, -N, -o ...): the
    shepherd's line reading, the parsers the prolog and starter use, and the starter's advisory read."""
    examples.hit()
    if not hasattr(envsched_uge, "parse_config"):
        pytest.skip("this envsched_uge.py has no spool parsers (parse_config, parse_environment)")
    lines = envsched_uge.shepherd_lines(data, size)
    assert b"".join(lines) == data
    assert all(0 < len(x) <= size - 1 and (x.endswith(b"\n") or len(x) == size - 1 or x is lines[-1])
               for x in lines)
    for parse in (envsched_uge.parse_config, envsched_uge.parse_environment):
        try:
            with bounded():
                pairs = parse(data)
        except envsched_uge.SpoolError as e:
            assert "\n" not in str(e)
            continue
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items())
    path = tmp_path / "environment"
    path.write_bytes(data)
    try:
        pairs = envsched_uge.read_pairs(str(path))
    except envsched_uge.SpoolError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) and "\n" not in k + v for k, v in pairs.items())


SPOOL_REQUEST_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "starter.h"
int main(void)
{
    static char data[(1 << 20) + 1];
    struct es_job j;
    size_t len = fread(data, 1, sizeof data - 1, stdin);
    data[len] = '\0';
    if (es_spool_request(data, len, &j) != 1)
        return 3;
    fwrite(j.request, 1, strlen(j.request) + 1, stdout);
    fwrite(j.chos, 1, strlen(j.chos) + 1, stdout);
    return 0;
}
"""


@pytest.fixture(scope="module")
def spool_request_in_c(tmp_path_factory) -> Path:
    """plugins/uge/starter/job.c's reader of execd's `environment` (es_spool_request, the C prolog's)
    behind a small driver."""
    top = Path(__file__).resolve().parents[2] / "plugins"
    out = tmp_path_factory.mktemp("spool-c")
    (out / "driver.c").write_text(SPOOL_REQUEST_DRIVER.replace("#include <stdlib.h>", "#include <stdlib.h>\n#include <string.h>"))
    import subprocess
    subprocess.run(["cc", "-O1", "-D_GNU_SOURCE", f"-I{top / 'uge' / 'starter'}", "-o", str(out / "driver"),
                    str(out / "driver.c"), str(top / "uge" / "starter" / "job.c"), str(top / "common" / "es_proc.c")],
                   check=True)
    return out / "driver"


REQUEST_LINES = st.one_of(
    st.sampled_from([b"ENVSCHED_REQUEST=deb13", b"ENVSCHED_REQUEST=sl6", b"CHOS=deb12", b"CHOS=", b"CHOS",
                     b"=CHOS=x", b"==ENVSCHED_REQUEST=a=b", b"CHOS=a\\nb", b"X=a\\nCHOS=sl6", b"CHOS=\0x",
                     b"CHOS=" + b"z" * 300, b"X=" + b"y" * 10000, b"", b"\n", b"c", b"JOB_ID=1"]),
    st.binary(max_size=20))


@fuzz()
@given(data=st.one_of(st.lists(REQUEST_LINES, max_size=8).map(b"\n".join), st.binary(max_size=200)))
def test_spool_request_same_in_c(data: bytes, spool_request_in_c: Path, examples) -> None:
    """The C prolog's reading of ENVSCHED_REQUEST and CHOS from execd's `environment` never gives a
    request the Python prolog would not: where C reads one, Python (parse_environment) reads the same
    values and does not refuse the file; C may leave a file to Python (then the Python prolog runs)."""
    import subprocess
    examples.hit()
    r = subprocess.run([str(spool_request_in_c)], input=data, capture_output=True)
    assert r.returncode in (0, 3), r
    if r.returncode != 0:
        return
    request, chos, rest = r.stdout.split(b"\0")
    assert rest == b""
    try:
        env = envsched_uge.parse_environment(data)
    except envsched_uge.SpoolError as e:
        raise AssertionError(f"C read {r.stdout!r} where Python refuses: {e}") from None
    assert (env.get("ENVSCHED_REQUEST", ""), env.get("CHOS", "")) == \
        (request.decode("utf-8", "surrogateescape"), chos.decode("utf-8", "surrogateescape")), (data, r.stdout)


JSV_POLICY = parse_policy_text("""
[site]
default = "deb12"
user_file = ".envsched-fuzz-none"
[environments.deb12]
path = "/os/deb12"
[environments.deb13]
path = "/os/deb13"
allow_users = ["alice"]
""", "jsv-policy.toml")
jsv_words = st.sampled_from(["START", "PARAM", "ENV", "BEGIN", "SHOW", "QUIT", "ADD", "MOD", "DEL", "l_hard",
                             "l_soft", "USER", "root", "CONTEXT", "client", "server", "CMDNAME", "NONE", "CMDARGS",
                             "CMDARG0", "chos=deb12", "chos=deb13,h_vmem=1G", "chos=", "CHOS", "ENVSCHED_REQUEST",
                             "deb13", "CLIENT", "qrsh", "9" * 5000, "CMDARG²"])
jsv_lines = st.lists(st.one_of(jsv_words, hostile.map(lambda t: t.replace("\n", " ").replace("\r", " "))),
                     min_size=1, max_size=5).map(" ".join)


class Out:
    def __init__(self) -> None:
        self.lines: List[str] = []

    def write(self, text: str) -> None:
        assert text.endswith("\n") and "\n" not in text[:-1] and "\r" not in text, repr(text)
        self.lines.append(text[:-1])

    def flush(self) -> None:
        pass


@fuzz()
@given(lines=st.lists(jsv_lines, max_size=12))
def test_jsv(lines: List[str], examples) -> None:
    """Any exchange: no exception, every answer one line; then a well-formed job gets one RESULT."""
    examples.hit()
    out = Out()
    jsv = envsched_jsv.Jsv({"policy": None, "src": None, "log": None, "accept_request_var": False}, out=out)
    jsv.load = lambda: JSV_POLICY
    with bounded():
        for line in lines:
            if jsv.handle(line) is False:
                break
        mark = len(out.lines)
        for line in ("START", "PARAM USER root", "PARAM CONTEXT server", "PARAM l_hard chos=deb12", "BEGIN"):
            jsv.handle(line)
    results = [line for line in out.lines[mark:] if line.startswith("RESULT ")]
    assert len(results) == 1, out.lines[mark:]
