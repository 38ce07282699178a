"""Hypothesis on the parsers issue #11 added, each of which sees bytes a user or a damaged file can
write. The only allowed outcomes are the documented ones (a value, or ValueError / the project's
own error); anything else, a hang, or a broken property is a failing test.

    requests        names.py: [user:]NAME[@SELECTOR] -> an EnvRequest that writes back the same
                    text, or None
    image_record    images/store.py: a blob's meta JSON -> an ImageRecord or ValueError
    tree_stamp      versions.py: a stamp -> a TreeStamp or ValueError
    builder_report  userimage.py: what a user's view builder reports to root -> checked values that
                    become env operations and shim lines as meant, or SetupError
"""
from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import example, given, strategies as st

from fuzzlib import bounded, fuzz

from envsched.enter import apply_env_ops
from envsched.errors import SetupError
from envsched.identity import UserInfo
from envsched.images.store import ImageRecord
from envsched.names import EnvRequest, is_selector, is_valid_name, parse_request
from envsched.plan import build_plan, with_identity
from envsched.policy.load import parse_policy_text
from envsched.resolve import Decision
from envsched.shim import shim_lines
from envsched.userimage import check_report
from envsched.versions import TreeStamp

HEX = "0123456789abcdef"
DIGEST = "sha256:" + HEX * 4
ALICE = UserInfo(name="alice", uid=1000, gid=1000, gids=(1000,), groups=("alice",), home="/home/alice",
                 shell="/bin/sh")
no_surrogates = st.characters(blacklist_categories=("Cs",))
hostile = st.text(st.one_of(no_surrogates, st.sampled_from(list("\0\n\r\t @:/.\x1b\u2028'\"\\"))), max_size=90)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | hostile,
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(hostile, kids, max_size=3),
                           max_leaves=8)
parts = st.sampled_from(["user:", "deb12", "@", "sha256:", HEX * 4, HEX[:12], "v1", "local", "..", "/", ":", "", "x"])
request_like = st.lists(parts, max_size=6).map("".join)


@fuzz()
@given(value=st.one_of(hostile, request_like))
@example(value="user:app@sha256:" + HEX * 4)
def test_requests(value: str, examples) -> None:
    examples.hit()
    got = parse_request(value)
    if got is None:
        return
    assert isinstance(got, EnvRequest) and got.text == value
    assert is_valid_name(got.name) and (got.selector is None or is_selector(got.selector))
    assert "/" not in value and "\n" not in value and "\0" not in value
    assert not (got.user and got.name == "local")


@st.composite
def json_edits(draw, base: dict) -> str:
    data = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(data)))
        if draw(st.booleans()):
            data[key] = draw(json_values)
        elif draw(st.booleans()):
            data.pop(key)
        else:
            data[draw(hostile)] = draw(json_values)
    return json.dumps(data)


GOOD_RECORD = {"name": "ci", "digest": DIGEST, "path": f"/var/lib/envsched/images/blobs/sha256/{HEX * 4}.sqfs",
               "size": 4096, "source": "ci.tar", "source_format": "docker-archive", "source_digest": "",
               "env": ["A=1", "PATH=/usr/bin:/bin"], "workdir": "/opt", "created": "", "imported": 1.5,
               "stat_key": [1, 4096, 5, 6]}


@fuzz()
@given(text=st.one_of(json_edits(GOOD_RECORD), json_values.map(json.dumps), hostile, st.just("[" * 100_000)))
def test_image_record(text: str, examples) -> None:
    examples.hit()
    with bounded():
        try:
            rec = ImageRecord.from_json(text)
        except ValueError:
            return
    assert rec.digest.startswith("sha256:") and len(rec.digest) == 71
    assert all("=" in e and "\n" not in e and "\0" not in e for e in rec.env)
    assert ImageRecord.from_json(rec.to_json()) == rec


GOOD_STAMP = {"environment": "deb12", "digest": DIGEST, "version": "2026.12", "path": "/os/deb12",
              "stamped": 1.5, "files": 10, "bytes": 100, "root_key": [1, 2, 3]}


@fuzz()
@given(text=st.one_of(json_edits(GOOD_STAMP), json_values.map(json.dumps), hostile, st.just("{" * 100_000)))
def test_tree_stamp(text: str, examples) -> None:
    examples.hit()
    with bounded():
        try:
            st_ = TreeStamp.from_json(text)
        except ValueError:
            return
    assert st_.digest.startswith("sha256:") and st_.path.startswith("/")
    assert TreeStamp.from_json(st_.to_json()) == st_


GOOD_REPORT = {"source": "/home/alice/.local/share/envsched/images/blobs/sha256/x.sqfs", "digest": DIGEST,
               "image_env": ["A=1", "PATH=/opt/app/bin:/usr/bin"], "workdir": "/opt/app"}
env_entries = st.lists(st.one_of(st.sampled_from(["A=1", "PATH=/x", "CHOS=forged", "CHOS_DIGEST=x", "=x", "A"]),
                                 st.tuples(st.text(string.ascii_letters + "_-1 ", min_size=0, max_size=6), hostile)
                                 .map("=".join)), max_size=5)
_POLICY = parse_policy_text('[user_images]\nenabled = true\n[user_images.env]\nset = { LANG = "C" }\n', "p")


@fuzz()
@given(report=st.one_of(json_edits(GOOD_REPORT), json_values,
                        st.fixed_dictionaries({"source": hostile, "digest": st.sampled_from(["", DIGEST]) | hostile,
                                               "image_env": env_entries, "workdir": hostile})))
def test_builder_report(report: Any, examples) -> None:
    """Whatever a user's builder wrote: refused, or values that become exactly the env operations
    meant, and shim lines the C side splits back (no newline anywhere, CHOS and CHOS_DIGEST ours)."""
    examples.hit()
    if isinstance(report, str):
        try:
            report = json.loads(report)
        except ValueError:
            return
    if not isinstance(report, dict):
        return
    try:
        source, digest, image_env, workdir = check_report(report)
    except SetupError:
        return
    env = _POLICY.user_images
    from envsched.resolve import user_image_environment
    from envsched.names import EnvRequest as R
    e = user_image_environment(env, R("app", None, True))
    d = Decision("user:app", "option", e)
    plan = with_identity(build_plan(_POLICY, d.name, e, ALICE, "/home/alice"), source, digest, image_env, workdir)
    got = {"CHOS": "old", "CHOS_DIGEST": "old"}
    apply_env_ops(plan, got)
    assert got["CHOS"] == "user:app" and got.get("CHOS_DIGEST") == (digest or None) and got["LANG"] == "C"
    for line in shim_lines(d, plan, "k", "/run/envsched/k/mnt", False, ALICE):
        assert "\n" not in line and "\0" not in line
