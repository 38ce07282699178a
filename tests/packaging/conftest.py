"""tests/packaging: man pages, bash completion and the packaging files (fast, in `make test`), and
the packages themselves (marked `packages`: `make test-packages`, which sets
ENVSCHED_TEST_PACKAGES=1; they build with dpkg-buildpackage and rpmbuild and install on this
machine)."""
from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "packages: builds, installs and removes the Debian packages "
                            "(make test-packages)")


def pytest_collection_modifyitems(config: pytest.Config, items) -> None:
    if os.environ.get("ENVSCHED_TEST_PACKAGES") == "1":
        return
    skip = pytest.mark.skip(reason="builds and installs the packages: make test-packages")
    for item in items:
        if "packages" in item.keywords:
            item.add_marker(skip)
