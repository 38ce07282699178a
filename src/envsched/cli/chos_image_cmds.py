"""`chos image import | build | list | rm`: a user's own images, in a store of their own.

Everything here runs as the user, without privilege: skopeo and umoci unpack rootless, tar keeps
no owners, mksquashfs writes a file the user owns. The store is `[user_images] store` (default
~/.local/share/envsched/images), laid out like the admins' (images/store.py) and checked to be the
user's. The site decides whether users may have images at all, who, and how large they may be
([user_images] in the policy); the same rules refuse them again when a job starts.

Jobs run them as `user:NAME` (sbatch --chos=user:NAME, qsub -l chos=user:NAME, chos run
user:NAME -- CMD), entered through FUSE as the user (userimage.py): root never mounts them.
"""
from __future__ import annotations

import argparse
import os
import signal
from typing import TYPE_CHECKING, List, Tuple

from ..chosen import user_store_path
from ..errors import NotPermitted, UsageError
from ..exitcodes import ExitCode
from ..identity import current_user
from ..resolve import Request, user_image_denial
from ..service import RequestRefused
from .common import policy_from

if TYPE_CHECKING:
    from ..images.store import ImageStore

#: What `chos image build --from-dir` leaves out of a directory that was a whole system: the view
#: brings its own (kernel file systems, /dev, /tmp, homes from the site, the run directory), and
#: what is left is the workstation's, not the environment's.
HOST_ONLY = ("proc", "sys", "dev", "run", "tmp", "var/tmp", "home", "root", "mnt", "media", "srv",
             "lost+found", "boot", "var/cache/apt/archives/*.deb", "var/log/*", "swapfile", ".snapshots")


def _user_store(args: argparse.Namespace, writing: bool) -> "Tuple[ImageStore, int]":
    """The caller's own store, once the policy says they may have one."""
    from ..images.store import ImageStore
    if os.geteuid() == 0:
        raise NotPermitted("chos image is a user's command (as root, use `envsched image`)")
    policy = policy_from(args)
    user = current_user()
    why = user_image_denial(policy.user_images, Request(user.name, groups=user.groups), identity_only=True)
    if why:
        raise RequestRefused(f"your own images: {why}")
    path = user_store_path(policy.user_images, user)
    if writing:
        _make_dirs(path)
    return ImageStore(path, owner=os.getuid()), policy.user_images.max_size


def _make_dirs(path: str) -> None:
    """The store's directory and its missing parents, the user's own, 0755 (nobody else writes)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path.rstrip("/"))
    if parent and not os.path.isdir(parent):
        _make_dirs(parent)
    os.mkdir(path, 0o755)


def _exit_on(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _import(args: argparse.Namespace, source: str, fmt, exclude=()) -> int:
    for sig in (signal.SIGTERM, signal.SIGHUP):     # unwind like Ctrl-C: the staging dir is removed
        signal.signal(sig, _exit_on)
    store, max_size = _user_store(args, writing=True)
    rec = store.import_image(source, args.name, fmt=fmt, tag=getattr(args, "tag", None), max_bytes=max_size,
                             exclude=exclude)
    print(f"user:{rec.name} {rec.digest} {rec.size} (run it with --chos=user:{rec.name})")
    return ExitCode.OK


def cmd_import(args: argparse.Namespace) -> int:
    return _import(args, args.source, args.format)


def cmd_build(args: argparse.Namespace) -> int:
    exclude = list(HOST_ONLY) + list(args.exclude)
    if args.output:
        return _pack(args, exclude)
    return _import(args, args.from_dir, "directory", exclude)


def _pack(args: argparse.Namespace, exclude: List[str]) -> int:
    """A squashfs file of the directory, for another machine (`chos image import FILE NAME` there)."""
    import shutil
    import tempfile
    from ..images import importer
    out = os.path.abspath(args.output)
    if os.path.lexists(out):
        raise UsageError(f"{out} exists already")
    staging = tempfile.mkdtemp(prefix=".chos-image-", dir=os.path.dirname(out))
    try:
        built = importer.build(args.from_dir, staging, fmt="directory", owner=os.getuid(), exclude=exclude)
        os.rename(built.blob, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{out} (copy it to the cluster, then: chos image import {os.path.basename(out)} {args.name})")
    return ExitCode.OK


def cmd_list(args: argparse.Namespace) -> int:
    from .image_cmds import print_rows
    store, _ = _user_store(args, writing=False)
    if not os.path.isdir(store.root):
        print(f"no images of yours yet ({store.root}); `chos image import SOURCE NAME` makes one")
        return ExitCode.OK
    rows = []
    for name in ([args.name] if args.name else store.names()):
        versions = store.versions(name)
        if args.name and not versions:
            store.lookup(name)
        rows += [(rec, i == 0) for i, rec in enumerate(versions)]
    if not rows:
        print(f"no images of yours yet ({store.root})")
        return ExitCode.OK
    print_rows(rows, True)
    print("(* current: what --chos=user:NAME runs; NAME@sha256:<12 or more hex digits> runs another)")
    return ExitCode.OK


def cmd_rm(args: argparse.Namespace) -> int:
    store, _ = _user_store(args, writing=False)
    name, _, digest = args.ref.partition("@")
    for d in store.remove(name, digest or None):
        print(f"removed user:{name}@{d}")
    return ExitCode.OK


def add_parser(sub: "argparse._SubParsersAction") -> None:
    s = sub.add_parser("image", help="your own images: import, build, list, rm (where the site allows them)")
    isub = s.add_subparsers(dest="image_cmd", required=True, metavar="COMMAND")
    i = isub.add_parser("import", help="import an OCI or docker archive, an OCI layout, a root file system "
                        "tarball, a directory or a squashfs file as your image NAME")
    i.add_argument("source")
    i.add_argument("name")
    i.add_argument("--format", choices=("oci-layout", "oci-archive", "docker-archive", "rootfs-tar", "directory",
                                        "squashfs"), help="the source's format (default: detected)")
    i.add_argument("--tag", help="which image of a layout or archive holding several")
    i.set_defaults(func=cmd_import)
    b = isub.add_parser("build", help="turn a directory (a workstation's tree) into your image NAME, leaving "
                        "out host-only paths (" + ", ".join(HOST_ONLY[:8]) + ", ...)")
    b.add_argument("--from-dir", required=True, metavar="DIR")
    b.add_argument("--exclude", action="append", default=[], metavar="PATH",
                   help="also leave out PATH (relative to DIR; wildcards as mksquashfs -wildcards)")
    b.add_argument("-o", "--output", metavar="FILE",
                   help="write a squashfs file instead (to copy to the cluster and `chos image import` there)")
    b.add_argument("name")
    b.set_defaults(func=cmd_build)
    ls = isub.add_parser("list", help="your images (NAME: every version of it)")
    ls.add_argument("name", nargs="?")
    ls.set_defaults(func=cmd_list)
    r = isub.add_parser("rm", help="remove your image NAME (every version) or NAME@sha256:DIGEST")
    r.add_argument("ref")
    r.set_defaults(func=cmd_rm)
