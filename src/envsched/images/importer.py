"""Turn an image source into one squashfs file in a staging directory, with the real tools.

    oci-layout / oci-archive / docker-archive
        skopeo copy SOURCE -> oci:staging/layout:img   (skopeo checks every blob's digest)
        skopeo inspect --raw / --config                (manifest digest, Env, WorkingDir)
        umoci unpack --image layout:img bundle         (layers in order, whiteouts, hard links,
                                                        ownership kept: runs as root)
    rootfs-tar      tar -x -p --same-owner --numeric-owner (any compression GNU tar reads)
    directory       read in place
    squashfs        copied as it is, after `unsquashfs -s` and a look at its root
    then            mksquashfs ROOTFS blob.sqfs -noappend -comp zstd|gzip -mkfs-time 0

An image from OCI or docker gets /.envsched-image.json (its Env and WorkingDir) so that the
blob's digest, the image's identity, covers what the job gets besides the files.

The layer semantics are the tools' job, not ours (enroot and Shifter's gateway convert layers
with their own code; Charliecloud's ch-convert and this module leave it to umoci). What we
take from the tools is checked: the manifest and config parse, Env entries are NAME=value,
the root file system is a directory with the usual top-level directories, and unsquashfs
accepts the result. `max_bytes` bounds the source and what it unpacks to, checked before
and while unpacking, so a huge image is refused before it fills the disk.

Everything is written under `staging`, which the caller (ImageStore.import_image) creates
and always removes; nothing here touches the store.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Dict, List, Optional, Sequence, Tuple

from ..exitcodes import ExitCode
from ..names import show
from . import tools
from .store import FORMATS, ImportFailed, env_entry_problem  # noqa: F401 - FORMATS is ours too

SQUASHFS_MAGIC = b"hsqs"
#: an unpacked root file system must have at least one of these at its top
USUAL_TOP = ("bin", "etc", "lib", "lib64", "sbin", "usr", "opt", "var")
REF_ANNOTATION = "org.opencontainers.image.ref.name"
#: written at the root of an image imported from OCI or docker: its Env and WorkingDir (see
#: _write_config_file)
CONFIG_FILE = ".envsched-image.json"
MAX_JSON = 16 << 20            # an index.json / manifest.json / config larger than this is refused
TOOL_TIMEOUT = 3600.0          # no single tool run may take longer than an hour


@dataclass(frozen=True)
class Built:
    """What build() made: the squashfs in staging and what the image said about itself."""
    blob: str
    source_format: str
    source_digest: str
    env: Tuple[str, ...]
    workdir: str
    created: str


def fail(message: str, detail: Optional[str] = None, usage: bool = False) -> ImportFailed:
    return ImportFailed(message, detail=detail, code=ExitCode.USAGE if usage else ExitCode.ENV_BROKEN)


# -- sizes -----------------------------------------------------------------------------------
def tree_size(path: str, limit: Optional[int] = None) -> int:
    """Apparent bytes of the files under `path` (each hard-linked file once); stops counting
    once past `limit`."""
    total = 0
    seen = set()
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
                elif stat.S_ISREG(st.st_mode):
                    if st.st_nlink > 1:
                        if (st.st_dev, st.st_ino) in seen:
                            continue
                        seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
                if limit is not None and total > limit:
                    return total
    return total


def too_big(max_bytes: int, what: str) -> ImportFailed:
    return fail(f"image larger than {max_bytes} bytes: {what}")


def size_watch(path: str, max_bytes: Optional[int], source: str):
    """A tools.run watcher that stops an unpack once `path` holds more than max_bytes."""
    if max_bytes is None:
        return None

    def watch() -> Optional[str]:
        if tree_size(path, max_bytes) > max_bytes:
            return f"image larger than {max_bytes} bytes: {source} unpacks to more (unpacking stopped)"
        return None
    return watch


# -- tar archives ----------------------------------------------------------------------------
_TV_LINE = re.compile(r"(\S)\S*\s+\S+\s+(\d+(?:,\s*\d+)?)\s+\S+\s+\S+\s(.*)\Z")


@dataclass(frozen=True)
class TarListing:
    top: frozenset          # names of the top-level members ("./" removed)
    members: Dict[str, str]  # top-level member name -> its name in the archive
    size: int               # bytes of the regular files in it


def list_tar(path: str, cwd: str) -> TarListing:
    """`tar -tv` of an archive (GNU tar finds the compression itself): its top-level names and
    unpacked size. A truncated or corrupt archive fails here, with tar's own line."""
    res = tools.run(tools.TAR, ["--numeric-owner", "-tvf", path], cwd=cwd, what="tar", timeout=TOOL_TIMEOUT)
    top = set()
    members: Dict[str, str] = {}
    size = 0
    for line in res.stdout.decode("utf-8", "surrogateescape").splitlines():
        m = _TV_LINE.match(line)
        if not m:
            continue
        kind, sz, name = m.groups()
        if kind == "-" and sz.isdigit():
            size += int(sz)
        if kind == "l":
            name = name.split(" -> ", 1)[0]
        elif kind == "h":
            name = name.split(" link to ", 1)[0]
        clean = name[2:] if name.startswith("./") else name
        clean = clean.rstrip("/")
        if clean and "/" not in clean:
            top.add(clean)
            members.setdefault(clean, name)
    return TarListing(frozenset(top), members, size)


def read_tar_member(path: str, member: str, cwd: str) -> bytes:
    res = tools.run(tools.TAR, ["-xOf", path, "--", member], cwd=cwd, what="tar", timeout=TOOL_TIMEOUT)
    if len(res.stdout) > MAX_JSON:
        raise fail(f"{member} in the archive is larger than {MAX_JSON} bytes")
    return res.stdout


# -- detection -------------------------------------------------------------------------------
def detect_format(source: str, listing: Optional[TarListing]) -> str:
    """The format of `source` (see the module docstring); `listing` is list_tar's for a file
    that is not a squashfs."""
    if os.path.isdir(source):
        if os.path.isfile(os.path.join(source, "oci-layout")) and os.path.isfile(os.path.join(source, "index.json")):
            return "oci-layout"
        return "directory"
    if is_squashfs(source):
        return "squashfs"
    assert listing is not None
    if "oci-layout" in listing.top:
        return "oci-archive"
    if "manifest.json" in listing.top:
        return "docker-archive"
    return "rootfs-tar"


def is_squashfs(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == SQUASHFS_MAGIC
    except OSError:
        return False


# -- picking one image -----------------------------------------------------------------------
def _json(data: bytes, what: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise fail(f"{what} is not valid JSON") from None


def pick_oci_ref(index_bytes: bytes, tag: Optional[str], source: str) -> Optional[str]:
    """The reference (ref.name annotation) to copy from an OCI layout's index.json: `tag`, or
    the only image; None for a single image without a name."""
    index = _json(index_bytes, f"{source}: index.json")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise fail(f"{source}: index.json lists no images")
    refs: List[str] = []
    for m in manifests:
        ann = m.get("annotations") if isinstance(m, dict) else None
        ref = ann.get(REF_ANNOTATION) if isinstance(ann, dict) else None
        refs.append(ref if isinstance(ref, str) else "")
    named = sorted({r for r in refs if r})
    if tag is not None:
        if tag not in named:
            raise fail(f"{source} has no tag {show(tag)} (tags: {', '.join(named) or 'none'})", usage=True)
        if refs.count(tag) > 1:
            raise fail(f"{source}: tag {show(tag)} names {refs.count(tag)} images", usage=False)
        return tag
    if len(manifests) == 1:
        return refs[0] or None
    raise fail(f"{source} holds {len(manifests)} images: choose one with --tag "
               f"(tags: {', '.join(named) or 'none'})", usage=True)


def pick_docker_index(manifest_bytes: bytes, tag: Optional[str], source: str) -> int:
    """The index of the image to copy from a docker archive's manifest.json: the one whose
    RepoTags holds `tag` (as `repo:tag`, without docker.io/, or just the tag), or the only image."""
    entries = _json(manifest_bytes, f"{source}: manifest.json")
    if not isinstance(entries, list) or not entries:
        raise fail(f"{source}: manifest.json lists no images")
    tags: List[List[str]] = []
    for e in entries:
        rt = e.get("RepoTags") if isinstance(e, dict) else None
        tags.append([t for t in rt if isinstance(t, str)] if isinstance(rt, list) else [])
    every = sorted({t for ts in tags for t in ts})
    if tag is None:
        if len(entries) == 1:
            return 0
        raise fail(f"{source} holds {len(entries)} images: choose one with --tag (tags: {', '.join(every) or 'none'})",
                   usage=True)
    wanted = {tag, "docker.io/" + tag, "docker.io/library/" + tag}      # docker's short names

    def matches(t: str) -> bool:
        return t in wanted or t.rsplit(":", 1)[-1] == tag
    hits = [i for i, ts in enumerate(tags) if any(matches(t) for t in ts)]
    if not hits:
        raise fail(f"{source} has no tag {show(tag)} (tags: {', '.join(every) or 'none'})", usage=True)
    if len(hits) > 1:
        raise fail(f"tag {show(tag)} matches {len(hits)} images in {source}: give repo:tag "
                   f"(tags: {', '.join(every)})", usage=True)
    return hits[0]


# -- the OCI config --------------------------------------------------------------------------
def parse_config(data: bytes) -> Tuple[Tuple[str, ...], str, str]:
    """(Env, WorkingDir, created) from an OCI image config, each checked."""
    cfg = _json(data, "the image config")
    if not isinstance(cfg, dict):
        raise fail("the image config is not a JSON object")
    created = cfg.get("created", "")
    if created is None:
        created = ""
    if not isinstance(created, str) or "\n" in created or "\0" in created:
        raise fail("the image config's created is not a string")
    inner = cfg.get("config") or {}
    if not isinstance(inner, dict):
        raise fail("the image config's config is not an object")
    env = inner.get("Env") or []
    if not isinstance(env, list):
        raise fail("the image config's Env is not a list")
    for entry in env:
        problem = env_entry_problem(entry)
        if problem:
            raise fail(f"the image config's Env entry {show(entry)} {problem}")
    workdir = inner.get("WorkingDir") or ""
    if not isinstance(workdir, str) or "\n" in workdir or "\0" in workdir:
        raise fail(f"the image config's WorkingDir {show(workdir)} is not a usable path")
    return tuple(env), workdir, created


def created_epoch(created: str) -> int:
    """The config's created time in seconds since 1970 (0 when absent or unreadable)."""
    m = re.match(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.\d+)?([Zz]|[+-]\d{2}:\d{2})?\Z", created)
    if not m:
        return 0
    zone = m.group(3) or "Z"
    try:
        dt = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}" + ("+00:00" if zone in "Zz" else zone))
    except ValueError:
        return 0
    return max(0, int(dt.astimezone(timezone.utc).timestamp()))


# -- the pipeline ----------------------------------------------------------------------------
def build(source: str, staging: str, fmt: Optional[str] = None, tag: Optional[str] = None,
          max_bytes: Optional[int] = None, owner: int = 0, exclude: Sequence[str] = ()) -> Built:
    """Make `staging`/blob.sqfs from `source`. Raises ImportFailed (one line) on any problem.
    `owner` is whose the image's / must be (a user's own store: theirs, unpacked rootless).
    `exclude`: paths relative to the image's / left out of it (mksquashfs -wildcards -e), for a
    directory that was a whole system (`chos image build --from-dir`: /proc, /sys, /home ...)."""
    if fmt is not None and fmt not in FORMATS:
        raise fail(f"unknown format {show(fmt)} (one of {', '.join(FORMATS)})", usage=True)
    if max_bytes is not None and max_bytes <= 0:
        raise fail("the size limit must be a positive number of bytes", usage=True)
    path = os.path.abspath(source)
    try:
        st = os.stat(path)
    except OSError as e:
        raise fail(f"{source}: {e.strerror}") from None
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise fail(f"{source}: not a file or directory")
    real = os.path.realpath(path)
    link = os.path.join(staging, "src")          # tools see "src": a path with ':' would not parse
    os.symlink(real, link)

    is_dir = stat.S_ISDIR(st.st_mode)
    if max_bytes is not None:
        size = tree_size(real, max_bytes) if is_dir else st.st_size
        if size > max_bytes:
            raise too_big(max_bytes, f"{source} holds more than that" if is_dir else f"{source} is {size} bytes")

    listing = None
    if is_dir:
        found = detect_format(real, None)
    elif is_squashfs(real):
        found = "squashfs"
    else:
        listing = list_tar("src", staging)
        found = detect_format(real, listing)
    if fmt is None:
        fmt = found
    elif fmt != found and not ({fmt, found} <= {"oci-layout", "directory"}
                               or {fmt, found} <= {"oci-archive", "docker-archive", "rootfs-tar"}):
        raise fail(f"{source} is not {fmt} (it looks like {found})", usage=True)

    blob = os.path.join(staging, "blob.sqfs")
    digest, env, workdir, created = "", (), "", ""
    if fmt == "squashfs":
        _take_squashfs(real, blob, source, max_bytes, owner)
        return Built(blob, fmt, "", (), "", "")
    if fmt in ("oci-layout", "oci-archive", "docker-archive"):
        digest, env, workdir, created = _copy_oci(fmt, source, staging, tag, listing)
        rootfs = _unpack_oci(staging, source, max_bytes, rootless=os.geteuid() != 0)
    elif fmt == "rootfs-tar":
        if tag is not None:
            raise fail("--tag applies to OCI and docker images only", usage=True)
        rootfs = _unpack_tar(staging, source, listing, max_bytes)
    else:
        if tag is not None:
            raise fail("--tag applies to OCI and docker images only", usage=True)
        rootfs = real
        _check_source_dir(rootfs, source, owner)
    _check_rootfs(rootfs, source)
    if fmt in ("oci-layout", "oci-archive", "docker-archive"):
        _write_config_file(rootfs, env, workdir, created_epoch(created), owner)
    if rootfs != real:
        if os.geteuid() == 0:
            os.chown(rootfs, owner, -1 if owner else 0)
        os.chmod(rootfs, 0o755)                  # the view's / : root's, like any environment tree
        t = created_epoch(created)
        os.utime(rootfs, (t, t))                 # same content, same digest
    _mksquashfs(rootfs, blob, staging, exclude)
    # a docker archive has no manifest of its own: skopeo makes one up while converting
    return Built(blob, fmt, digest if fmt in ("oci-layout", "oci-archive") else "", env, workdir, created)


def _write_config_file(rootfs: str, env: Tuple[str, ...], workdir: str, mtime: int, owner: int = 0) -> None:
    """CONFIG_FILE at the image's root: the Env and WorkingDir the job gets, inside the squashfs,
    so that the blob's digest covers them. Two images with the same files but another config
    (two tags differing by an ENV line) are then two blobs, each with its own record, instead
    of one blob whose record would describe only the first one imported."""
    path = os.path.join(rootfs, CONFIG_FILE)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    data = json.dumps({"env": list(env), "workdir": workdir}, indent=1, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(data)
        if os.geteuid() == 0:
            os.fchown(f.fileno(), owner, -1 if owner else 0)
        os.fchmod(f.fileno(), 0o644)
    os.utime(path, (mtime, mtime), follow_symlinks=False)


def _check_source_dir(path: str, source: str, owner: int = 0) -> None:
    """A directory imported as it is becomes the image's root: it must be fit for one."""
    st = os.lstat(path)
    if st.st_uid not in (0, owner) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise fail(f"{source}: must be a directory of root's, not writable by group or others "
                   f"(it becomes the image's /)")


def _check_rootfs(rootfs: str, source: str) -> None:
    try:
        st = os.lstat(rootfs)
    except OSError as e:
        raise fail(f"{source}: the unpacked root file system is missing ({e.strerror})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise fail(f"{source}: the unpacked root file system is not a directory")
    if not any(os.path.lexists(os.path.join(rootfs, d)) for d in USUAL_TOP):
        raise fail(f"{source}: does not look like a root file system (none of {', '.join(USUAL_TOP)} at its top)")


def _copy_oci(fmt: str, source: str, staging: str, tag: Optional[str],
              listing: Optional[TarListing]) -> Tuple[str, Tuple[str, ...], str, str]:
    """skopeo copy into staging/layout:img; (manifest digest, Env, WorkingDir, created)."""
    if fmt == "oci-layout":
        try:
            with open(os.path.join(staging, "src", "index.json"), "rb") as f:
                data = f.read(MAX_JSON + 1)
        except OSError as e:
            raise fail(f"{source}/index.json: {e.strerror}") from None
        ref = pick_oci_ref(data, tag, source)
        src_ref = "oci:src" + (f":{ref}" if ref else "")
    elif fmt == "oci-archive":
        assert listing is not None
        if "index.json" not in listing.members:
            raise fail(f"{source}: an OCI archive without index.json")
        ref = pick_oci_ref(read_tar_member("src", listing.members["index.json"], staging), tag, source)
        src_ref = "oci-archive:src" + (f":{ref}" if ref else "")
    else:
        assert listing is not None
        data = read_tar_member("src", listing.members["manifest.json"], staging)
        src_ref = f"docker-archive:src:@{pick_docker_index(data, tag, source)}"
    tmp = os.path.join(staging, "tmp")
    os.mkdir(tmp, 0o700)
    policy = os.path.join(staging, "policy.json")
    with open(policy, "w") as f:
        # local files chosen by root: there are no signatures to check (and a site's
        # /etc/containers/policy.json, written for registries, must not make imports fail)
        json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
    common = ["--policy", "policy.json", "--tmpdir", "tmp"]
    tools.run(tools.SKOPEO, [*common, "copy", "-q", src_ref, "oci:layout:img"], cwd=staging, what="skopeo",
              timeout=TOOL_TIMEOUT)
    raw = tools.run(tools.SKOPEO, [*common, "inspect", "--raw", "oci:layout:img"], cwd=staging,
                    what="skopeo", timeout=TOOL_TIMEOUT).stdout
    manifest = _json(raw, "the image manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise fail(f"{source}: the image manifest lists no layers")
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    cfg = tools.run(tools.SKOPEO, [*common, "inspect", "--config", "oci:layout:img"], cwd=staging,
                    what="skopeo", timeout=TOOL_TIMEOUT).stdout
    if len(cfg) > MAX_JSON:
        raise fail(f"{source}: the image config is larger than {MAX_JSON} bytes")
    env, workdir, created = parse_config(cfg)
    return digest, env, workdir, created


def _unpack_oci(staging: str, source: str, max_bytes: Optional[int], rootless: bool = False) -> str:
    bundle = os.path.join(staging, "bundle")
    tools.run(tools.UMOCI, ["unpack", *(["--rootless"] if rootless else []), "--image", "layout:img", "bundle"],
              cwd=staging, what="umoci",
              watch=size_watch(bundle, max_bytes, source), timeout=TOOL_TIMEOUT)
    rootfs = os.path.join(bundle, "rootfs")
    if max_bytes is not None and tree_size(rootfs, max_bytes) > max_bytes:
        raise too_big(max_bytes, f"{source} unpacks to more")
    return rootfs


def _unpack_tar(staging: str, source: str, listing: Optional[TarListing], max_bytes: Optional[int]) -> str:
    assert listing is not None
    if max_bytes is not None and listing.size > max_bytes:
        raise too_big(max_bytes, f"{source} unpacks to {listing.size} bytes")
    rootfs = os.path.join(staging, "rootfs")
    os.mkdir(rootfs, 0o755)
    owners = ["--same-owner", "--numeric-owner"] if os.geteuid() == 0 else ["--no-same-owner"]
    tools.run(tools.TAR, ["-x", "-p", *owners, "-f", "src", "-C", "rootfs"],
              cwd=staging, what="tar", watch=size_watch(rootfs, max_bytes, source), timeout=TOOL_TIMEOUT)
    if max_bytes is not None and tree_size(rootfs, max_bytes) > max_bytes:
        raise too_big(max_bytes, f"{source} unpacks to more")
    return rootfs


def _mksquashfs(rootfs: str, blob: str, staging: str, exclude: Sequence[str] = ()) -> None:
    for pattern in exclude:
        if not pattern or pattern.startswith("/") or ".." in pattern.split("/") or "\n" in pattern:
            raise fail(f"exclude {show(pattern)}: must be a path relative to the image's /", usage=True)
    tail = ["-wildcards", "-e", *exclude] if exclude else []
    tools.run(tools.MKSQUASHFS, [rootfs, blob, "-noappend", "-no-progress", "-quiet",
                                 "-comp", tools.mksquashfs_compressor(), "-mkfs-time", "0", *tail],
              cwd=staging, what="mksquashfs", timeout=TOOL_TIMEOUT)
    check_squashfs(blob, staging, "the new image")


def check_squashfs(blob: str, staging: str, what: str) -> None:
    """`unsquashfs -s` must find a valid squashfs 4 superblock."""
    res = tools.run(tools.UNSQUASHFS, ["-s", blob], cwd=staging, what="unsquashfs", timeout=TOOL_TIMEOUT)
    if "Found a valid SQUASHFS 4:0 superblock" not in res.stdout.decode("utf-8", "replace"):
        raise fail(f"unsquashfs does not accept {what}: {tools.last_error_line(res.stdout.decode('utf-8', 'replace'))}")


def _take_squashfs(real: str, blob: str, source: str, max_bytes: Optional[int], owner: int = 0) -> None:
    """Copy a ready squashfs into staging (so it cannot change under us), then check it: a valid
    superblock, and a root of root's not writable by others holding the usual directories."""
    try:
        src = open(real, "rb")
    except OSError as e:
        raise fail(f"{source}: {e.strerror}") from None
    with src, open(blob, "wb") as dst:
        copied = 0
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            copied += len(chunk)
            if max_bytes is not None and copied > max_bytes:
                raise too_big(max_bytes, f"{source} is more than that")
            dst.write(chunk)
    staging = os.path.dirname(blob)
    check_squashfs(blob, staging, source)
    res = tools.run(tools.UNSQUASHFS, ["-lln", "-max-depth", "1", blob], cwd=staging, what="unsquashfs",
                    timeout=TOOL_TIMEOUT)
    lines = res.stdout.decode("utf-8", "replace").splitlines()
    root = next((ln for ln in lines if ln.endswith(" squashfs-root")), None)
    if root is None:
        raise fail(f"{source}: unsquashfs lists no root directory")
    mode, ids = root.split()[:2]
    if not mode.startswith("d") or ids.split("/")[0] not in ("0", str(owner)) or mode[5] == "w" or mode[8] == "w":
        raise fail(f"{source}: the image's / must be a directory of root's not writable by group or others "
                   f"(it is {mode} {ids})")
    tops = {ln.rsplit("squashfs-root/", 1)[-1].split(" -> ")[0] for ln in lines if "squashfs-root/" in ln}
    if not tops.intersection(USUAL_TOP):
        raise fail(f"{source}: does not look like a root file system (none of {', '.join(USUAL_TOP)} at its top)")
