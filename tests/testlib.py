"""Helpers shared by the test suites (fixtures live in the conftest.py files)."""
from __future__ import annotations

from typing import List

TEST_USER = "envsched-tu"


def mount_table() -> List[str]:
    """The host mount table, without the per-mount ids that a remount may renumber."""
    with open("/proc/self/mountinfo") as f:
        return sorted(" ".join(line.split()[2:]) for line in f)
