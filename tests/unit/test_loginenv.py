"""The login shells' snippet (src/envsched/loginenv.py), run by the shells that read /etc/profile:
what it does to the variables after a profile reset them, with hostile values, read twice."""
from __future__ import annotations

import shutil
import subprocess
from typing import Dict, List, Optional

import pytest

from envsched.enter import apply_env_ops
from envsched.loginenv import snippet, sh_quote
from envsched.plan import Plan

SHELLS = [s for s in (["dash"], ["bash"], ["bash", "--posix"], ["busybox", "sh"]) if shutil.which(s[0])]
HOSTILE = "a'b\"c $HOME `id` $(id) \\ * ? [x] ${X} ~ # ; & | < > !\t end"


def env_op(action: str, name: str, value: Optional[str]) -> Dict[str, object]:
    return {"op": "env", "action": action, "name": name, "value": value}


def run(shell: List[str], ops, env: Dict[str, str], times: int = 1, tmp_path=None) -> Dict[str, str]:
    """Source the snippet `times` times under `set -u` in `shell` with exactly `env`; the result."""
    f = tmp_path / "zz-envsched.sh"
    f.write_text(snippet(ops))
    script = "set -u\n" + f". {f}\n" * times + "env -0\n"
    p = subprocess.run(shell + ["-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    out = dict(kv.split("=", 1) for kv in p.stdout.decode().split("\0") if "=" in kv)
    for k in ("PWD", "SHLVL", "_", "OLDPWD"):        # what the shells add themselves
        out.pop(k, None)
    return out


@pytest.fixture(params=SHELLS, ids=" ".join)
def shell(request):
    return request.param


OPS = [env_op("set", "LANG", "C.UTF-8"), env_op("set", "WEIRD", HOSTILE),
       env_op("prepend", "PATH", "/opt/site/bin"), env_op("prepend", "PATH", "/opt/s p*/[b]in"),
       env_op("append", "MANPATH", "/opt/site/man"), env_op("append", "EMPTY_BEFORE", "v"),
       env_op("unset", "DROP_ME", None), env_op("set", "CHOS", "deb12")]
PROFILE = {"PATH": "/usr/local/bin:/usr/bin:/bin", "MANPATH": "/usr/share/man", "DROP_ME": "x", "EMPTY_BEFORE": ""}


def test_after_a_profile_reset_the_result_is_what_entering_gives(shell, tmp_path):
    """Variables as /etc/profile left them: the snippet does exactly what enter.py's operations do."""
    expected = dict(PROFILE)
    apply_env_ops(Plan("deb12", "tree", "/os/deb12", OPS), expected)
    assert run(shell, OPS, PROFILE, tmp_path=tmp_path) == expected
    assert expected["PATH"] == "/opt/s p*/[b]in:/opt/site/bin:/usr/local/bin:/usr/bin:/bin"
    assert expected["WEIRD"] == HOSTILE


def test_reading_it_again_changes_nothing(shell, tmp_path):
    once = run(shell, OPS, PROFILE, tmp_path=tmp_path)
    assert run(shell, OPS, once, times=3, tmp_path=tmp_path) == once
    assert run(shell, OPS, PROFILE, times=2, tmp_path=tmp_path) == once


def test_a_value_already_in_the_variable_is_not_added_again(shell, tmp_path):
    """Where the profile kept the variable (or added to it), prepend and append only make sure
    that the value is one of its parts; glob characters in the value are not patterns."""
    ops = [env_op("prepend", "PATH", "/opt/site/bin"), env_op("append", "P2", "/x/[a]*")]
    env = {"PATH": "/usr/local/bin:/opt/site/bin:/usr/bin", "P2": "/x/a1:/x/[a]*:/y"}
    assert run(shell, ops, env, tmp_path=tmp_path) == env
    env = {"PATH": "/usr/bin", "P2": "/x/a1:/y"}            # "[a]*" must not match "a1"
    assert run(shell, ops, env, tmp_path=tmp_path) == {"PATH": "/opt/site/bin:/usr/bin", "P2": "/x/a1:/y:/x/[a]*"}


def test_unset_and_empty_variables(shell, tmp_path):
    ops = [env_op("prepend", "NEW1", "/a"), env_op("append", "NEW2", "/b"), env_op("unset", "GONE", None),
           env_op("unset", "NEVER_SET", None)]
    got = run(shell, ops, {"GONE": "1", "NEW2": "", "PATH": "/usr/bin:/bin"}, tmp_path=tmp_path)
    assert got == {"NEW1": "/a", "NEW2": "/b", "PATH": "/usr/bin:/bin"}


@pytest.mark.parametrize("value,path,expected", [
    (None, "/usr/bin", "/opt/site/bin:/usr/bin"),
    ("", "/usr/bin", "/opt/site/bin:/usr/bin"),
    ("/tools/bin", "/usr/bin", "/tools/bin:/opt/site/bin:/usr/bin"),
    ("/tools/bin", "/usr/bin:/tools/bin", "/opt/site/bin:/usr/bin:/tools/bin"),
    ("/t o*ls/bin:/x", "/usr/bin", "/t o*ls/bin:/x:/opt/site/bin:/usr/bin"),
])
def test_shims_path_prepend_variable(shell, tmp_path, value, path, expected):
    """ENVSCHED_PATH_PREPEND: a shim's own PATH entries (Grid Engine's host tools) first again,
    after the policy's operations, unless PATH has them already."""
    env = {k: v for k, v in (("ENVSCHED_PATH_PREPEND", value), ("PATH", path)) if v is not None}
    got = run(shell, [env_op("prepend", "PATH", "/opt/site/bin")], env, tmp_path=tmp_path)
    assert got["PATH"] == expected, got


def test_names_a_shell_cannot_take_are_left_out(tmp_path):
    text = snippet([env_op("set", "BAD-NAME", "x"), env_op("set", "A;id", "x"), env_op("unset", "$(id)", None),
                    env_op("set", "OK_1", "y")])
    code = "".join(line for line in text.splitlines(True) if not line.startswith("#"))
    assert code.startswith("OK_1='y'; export OK_1\n")
    assert "BAD-NAME" not in code and "id" not in code
    assert "OK_1='y'; export OK_1\n" in text


def test_quoting():
    assert sh_quote("it's") == "'it'\\''s'"
    assert sh_quote("") == "''"
