"""The `envsched` parser built for the one subcommand on the command line (#13's cold path: a shim's
`prepare` or `release` builds no other parser), and the whole parser whenever that is not clear."""
from __future__ import annotations

import pytest

from envsched.cli.common import command_named
from envsched.cli.envsched import build_parser


@pytest.mark.parametrize("argv, wanted", [
    (["release", "--key", "k"], "release"),
    (["--policy", "/p.toml", "prepare", "--key", "k"], "prepare"),
    (["--policy=/p.toml", "validate"], "validate"),
    (["--help", "prepare"], None),
    (["-h"], None),
    ([], None),
    (["--policy", "/p.toml"], None),
])
def test_the_subcommand_is_found_before_parsing(argv, wanted):
    assert command_named(argv) == wanted


def test_only_the_wanted_subcommand_is_built_and_parses_as_before():
    one, every = build_parser("release"), build_parser()
    choices = lambda p: sorted(next(a for a in p._actions if a.dest == "cmd").choices)  # noqa: E731
    assert choices(one) == ["release"]
    assert len(choices(every)) > 10
    argv = ["--policy", "/p.toml", "release", "--key", "slurm-1-0", "--quiet"]
    a, b = one.parse_args(argv), every.parse_args(argv)
    assert vars(a) == vars(b)


def test_an_unknown_subcommand_gets_the_whole_list(capsys):
    p = build_parser("relase")
    with pytest.raises(SystemExit):
        p.parse_args(["relase"])
    err = capsys.readouterr().err
    assert "invalid choice: 'relase'" in err and "'release'" in err and "'prepare'" in err
