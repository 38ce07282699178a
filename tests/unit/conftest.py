"""What the unit tests share."""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest


@pytest.fixture
def trusted_dir(tmp_path):
    """A directory root trusts a policy in (as root, /tmp is rightly not trusted): a fresh one
    under /run, removed afterwards; the test's own tmp_path when not root."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    base = Path(f"/run/envsched-test-unit-{secrets.token_hex(6)}")
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)
