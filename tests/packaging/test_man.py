"""The man pages (scripts/gen-man.py) and chos's bash completion, from the checkout.

chos(1) and envsched(8) come from the argparse parsers, envsched-policy(5) from docs/admin.md
checked against the schema's key sets: these tests render each page with man(1), look for every
subcommand and key, and show that a key the documentation lacks fails the generator. The
completion is run by bash with bash-completion, with the real `chos list` behind it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from envsched.cli import chos as chos_cli          # noqa: E402
from envsched.policy import schema                 # noqa: E402

GEN_MAN = REPO / "scripts" / "gen-man.py"
COMPLETION = REPO / "packaging" / "bash-completion" / "chos"
SYSTEM_PYTHON = "/usr/bin/python3"       # the generator runs with the system's argparse-manpage


def _gen(outdir: Path, *prefix: str) -> subprocess.CompletedProcess:
    return subprocess.run([SYSTEM_PYTHON, *prefix, str(GEN_MAN), "--outdir", str(outdir)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "SOURCE_DATE_EPOCH": "1700000000"})


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Dict[str, str]:
    out = tmp_path_factory.mktemp("man")
    p = _gen(out)
    assert p.returncode == 0, p.stderr
    return {f.name: str(f) for f in out.iterdir()}


def render(page: str) -> str:
    """man -l, as a user would read it; groff's warnings (bad requests, bad escapes) fail."""
    p = subprocess.run(["man", "--warnings", "-l", page], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                                                   "MANWIDTH": "100", "MAN_KEEP_FORMATTING": ""})
    assert p.returncode == 0 and p.stderr == "", p.stderr
    return p.stdout


def subcommands(p: argparse.ArgumentParser, prefix: str) -> List[str]:
    out = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                out.append(f"{prefix} {name}")
                out += subcommands(sp, f"{prefix} {name}")
    return out


def test_three_pages_written(pages):
    assert sorted(pages) == ["chos.1", "envsched-policy.5", "envsched.8"]


@pytest.mark.parametrize("page,module,prog", [("chos.1", "chos", "chos"), ("envsched.8", "envsched", "envsched")])
def test_command_page_has_every_subcommand_and_option(pages, page, module, prog):
    text = render(pages[page])
    head = text.splitlines()[0]
    assert head.startswith(f"{prog.upper()}({page[-1]})")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "SEE ALSO"):
        assert f"\n{section}\n" in text, section
    mod = __import__(f"envsched.cli.{module}", fromlist=["build_parser"])
    parser = mod.build_parser()
    for sub in subcommands(parser, prog):
        assert f"\n   {sub}\n" in text, f"no section for {sub}"
    for action in parser._actions:
        for option in action.option_strings:
            assert option in text or isinstance(action, argparse._HelpAction), option
    assert "78 POLICY_INVALID" in text and "77 REFUSED" in text


def test_policy_page_has_every_key(pages):
    text = render(pages["envsched-policy.5"])
    assert text.splitlines()[0].startswith("ENVSCHED-POLICY(5)")
    for table, keys in (("[site]", schema.SITE_KEYS), ("[defaults]", schema.DEFAULTS_KEYS),
                        ("[environments.<name>]", (schema.ENV_KEYS - {"env"}) |
                         {f"env.{op}" for op in schema.ENV_OPS_KEYS})):
        body = "\n" + text.split(f"\n   {table}\n", 1)[1]
        for key in keys:
            assert f"\n       {key}" in body, f"{table} {key}"
    assert "/etc/envsched/policy.toml" in text


@pytest.mark.parametrize("patch,message", [
    ("schema.SITE_KEYS.add('brand_new_key')",
     "[site] brand_new_key: accepted by the schema (SITE_KEYS in src/envsched/policy/schema.py) but not documented"),
    ("schema.ENV_OPS_KEYS.add('remove')", "[environments.<name>] env.remove: accepted by the schema"),
    ("schema.DEFAULTS_KEYS.discard('groups')", "[defaults] groups: documented in docs/admin.md section 3 but not in the schema"),
    ("schema.MOUNT_KEYS.add('propagation')", "[site] shared: the mount key `propagation` (schema.MOUNT_KEYS) is not described"),
])
def test_undocumented_key_fails_the_generator(tmp_path, patch, message):
    """What a developer sees who adds a policy key without its row in docs/admin.md section 3."""
    code = (f"import runpy, sys; sys.path.insert(0, {str(REPO / 'src')!r}); "
            f"from envsched.policy import schema; {patch}; "
            f"sys.argv = ['gen-man.py', '--outdir', {str(tmp_path)!r}]; "
            f"runpy.run_path({str(GEN_MAN)!r}, run_name='__main__')")
    p = subprocess.run([SYSTEM_PYTHON, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=120)
    assert p.returncode == 1
    assert message in p.stderr
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------- completion

@pytest.fixture(scope="module")
def chos_site():
    """A policy chos accepts (as root: in a root-owned directory outside /tmp) and a `chos` on
    PATH that runs this checkout."""
    if not Path("/usr/share/bash-completion/bash_completion").exists():
        pytest.skip("bash-completion is not installed (scripts/install-deps.sh installs it)")
    base = Path(tempfile.mkdtemp(prefix="envsched-comp-", dir="/run" if os.geteuid() == 0 else None))
    base.chmod(0o755)
    (base / "policy.toml").write_text('[site]\ndefault = "deb12"\n'
                                      '[environments.deb12]\npath = "/os/deb12"\ndescription = "Debian 12"\n'
                                      '[environments."sl6.4"]\npath = "/os/sl6"\n')
    (base / "bin").mkdir()
    chos = base / "bin" / "chos"
    chos.write_text(f"#!/bin/sh\nPYTHONPATH={REPO / 'src'} exec {sys.executable} -m envsched.cli.chos \"$@\"\n")
    chos.chmod(0o755)
    yield base
    shutil.rmtree(base)


def complete(site: Path, line: str, completion: Path = COMPLETION) -> List[str]:
    """COMPREPLY for the command line `line` (the cursor at its end), as bash computes it."""
    script = r'''
source /usr/share/bash-completion/bash_completion
source "$COMPLETION"
COMP_LINE=$1; COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_chos chos "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}"
'''
    p = subprocess.run(["bash", "-c", script, "_", line], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60, env={"PATH": f"{site / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8",
                                        "COMPLETION": str(completion), "HOME": str(site)})
    assert p.returncode == 0, p.stderr
    return sorted({w for w in p.stdout.split("\n") if w})


def test_completion_subcommands(chos_site):
    assert complete(chos_site, "chos ") == sorted(["list", "which", "set", "run", "shell", "submit", "image"])
    assert complete(chos_site, "chos s") == ["set", "shell", "submit"]
    assert complete(chos_site, "chos image ") == ["build", "import", "list", "rm"]


def test_completion_names_come_from_chos_list(chos_site):
    policy = chos_site / "policy.toml"
    assert complete(chos_site, f"chos --policy {policy} set ") == ["deb12", "local", "sl6.4"]
    assert complete(chos_site, f"chos --policy {policy} run s") == ["sl6.4"]
    assert complete(chos_site, f"chos --policy {policy} shell --partition debug ") == ["deb12", "local", "sl6.4"]
    assert complete(chos_site, f"chos --policy {policy} submit --env d") == ["deb12"]
    # after the name, `chos run` completes the command to run
    assert "bash" in complete(chos_site, f"chos --policy {policy} run deb12 bas")


def test_completion_options_are_the_parsers(chos_site):
    """The completion's option lists, subcommand by subcommand, are the parser's long options."""
    parser = chos_cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in sub.choices.items():
        options = sorted({o for a in sp._actions for o in a.option_strings if o.startswith("--")})
        assert complete(chos_site, f"chos {name} --") == options, name
