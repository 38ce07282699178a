"""`envsched image import | list | rm | gc | verify`: the node's admin image store.

The store is the policy's `site.image_dir` (default /var/lib/envsched/images); `--store DIR`
overrides it. rm and gc never remove a version the policy names (`image = "NAME@sha256:..."`)
or one that a job's view has mounted. list is for anyone; the rest needs root.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import time
from typing import TYPE_CHECKING, List, Optional, Tuple

from ..errors import UsageError
from ..exitcodes import ExitCode
from ..policy.model import DEFAULT_IMAGE_DIR
from .common import policy_from
from .jobargs import require_root

if TYPE_CHECKING:
    from ..images.store import ImageRecord, ImageStore
    from ..policy.model import Policy

# the formats of images/store.py (FORMATS), here without importing it: every resolver run builds
# this parser, and a job start must not pay for the image tools' imports
FORMATS = ("oci-layout", "oci-archive", "docker-archive", "rootfs-tar", "directory", "squashfs")

DEFAULT_POLICY = "/etc/envsched/policy.toml"


def _store(args: argparse.Namespace) -> "ImageStore":
    from ..images.store import ImageStore
    if args.store:
        return ImageStore(args.store)
    policy = policy_from(args)
    return ImageStore(getattr(policy.site, "image_dir", DEFAULT_IMAGE_DIR) or DEFAULT_IMAGE_DIR)


def _policy_if_any(args: argparse.Namespace) -> "Optional[Policy]":
    """The policy, also with --store, unless no policy was named and none is installed (a store
    handled on its own, e.g. on a build host)."""
    if args.store and getattr(args, "policy", None) is None and not os.path.exists(DEFAULT_POLICY):
        return None
    return policy_from(args)


def _protected(args: argparse.Namespace) -> List[str]:
    """The digests the policy pins (`image = "NAME@sha256:..."`): never removed. Read from the
    policy even with --store, unless no policy was named and none is installed."""
    policy = _policy_if_any(args)
    if policy is None:
        return []
    out = []
    store = None
    for env in policy.environments.values():
        image = getattr(env, "image", "") or ""
        if "@" in image:
            out.append(image.split("@", 1)[1])
        elif image:                     # the version jobs of that environment get now
            from ..errors import EnvschedError
            store = store or _store(args)
            try:
                out.append(store.lookup(image).digest)
            except EnvschedError:
                pass
    return out


def _name_and_digest(ref: str) -> Tuple[str, Optional[str]]:
    name, sep, digest = ref.partition("@")
    if sep and not digest:
        raise UsageError(f"{ref}: nothing after '@' (NAME@sha256:DIGEST)")
    return name, (digest if sep else None)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _exit_on(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def cmd_image_import(args: argparse.Namespace) -> int:
    require_root("envsched image import")
    # SIGTERM/SIGHUP unwind like Ctrl-C: the running tool is killed and the staging dir removed
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on)
    rec = _store(args).import_image(args.source, args.name, fmt=args.format, tag=args.tag,
                                    max_bytes=args.max_bytes)
    print(f"{rec.name} {rec.digest} {rec.size}")
    return ExitCode.OK


def cmd_image_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = []
    for name in ([args.name] if args.name else store.names()):
        versions = store.versions(name)
        if args.name and not versions:
            store.lookup(name)          # raises the "not on this node" error
        for i, rec in enumerate(versions if args.name else versions[:1]):
            rows.append((rec, i == 0))
    if args.json:
        out = []
        for rec, current in rows:
            d = json.loads(rec.to_json())
            d["current"] = current
            out.append(d)
        print(json.dumps(out, indent=1))
        return ExitCode.OK
    if not rows:
        print(f"no images in {store.root}")
        return ExitCode.OK
    print_rows(rows, bool(args.name))
    return ExitCode.OK


def print_rows(rows: List[Tuple["ImageRecord", bool]], marks: bool) -> None:
    """One line per image version: NAME, '*' for the current one (with `marks`), digest, size..."""
    width = max(len("NAME"), *(len(r.name) for r, _ in rows))
    print(f"{'NAME':<{width}}   {'DIGEST':<19}  {'SIZE':>10}  {'FORMAT':<14}  IMPORTED")
    for rec, current in rows:
        mark = "*" if current and marks else " "
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(rec.imported))
        print(f"{rec.name:<{width}} {mark} {rec.digest[:19]}  {_human(rec.size):>10}  {rec.source_format:<14}  {when}")


def _let_go_of_held(args: argparse.Namespace, digests: Optional[List[str]]) -> None:
    """The node's own mounts of these images (all with None) that no job uses (holders.py): let
    go of them first, so that only a running job's view keeps an image in use."""
    policy = _policy_if_any(args)
    if policy is None:
        return
    from ..holders import Holders, digests_in_use
    run_dir = policy.site.run_dir
    if os.path.isdir(Holders(run_dir).dir):
        Holders(run_dir).release_idle(digests_in_use(run_dir), 0.0, only=digests)


def cmd_image_rm(args: argparse.Namespace) -> int:
    require_root("envsched image rm")
    name, digest = _name_and_digest(args.ref)
    store = _store(args)
    from ..errors import EnvschedError
    try:
        targets = [r.digest for r in store.versions(name) if digest is None or r.digest.startswith(
            digest if digest.startswith("sha256:") else "sha256:" + digest)]
    except EnvschedError:
        targets = []
    _let_go_of_held(args, targets)
    for d in store.remove(name, digest, protected=_protected(args)):
        print(f"removed {name}@{d}")
    return ExitCode.OK


def cmd_image_gc(args: argparse.Namespace) -> int:
    require_root("envsched image gc")
    store = _store(args)
    _let_go_of_held(args, None)
    for item in store.gc(keep=args.keep, protected=_protected(args)):
        print(f"removed {item}")
    return ExitCode.OK


def cmd_image_verify(args: argparse.Namespace) -> int:
    require_root("envsched image verify")
    store = _store(args)
    problems = store.verify(args.name)
    for line in problems:
        print(line)
    if problems:
        return ExitCode.CHECK_FAILED
    names = [args.name] if args.name else store.names()
    print(f"{store.root}: ok ({sum(len(store.versions(n)) for n in names)} versions of {len(names)} images)")
    return ExitCode.OK


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="DIR", help="the image store (default: the policy's site.image_dir, "
                   f"else {DEFAULT_IMAGE_DIR})")
    p.add_argument("--policy", metavar="FILE", default=argparse.SUPPRESS,
                   help="site policy (default /etc/envsched/policy.toml)")


def _byte_count(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)(?:i?b)?", text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (bytes, or with K, M, G, T)")
    value = int(m.group(1)) << (10 * " kmgt".index(m.group(2) or " "))
    if value <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return value


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1 (the current version is always kept)")
    return n


def add_parsers(sub: "argparse._SubParsersAction") -> None:
    """`image` (import, list, rm, gc, verify) on `envsched`'s subcommands."""
    s = sub.add_parser("image", help="the node's image store (squashfs images named by their sha256)")
    isub = s.add_subparsers(dest="image_cmd", required=True, metavar="COMMAND")

    i = isub.add_parser("import", help="root: import an OCI layout or archive, a docker archive, a root file "
                        "system tarball, a directory or a squashfs as the new current version of NAME")
    i.add_argument("source", help="file or directory to import")
    i.add_argument("name", help="store name")
    i.add_argument("--format", choices=FORMATS, help="the source's format (default: detected)")
    i.add_argument("--tag", help="which image of a layout or archive holding several")
    i.add_argument("--max-bytes", type=_byte_count, metavar="SIZE",
                   help="refuse a source or an unpacked image larger than this (e.g. 20G)")
    _common(i)
    i.set_defaults(func=cmd_image_import)

    ls = isub.add_parser("list", help="the images (with NAME: all its versions, * = current)")
    ls.add_argument("name", nargs="?")
    ls.add_argument("--json", action="store_true")
    _common(ls)
    ls.set_defaults(func=cmd_image_list)

    r = isub.add_parser("rm", help="root: remove NAME or one version NAME@sha256:DIGEST (refused while a job "
                        "uses it or the policy names it)")
    r.add_argument("ref", metavar="NAME[@sha256:DIGEST]")
    _common(r)
    r.set_defaults(func=cmd_image_rm)

    g = isub.add_parser("gc", help="root: remove unreferenced blobs and import leftovers; with --keep N the "
                        "versions beyond each name's N newest")
    g.add_argument("--keep", type=_positive, metavar="N")
    _common(g)
    g.set_defaults(func=cmd_image_gc)

    v = isub.add_parser("verify", help="root: re-hash the blobs, one line per problem (exit 1)")
    v.add_argument("name", nargs="?")
    _common(v)
    v.set_defaults(func=cmd_image_verify)
