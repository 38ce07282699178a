"""An environment's launcher (#12): the shim's `launcher` lines, the argv the Python entry execs,
and the C helper every shim shares (plugins/common/es_launch.c), compiled here with a small driver."""
from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from envsched.enter import LAUNCHER_BROKEN, find_program, launched_argv
from envsched.exitcodes import ExitCode
from envsched.identity import UserInfo
from envsched.plan import Plan, build_plan
from envsched.policy.load import parse_policy_text
from envsched.resolve import Decision
from envsched.shim import shim_lines

REPO = Path(__file__).resolve().parents[2]
COMMON = REPO / "plugins" / "common"
ALICE = UserInfo(name="alice", uid=1000, gid=1000, gids=(1000,), groups=("alice",), home="/home/alice",
                 shell="/bin/bash")
POLICY = """\
[environments.mck]
path = "/os/deb12"
launcher = ["/opt/mckernel/bin/mcexec", "-n", "2 cores", "--x=y z"]
env.set = { A = "1" }

[environments.plain]
path = "/os/deb12"
"""


def plan_of(name: str) -> Plan:
    pol = parse_policy_text(textwrap.dedent(POLICY), "policy.toml")
    return build_plan(pol, name, pol.environments[name], ALICE, "/work")


def test_the_plan_and_the_shim_carry_the_launcher_in_order():
    plan = plan_of("mck")
    assert plan.launcher == ["/opt/mckernel/bin/mcexec", "-n", "2 cores", "--x=y z"]
    assert Plan.from_json(plan.to_json()).launcher == plan.launcher
    decision = Decision("mck", "option", None)
    lines = shim_lines(decision, plan, "slurm-1-0", "/run/envsched/slurm-1-0/mnt", False, ALICE)
    assert [line for line in lines if line.startswith("launcher ")] == [
        "launcher /opt/mckernel/bin/mcexec", "launcher -n", "launcher 2 cores", "launcher --x=y z"]
    assert lines.index("launcher /opt/mckernel/bin/mcexec") > lines.index("env set A 1")
    plain = plan_of("plain")
    assert plain.launcher == []
    assert not [line for line in shim_lines(decision, plain, "k", None, False, ALICE) if line.startswith("launcher")]


def test_launched_argv_prefixes_the_launcher_and_finds_the_program(tmp_path):
    bin1, bin2 = tmp_path / "bin1", tmp_path / "bin2"
    bin1.mkdir()
    bin2.mkdir()
    (bin1 / "app").write_text("not executable")            # skipped, as execvp skips it
    (bin1 / "tool").mkdir()                                 # a directory: skipped
    for name in ("app", "tool"):
        (bin2 / name).write_text("#!/bin/sh\n")
        (bin2 / name).chmod(0o755)
    env = {"PATH": f"{bin1}::{bin2}"}
    plan = plan_of("mck")
    assert launched_argv(plan, ["app", "a b", ""], env) == plan.launcher + [str(bin2 / "app"), "a b", ""]
    assert launched_argv(plan, ["tool"], env)[-1] == str(bin2 / "tool")
    assert launched_argv(plan, ["./app", "x"], env)[-2:] == ["./app", "x"]        # a path: as it is
    assert launched_argv(plan, ["missing"], env)[-1] == "missing"                 # the launcher says so
    assert launched_argv(plan_of("plain"), ["app", "x"], env) == ["app", "x"]     # nothing without one
    assert find_program("app", {}) == "app"
    assert find_program("sh", {}) == "/bin/sh"                                   # execvp's default PATH


def _c_cases():
    text = (COMMON / "es_launch.c").read_text()
    body = text[text.index("int es_launch_exit_code"):]
    body = body[:body.index("default:")]
    return {getattr(errno, name) for name in re.findall(r"case (E[A-Z]+):", body)}


def test_the_exit_codes_agree_with_the_c_helper():
    assert set(LAUNCHER_BROKEN) == _c_cases()
    assert ExitCode.ENV_BROKEN == 69 and ExitCode.EXEC_FAILED == 126


DRIVER = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "es_launch.h"

static char shim[65536];

int main(int argc, char **argv)
{
    static struct es_launcher l;
    if (strcmp(argv[1], "parse") == 0) {          /* stdin: shim text -> one argument a line */
        size_t n = fread(shim, 1, sizeof shim - 1, stdin);
        shim[n] = '\0';
        if (es_launcher_parse(shim, &l) != 0) { puts("ERR"); return 0; }
        for (int i = 0; i < l.argc; i++) printf("[%s]\n", l.argv[i]);
        return 0;
    }
    if (strcmp(argv[1], "encode") == 0) {         /* args: tell, fields... -> the value, decoded back */
        char out[4096], back[4096], *got[ES_LAUNCH_MAX_ARGS + 2];
        int tell = -1;
        int len = es_launch_encode(out, sizeof out, atoi(argv[2]), argv + 3, argc - 3);
        if (len < 0) { puts("ERR"); return 0; }
        printf("%s\n", out);
        int n = es_launch_decode(out, back, sizeof back, got, ES_LAUNCH_MAX_ARGS + 1, &tell);
        printf("%d %d\n", n, tell);
        for (int i = 0; i < n; i++) printf("[%s]\n", got[i]);
        return 0;
    }
    if (strcmp(argv[1], "decode") == 0) {          /* arg: a value -> its fields, or ERR */
        size_t cap = strlen(argv[2]) + 1;
        char *back = malloc(cap), *got[4];
        int tell = -1, n = es_launch_decode(argv[2], back, cap, got, 3, &tell);
        if (n < 0) { puts("ERR"); return 0; }
        for (int i = 0; i < n; i++) printf("[%s]\n", got[i]);
        return got[n] != NULL;
    }
    if (strcmp(argv[1], "resolve") == 0) {        /* args: name, PATH */
        char buf[256];
        puts(es_launch_resolve(argv[2], argc > 3 ? argv[3] : NULL, buf, sizeof buf));
        return 0;
    }
    if (strcmp(argv[1], "argv") == 0) {           /* shim on stdin; args: program, args... */
        size_t n = fread(shim, 1, sizeof shim - 1, stdin);
        shim[n] = '\0';
        es_launcher_parse(shim, &l);
        char **out = es_launch_argv(&l, argv[2], argv + 3, argc - 3);
        for (int i = 0; out[i]; i++) printf("[%s]\n", out[i]);
        return 0;
    }
    printf("%d %d %d\n", es_launch_exit_code(ENOENT), es_launch_exit_code(EACCES), es_launch_exit_code(E2BIG));
    return 0;
}
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = tmp_path_factory.mktemp("es_launch")
    (d / "t.c").write_text(DRIVER)
    exe = d / "t"
    subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-fsanitize=address,undefined",
                    "-I", str(COMMON), "-o", str(exe), str(d / "t.c"), str(COMMON / "es_launch.c")], check=True)

    def run(*args, stdin=""):
        return subprocess.run([str(exe), *args], input=stdin, stdout=subprocess.PIPE, text=True, check=True,
                              env={"ASAN_OPTIONS": "detect_leaks=0"}).stdout
    return run


def test_c_parse_takes_the_launcher_lines_in_order(driver):
    shim = "environment mck\nlauncher /opt/mck/mcexec\nenv set A 1\nlauncher -n\nlauncher 2 cores\nhome /h\n"
    assert driver("parse", stdin=shim) == "[/opt/mck/mcexec]\n[-n]\n[2 cores]\n"
    assert driver("parse", stdin="environment x\nhome /h") == ""
    assert driver("parse", stdin="launcher mcexec\n") == "ERR\n"                 # not an absolute path
    assert driver("parse", stdin="launcher /x\n" * 64) == "[/x]\n" * 64
    assert driver("parse", stdin="launcher /x\n" * 65) == "ERR\n"                # too many
    assert driver("parse", stdin="launcher /" + "x" * 20000 + "\n") == "ERR\n"   # too long


def test_c_argv_is_launcher_then_program_then_arguments(driver):
    out = driver("argv", "/bin/app", "a b", "", stdin="launcher /opt/l\nlauncher -x\n")
    assert out == "[/opt/l]\n[-x]\n[/bin/app]\n[a b]\n[]\n"


def test_c_encode_decode_round_trip_and_malformed_values(driver):
    out = driver("encode", "1", "/opt/l", "a:b", "12:x", "prog name").splitlines()
    assert out[0] == "1:1:4:6:/opt/l3:a:b4:12:x9:prog name"
    assert out[1:] == ["4 1", "[/opt/l]", "[a:b]", "[12:x]", "[prog name]"]
    assert driver("decode", "1:0:2:2:/l1:p") == "[/l]\n[p]\n"
    for bad in ("", "1:", "2:0:1:1:x", "1:2:1:1:x", "1:0:0:", "1:0:4:1:a1:b1:c1:d",   # version, tell, count
                "1:0:1:2:x", "1:0:1:1:xy", "1:0:1:0:", "1:0:1:-1:x", "1:0:1:x", "1:0:1:99999999:x",
                "1:0:2:1:x", "1:00:1:1:x", "1:0:0001:1:x", "1:0:01:1:x", "1:0:1:01:x"):
        assert driver("decode", bad) == "ERR\n", bad


def test_c_resolve_is_execvp_s_search(driver, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "p").write_text("")                        # not executable
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "p").write_text("")
    (tmp_path / "e" / "p").chmod(0o755)
    assert driver("resolve", "p", f"{tmp_path}/d::{tmp_path}/e").strip() == f"{tmp_path}/e/p"
    assert driver("resolve", "./p", f"{tmp_path}/e").strip() == "./p"
    assert driver("resolve", "q", f"{tmp_path}/e").strip() == "q"
    assert driver("resolve", "sh").strip() == "/bin/sh"                           # no PATH: execvp's default
    assert driver("resolve", "p", "/" + "x" * 300).strip() == "p"      # does not fit: not a candidate
    assert driver("codes").split() == ["69", "69", "126"]
