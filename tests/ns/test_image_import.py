"""`envsched image`: real imports with skopeo, umoci, tar and mksquashfs, as root, into stores
under the session's site directory; the blobs are read back with unsquashfs and a loop mount."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from envsched.exitcodes import ExitCode
from envsched.images import ImageChanged, ImageInUse, ImportFailed, ImageStore
from envsched.images.store import short

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "images"))
import ocilib  # noqa: E402

pytestmark = pytest.mark.ns


@pytest.fixture(scope="module")
def images(site_dir):
    return ocilib.build_all(site_dir.root / f"oci-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def store(site_dir):
    return ImageStore(str(site_dir.root / "stores" / uuid.uuid4().hex[:8]))


def listing(blob: str):
    out = subprocess.run(["unsquashfs", "-l", blob], stdout=subprocess.PIPE, check=True, text=True).stdout
    return {line[len("squashfs-root"):] or "/" for line in out.splitlines() if line.startswith("squashfs-root")}


def cat(blob: str, path: str) -> str:
    return subprocess.run(["unsquashfs", "-cat", blob, path], stdout=subprocess.PIPE, check=True,
                          text=True).stdout


def leftovers(store: ImageStore):
    """Everything in the store but its empty directories and the lock file."""
    out = []
    for d, _, files in os.walk(store.root):
        out += [os.path.join(d, f) for f in files if f != ".lock"]
    return out


# (fixture attribute, detected format, built from the two-layer OCI image?)
FORMATS = [("layout", "oci-layout", True), ("oci_archive", "oci-archive", True),
           ("docker_archive", "docker-archive", True), ("rootfs_tar", "rootfs-tar", True),
           ("tree", "directory", False), ("squashfs", "squashfs", False)]


@pytest.mark.parametrize("attr,fmt,layered", FORMATS, ids=[f[1] for f in FORMATS])
def test_import_each_format(images, store, attr, fmt, layered):
    source = getattr(images, attr)
    start = time.monotonic()
    rec = store.import_image(str(source), "img")
    took = time.monotonic() - start
    print(f"\n{fmt}: {took:.2f} s, blob {rec.size} bytes")
    assert rec.source_format == fmt and rec.name == "img" and rec.source == str(source)
    assert store.lookup("img") == rec
    store.check_unchanged(rec)
    st = os.stat(rec.path)
    assert (st.st_uid, oct(st.st_mode & 0o777), st.st_size) == (0, "0o644", rec.size)
    assert rec.path == store.blob_path(rec.digest)
    files = listing(rec.path)
    assert {"/bin", "/etc/os-release", "/usr/bin/busybox", "/opt/data/keep.txt"} <= files
    if layered:
        assert "/opt/data/doomed.txt" not in files                   # layer 2's whiteout
        assert {"/opt/data/b.txt", "/opt/data/hard"} <= files         # layer 2's hard link
        assert cat(rec.path, "opt/data/hard") == "bee\n"
    else:
        assert "/opt/data/doomed.txt" in files
    root = subprocess.run(["unsquashfs", "-lln", "-max-depth", "0", rec.path], stdout=subprocess.PIPE,
                          text=True, check=True).stdout.split()
    assert root[:2] == ["drwxr-xr-x", "0/0"]                          # the view's /: root's, 0755
    if fmt in ("oci-layout", "oci-archive", "docker-archive"):
        assert rec.env == ocilib.V1_ENV and rec.workdir == "/opt/data" and rec.created == ocilib.CREATED
        assert json.loads(cat(rec.path, ".envsched-image.json")) == {"env": list(ocilib.V1_ENV),
                                                                     "workdir": "/opt/data"}
    else:
        assert "/.envsched-image.json" not in files
        assert (rec.env, rec.workdir, rec.created) == ((), "", "")
    assert rec.source_digest == (images.manifest_digest if fmt in ("oci-layout", "oci-archive") else "")
    assert os.listdir(os.path.join(store.root, ".tmp")) == []


def test_same_content_same_digest_no_duplicate(images, store):
    first = store.import_image(str(images.layout), "deb", tag="v1")
    other = store.import_image(str(images.tree), "deb")
    again = store.import_image(str(images.docker_archive), "deb")    # same layers, another wrapping
    assert again.digest == first.digest != other.digest
    assert [r.digest for r in store.versions("deb")] == [first.digest, other.digest]
    assert len(os.listdir(os.path.join(store.root, "blobs", "sha256"))) == 2
    assert store.lookup("deb", short(other.digest)) == other


def test_tag_picks_one_image_and_ambiguity_is_refused(images, store):
    with pytest.raises(ImportFailed) as e:
        store.import_image(str(images.multi), "multi")
    assert e.value.code == ExitCode.USAGE
    assert "holds 2 images: choose one with --tag (tags: v1, v2)" in e.value.message
    v2 = store.import_image(str(images.multi), "multi", tag="v2")
    assert "B=2" in v2.env
    with pytest.raises(ImportFailed, match=r"has no tag 'nope' \(tags: docker.io/envsched/test:v1\)"):
        store.import_image(str(images.docker_archive), "multi", tag="nope")
    v1 = store.import_image(str(images.docker_archive), "multi", tag="v1")
    assert v1.env == ocilib.V1_ENV and v1.digest != v2.digest     # same files, another config
    assert store.import_image(str(images.docker_archive), "multi", tag="envsched/test:v1").env == ocilib.V1_ENV
    assert os.listdir(os.path.join(store.root, ".tmp")) == []


def test_truncated_archive_one_line_nothing_left(images, store, site_dir, envsched_cmd):
    half = site_dir.root / f"half-{uuid.uuid4().hex[:6]}.tar"
    data = images.docker_archive.read_bytes()
    half.write_bytes(data[:len(data) // 2])
    with pytest.raises(ImportFailed) as e:
        store.import_image(str(half), "broken")
    assert e.value.code == ExitCode.ENV_BROKEN
    assert e.value.message.startswith("tar failed") and "\n" not in e.value.message
    assert leftovers(store) == [] and store.names() == []
    r = envsched_cmd("image", "import", str(half), "broken", "--store", store.root)
    assert r.returncode == ExitCode.ENV_BROKEN and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("envsched: tar failed"), r.stderr
    assert leftovers(store) == []
    # one byte flipped inside a layer: the archive reads, but skopeo checks the layer's digest
    flip = bytearray(data)
    flip[len(data) // 4] ^= 0xFF
    half.write_bytes(bytes(flip))
    with pytest.raises(ImportFailed) as e:
        store.import_image(str(half), "broken")
    assert e.value.message.startswith("skopeo failed") and "Digest did not match" in e.value.message
    assert "\n" not in e.value.message and leftovers(store) == []


def test_max_bytes(images, store):
    with pytest.raises(ImportFailed, match="image larger than 1000 bytes"):
        store.import_image(str(images.layout), "big", max_bytes=1000)            # the source itself
    size = images.oci_archive.stat().st_size
    with pytest.raises(ImportFailed, match=f"image larger than {size + 1000} bytes: .* unpacks to more"):
        store.import_image(str(images.oci_archive), "big", max_bytes=size + 1000)   # its layers, unpacked
    size = images.rootfs_tar.stat().st_size
    with pytest.raises(ImportFailed, match=r"unpacks to \d+ bytes"):
        store.import_image(str(images.rootfs_tar), "big", max_bytes=size + 1000)   # seen in tar's listing
    assert leftovers(store) == []
    assert store.import_image(str(images.rootfs_tar), "big", max_bytes=10 << 20).source_format == "rootfs-tar"


def test_tampered_blob_is_caught_and_verified(images, store):
    rec = store.import_image(str(images.oci_archive), "t")
    assert store.verify() == []
    with open(rec.path, "r+b") as f:
        f.seek(rec.size // 2)
        byte = f.read(1)
        f.seek(rec.size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ImageChanged, match=f"image t@{short(rec.digest)} changed since it was imported"):
        store.check_unchanged(rec)
    problems = store.verify("t")
    assert len(problems) == 1 and "digest mismatch: the file is sha256:" in problems[0]
    assert problems[0].endswith(f"the store says {rec.digest}")
    with open(rec.path, "r+b") as f:                                   # put the byte back
        f.seek(rec.size // 2)
        f.write(byte)
    with pytest.raises(ImageChanged):
        store.check_unchanged(store.lookup("t"))                       # the content is right, the stat not
    assert store.verify() == []                                        # ... which verify refreshes
    store.check_unchanged(store.lookup("t"))


def test_rm_refused_while_mounted(images, store, site_dir):
    old = store.import_image(str(images.tree), "busy")
    cur = store.import_image(str(images.layout), "busy")
    mnt = site_dir.root / f"mnt-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop,ro", cur.path, str(mnt)], check=True)
    try:
        assert store.in_use(cur) and not store.in_use(old)
        a, b = os.stat(mnt / "opt/data/b.txt"), os.stat(mnt / "opt/data/hard")
        assert a.st_ino == b.st_ino and a.st_nlink == 2                # a real hard link
        assert not (mnt / "opt/data/doomed.txt").exists()
        assert (mnt / "opt/data/hard").read_text() == "bee\n"
        with pytest.raises(ImageInUse, match="is in use") as e:
            store.remove("busy")
        assert e.value.code == ExitCode.NOT_PERMITTED
        with pytest.raises(ImageInUse):
            store.remove("busy", cur.digest)
        assert len(store.versions("busy")) == 2                        # nothing changed
        assert store.remove("busy", old.digest) == [old.digest]
        assert not os.path.exists(old.path) and os.path.exists(cur.path)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        mnt.rmdir()
    assert not store.in_use(cur)
    assert store.remove("busy") == [cur.digest]
    assert leftovers(store) == []


def test_gc_keep_and_policy_protection_from_the_cli(images, store, site_dir, envsched_cmd):
    s = ["--store", store.root]
    digests = []
    for src in (images.squashfs, images.tree, images.layout):
        r = envsched_cmd("image", "import", str(src), "gcme", *s)
        assert r.returncode == 0, r.stderr
        name, digest, size = r.stdout.split()
        assert name == "gcme" and digest.startswith("sha256:") and int(size) > 0
        digests.insert(0, digest)
    r = envsched_cmd("image", "list", "gcme", "--json", *s)
    rows = json.loads(r.stdout)
    assert [x["digest"] for x in rows] == digests and [x["current"] for x in rows] == [True, False, False]
    r = envsched_cmd("image", "list", *s)
    assert r.returncode == 0 and "gcme" in r.stdout and digests[0][:19] in r.stdout
    # the policy names the oldest version: gc --keep 1 removes only the middle one
    policy = site_dir.policy(name=f"img-{uuid.uuid4().hex[:6]}.toml", site=f'image_dir = "{store.root}"',
                             body=f'[environments.pinned]\nimage = "gcme@{digests[2]}"\n')
    r = envsched_cmd("--policy", str(policy), "image", "gc", "--keep", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["removed", digests[1]]
    r = envsched_cmd("--policy", str(policy), "image", "rm", f"gcme@{digests[2][:19]}")
    assert r.returncode == ExitCode.NOT_PERMITTED and "named by the policy" in r.stderr
    r = envsched_cmd("image", "verify", *s)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
    r = envsched_cmd("image", "rm", "gcme", *s)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2
    assert leftovers(store) == []


USER_IMPORT = """
import json, os, sys
from envsched.images import ImageStore
store = ImageStore(sys.argv[1], owner=os.getuid())
out = []
for src in sys.argv[2:]:
    rec = store.import_image(src, "mine")
    store.check_unchanged(store.lookup("mine"))
    out.append([rec.source_format, rec.digest, rec.path, list(rec.env)])
print(json.dumps(out))
"""


def test_a_users_own_store_is_theirs(images, site_dir, test_user):
    """ImageStore(owner=UID): imported as the user (umoci --rootless, tar without owners), every
    file theirs, and the admins' view of it (owner 0) refuses it."""
    base = site_dir.root / f"user-{uuid.uuid4().hex[:6]}"
    base.mkdir(mode=0o755)
    os.chown(base, test_user.pw_uid, test_user.pw_gid)
    src = Path(__file__).resolve().parent.parent.parent / "src"
    p = subprocess.run(["setpriv", f"--reuid={test_user.pw_uid}", f"--regid={test_user.pw_gid}", "--init-groups",
                        "--", sys.executable, "-c", USER_IMPORT, str(base / "images"), str(images.docker_archive),
                        str(images.rootfs_tar)],
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(src), "LANG": "C.UTF-8"},
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    (fmt1, digest1, path1, env1), (fmt2, _, path2, _) = json.loads(p.stdout)
    assert (fmt1, fmt2, tuple(env1)) == ("docker-archive", "rootfs-tar", ocilib.V1_ENV)
    for path in (path1, path2):
        assert os.stat(path).st_uid == test_user.pw_uid
        assert "/opt/data/hard" in listing(path) and "/opt/data/doomed.txt" not in listing(path)
    with pytest.raises(Exception, match="cannot be trusted"):
        ImageStore(str(base / "images")).lookup("mine")
    assert ImageStore(str(base / "images"), owner=test_user.pw_uid).lookup("mine", digest1).path == path1
