"""The C header mirrors the Python ExitCode enum exactly, and the header compiles."""
import re
import subprocess
from pathlib import Path

from envsched.exitcodes import ExitCode

HEADER = Path(__file__).resolve().parents[2] / "plugins" / "common" / "envsched_exit.h"


def test_header_matches_enum():
    pairs = dict(re.findall(r"ENVSCHED_EXIT_([A-Z_]+)\s*=\s*(\d+)", HEADER.read_text()))
    assert {k: int(v) for k, v in pairs.items()} == {c.name: c.value for c in ExitCode}


def test_header_compiles_and_values_agree(tmp_path):
    src = tmp_path / "t.c"
    src.write_text('#include <stdio.h>\n#include "envsched_exit.h"\n'
                   'int main(void){printf("%d %d\\n", ENVSCHED_EXIT_REFUSED, ENVSCHED_EXIT_POLICY_INVALID);}\n')
    exe = tmp_path / "t"
    subprocess.run(["cc", "-Wall", "-Werror", "-I", str(HEADER.parent), "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    assert out == [str(int(ExitCode.REFUSED)), str(int(ExitCode.POLICY_INVALID))]


def test_codes_stay_clear_of_signal_range():
    assert all(c.value < 128 for c in ExitCode)
    assert len({c.value for c in ExitCode}) == len(ExitCode)
