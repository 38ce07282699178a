"""The image store's files, without the import tools: records, lookup, stat checks, atomic
names files, rm/gc bookkeeping. Blobs here are plain files named by chosen digests (lookup
never hashes); tests/ns/test_image_import.py imports real images."""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

from envsched.errors import EnvironmentBroken, UsageError
from envsched.exitcodes import ExitCode
from envsched.images.store import (
    ImageChanged,
    ImageInUse,
    ImageNotFound,
    ImageRecord,
    ImageStore,
    stat_key,
)

if os.geteuid() != 0:
    pytest.skip("the store trusts only root's files: needs root (CI runs as root)", allow_module_level=True)

HEX_A = "0123456789ab" + "a" * 52
HEX_B = "0123456789ab" + "b" * 52          # same 12-digit prefix as A
HEX_C = "c" * 64


@pytest.fixture
def store():
    base = Path(f"/run/envsched-imgunit-{uuid.uuid4().hex[:8]}")
    base.mkdir(mode=0o755)
    s = ImageStore(str(base / "images"))
    s._ensure_layout()
    yield s
    shutil.rmtree(base)


def put(store: ImageStore, name: str, hexd: str, content: bytes = b"squash", **kw) -> ImageRecord:
    """A blob, its record and NAME's versions file, written the way the store writes them."""
    digest = "sha256:" + hexd
    path = store.blob_path(digest)
    Path(path).write_bytes(content)
    os.chmod(path, 0o644)
    st = os.stat(path)
    fields = dict(name=name, digest=digest, path=path, size=st.st_size, source="/src/" + name,
                  source_format="oci-archive", source_digest="sha256:" + "d" * 64, env=("A=1", "PATH=/bin"),
                  workdir="/work", created="2024-01-02T03:04:05Z", imported=time.time(), stat_key=stat_key(st))
    fields.update(kw)
    rec = ImageRecord(**fields)
    Path(store.meta_path(digest)).write_text(rec.to_json())
    names = Path(store.names_path(name))
    versions = json.loads(names.read_text())["versions"] if names.exists() else []
    names.write_text(json.dumps({"name": name, "versions": [digest] + [v for v in versions if v != digest]}))
    return rec


def sample() -> ImageRecord:
    return ImageRecord(name="bookworm", digest="sha256:" + HEX_A, path="/var/lib/envsched/images/blobs/x.sqfs",
                       size=10, source="/tmp/x.tar", source_format="docker-archive", source_digest="",
                       env=("A=1", "B=x=y"), workdir="/", created="", imported=1.5, stat_key=(1, 2, 3, 4))


# -- records ---------------------------------------------------------------------------------
def test_record_json_round_trip():
    rec = sample()
    back = ImageRecord.from_json(rec.to_json())
    assert back == rec and isinstance(back.env, tuple) and isinstance(back.stat_key, tuple)


@pytest.mark.parametrize("change", [
    lambda d: d.update(size="10"),
    lambda d: d.update(size=True),
    lambda d: d.update(imported=True),
    lambda d: d.update(name="../etc"),
    lambda d: d.update(digest="sha256:" + "A" * 64),
    lambda d: d.update(digest="sha256:" + "a" * 63),
    lambda d: d.update(digest="md5:" + "a" * 32),
    lambda d: d.update(source_digest="sha256:short"),
    lambda d: d.update(path="relative/blob.sqfs"),
    lambda d: d.update(source_format="zip"),
    lambda d: d.update(env="A=1"),
    lambda d: d.update(env=["A=1\nB=2"]),
    lambda d: d.update(env=["A=1\0"]),
    lambda d: d.update(env=["NOEQUALS"]),
    lambda d: d.update(env=["1A=x"]),
    lambda d: d.update(env=[1]),
    lambda d: d.update(workdir=["/"]),
    lambda d: d.update(stat_key=[1, 2, 3]),
    lambda d: d.update(stat_key=[1, 2, 3, "4"]),
    lambda d: d.pop("created"),
    lambda d: d.update(extra=1),
], ids=lambda f: "")
def test_record_rejects_malformed(change):
    data = json.loads(sample().to_json())
    change(data)
    with pytest.raises(ValueError):
        ImageRecord.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["[]", "null", "{", "[" * 100000 + "]" * 100000])
def test_record_rejects_non_objects(text):
    with pytest.raises(ValueError):
        ImageRecord.from_json(text)


# -- lookup ----------------------------------------------------------------------------------
def test_lookup_current_full_and_prefix(store):
    a = put(store, "bookworm", HEX_A)
    c = put(store, "bookworm", HEX_C)
    assert store.lookup("bookworm") == c                       # newest first
    assert [r.digest for r in store.versions("bookworm")] == [c.digest, a.digest]
    assert store.lookup("bookworm", a.digest) == a
    assert store.lookup("bookworm", "sha256:" + HEX_A[:12]) == a
    assert store.lookup("bookworm", HEX_A[:20]) == a           # "sha256:" may be left out
    assert store.lookup("bookworm", "sha256:ccccccccccccc") == c
    assert store.names() == ["bookworm"]
    assert store.versions("nosuch") == [] and store.versions("../x") == []


def test_lookup_refusals(store):
    put(store, "bookworm", HEX_A)
    put(store, "bookworm", HEX_B)
    with pytest.raises(ImageNotFound, match="ambiguous"):
        store.lookup("bookworm", "sha256:0123456789ab")        # A and B share it
    assert store.lookup("bookworm", "sha256:0123456789aba").digest.endswith("a" * 52)
    with pytest.raises(ImageNotFound) as e:
        store.lookup("bookworm", "sha256:" + "9" * 64)
    assert e.value.message == "image 'bookworm@sha256:999999999999…' is not on this node (envsched image list)"
    assert e.value.code == ExitCode.ENV_BROKEN
    with pytest.raises(ImageNotFound, match="not a digest"):
        store.lookup("bookworm", "sha256:0123456789a")         # 11 digits: too short to name one
    with pytest.raises(ImageNotFound, match="'trixie' is not on this node"):
        store.lookup("trixie")
    with pytest.raises(ImageNotFound, match="not valid"):
        store.lookup("../../etc/passwd")
    # a digest of another name's version is not this name's
    put(store, "trixie", HEX_C)
    with pytest.raises(ImageNotFound):
        store.lookup("bookworm", "sha256:" + HEX_C)


def test_lookup_refuses_untrusted_store_and_files(store):
    rec = put(store, "bookworm", HEX_A)
    os.chmod(store.root, 0o777)
    with pytest.raises(EnvironmentBroken, match="cannot be trusted"):
        store.lookup("bookworm")
    os.chmod(store.root, 0o755)
    os.chown(store.names_path("bookworm"), 1, 1)
    with pytest.raises(EnvironmentBroken, match="must be a file of root's"):
        store.lookup("bookworm")
    os.chown(store.names_path("bookworm"), 0, 0)
    # a record may not send the job to another file
    Path(store.meta_path(rec.digest)).write_text(dataclasses.replace(rec, path="/etc/shadow").to_json())
    with pytest.raises(EnvironmentBroken, match="describes another blob"):
        store.lookup("bookworm")
    Path(store.meta_path(rec.digest)).write_text('{"name": 1}')
    with pytest.raises(EnvironmentBroken, match="malformed"):
        store.lookup("bookworm")
    Path(store.names_path("bookworm")).write_text('{"name": "bookworm", "versions": ["sha256:zz"]}')
    with pytest.raises(EnvironmentBroken, match="malformed"):
        store.lookup("bookworm")


def test_lookup_on_a_store_that_does_not_exist():
    s = ImageStore(f"/run/envsched-imgunit-none-{uuid.uuid4().hex[:8]}/images")
    assert s.names() == [] and s.versions("x") == []
    with pytest.raises(ImageNotFound):
        s.lookup("x")


# -- check_unchanged -------------------------------------------------------------------------
def test_check_unchanged_catches_touch_and_change(store):
    rec = put(store, "bookworm", HEX_A, content=b"0123456789")
    store.check_unchanged(rec)
    os.utime(rec.path, ns=(0, 10 ** 9))
    with pytest.raises(ImageChanged) as e:
        store.check_unchanged(rec)
    assert "mtime" in e.value.message and "envsched image verify bookworm" in e.value.message
    assert e.value.message.startswith(f"image bookworm@sha256:{HEX_A[:12]} changed since it was imported")

    rec = put(store, "bookworm", HEX_A, content=b"0123456789")
    with open(rec.path, "r+b") as f:          # same size, one byte different
        f.seek(5)
        f.write(b"X")
    with pytest.raises(ImageChanged, match="ctime"):
        store.check_unchanged(rec)

    rec = put(store, "bookworm", HEX_A, content=b"0123456789")
    os.chmod(rec.path, 0o666)
    with pytest.raises(EnvironmentBroken, match="not writable by group or others"):
        store.check_unchanged(rec)
    os.unlink(rec.path)
    with pytest.raises(ImageNotFound, match="missing"):
        store.check_unchanged(rec)


# -- names files -----------------------------------------------------------------------------
def test_names_file_is_replaced_atomically(store):
    put(store, "bookworm", HEX_A)
    path = store.names_path("bookworm")
    ino = os.stat(path).st_ino
    store._write_versions("bookworm", ["sha256:" + HEX_C, "sha256:" + HEX_A])
    assert os.stat(path).st_ino != ino                     # a new file renamed over the old one
    assert json.loads(Path(path).read_text()) == {"name": "bookworm",
                                                  "versions": ["sha256:" + HEX_C, "sha256:" + HEX_A]}
    assert sorted(os.listdir(os.path.dirname(path))) == ["bookworm.json"]   # no temp file left
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"

    # a reader never sees a half-written file, however often it is rewritten
    long = ["sha256:" + f"{i:064x}" for i in range(2000)]
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            store._write_versions("bookworm", long)
            store._write_versions("bookworm", long[:1])
    t = threading.Thread(target=writer)
    t.start()
    try:
        seen = set()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            seen.add(len(store._version_list("bookworm")))
    finally:
        stop.set()
        t.join()
    assert seen <= {1, 2, 2000} and 2000 in seen        # 2: before the writer began


# -- rm and gc bookkeeping -------------------------------------------------------------------
def test_remove_versions_and_shared_blobs(store):
    a = put(store, "bookworm", HEX_A)
    c = put(store, "bookworm", HEX_C)
    put(store, "other", HEX_A)                             # the same blob under another name
    with pytest.raises(ImageInUse) as e:
        store.remove("bookworm", protected=["sha256:" + HEX_A[:12]])
    assert e.value.code == ExitCode.NOT_PERMITTED and "named by the policy" in e.value.message
    assert len(store.versions("bookworm")) == 2           # nothing changed
    assert store.remove("bookworm", "sha256:" + HEX_C[:12]) == [c.digest]
    assert not os.path.exists(c.path) and not os.path.exists(store.meta_path(c.digest))
    assert store.remove("bookworm") == [a.digest]
    assert store.names() == ["other"]
    assert os.path.exists(a.path)                         # "other" still lists it
    with pytest.raises(ImageNotFound):
        store.remove("bookworm")
    with pytest.raises(UsageError):
        store.remove("../x")


def test_gc_keeps_newest_protected_and_running_imports(store):
    a = put(store, "bookworm", HEX_A)
    b = put(store, "bookworm", HEX_B)
    c = put(store, "bookworm", HEX_C)
    orphan = "sha256:" + "e" * 64
    Path(store.blob_path(orphan)).write_bytes(b"x")
    tmp = Path(store.root, ".tmp")
    dead = tmp / "import-dead"
    dead.mkdir()
    (dead / ".owner").write_text("")
    running = tmp / "import-running"
    running.mkdir()
    with open(running / ".owner", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        removed = store.gc(keep=1, protected=[a.digest])
    assert set(removed) == {b.digest, orphan, str(dead)}
    assert [r.digest for r in store.versions("bookworm")] == [c.digest, a.digest]
    assert not os.path.exists(b.path) and not os.path.exists(store.blob_path(orphan))
    assert running.exists() and not dead.exists()
    assert store.gc() == [str(running)]                   # its import is gone now
    with pytest.raises(UsageError):
        store.gc(keep=0)
