"""The admin image store (squashfs images named by their sha256) and the import pipeline.

store.ImageStore is what the rest of envsched uses (lookup + check_unchanged at job start);
importer.py turns OCI layouts/archives, docker archives, root file system tarballs,
directories and squashfs files into one squashfs with the real tools (tools.py).
"""
from .store import (  # noqa: F401
    DEFAULT_IMAGE_DIR,
    DIGEST_RE,
    ImageChanged,
    ImageInUse,
    ImageNotFound,
    ImageRecord,
    ImageStore,
    ImportFailed,
)
