"""Pinned versions of trees (envsched.versions): the manifest digest on real files, and the stamp
book (history, current, find, still_there, verify) on real stamp files in a root-owned directory."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from envsched.errors import EnvironmentBroken, NotPermitted, PolicyError, UsageError
from envsched.exitcodes import ExitCode
from envsched.policy.model import Environment
from envsched.versions import (
    DIGEST_RE,
    AmbiguousVersion,
    StampBook,
    StampError,
    TreeStamp,
    manifest_digest,
    manifest_records,
    stamps_dir,
)

SRC = Path(__file__).resolve().parent.parent.parent / "src"
DIRS = ("bin", "etc", "usr", "opt")
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (CI runs as root)")


@pytest.fixture
def base():
    """A root-owned 0755 directory outside /tmp (a trusted chain for stamp files), removed after."""
    if not IS_ROOT:
        pytest.skip("needs root (CI runs as root)")
    d = Path(f"/run/envsched-tests-versions-{uuid.uuid4().hex[:8]}")
    d.mkdir(mode=0o755)
    yield d
    shutil.rmtree(d)


def make_tree(dest: Path, extra: bytes = b"") -> Path:
    """A small tree with files, a hard link, directories, relative and absolute symlinks, a fifo."""
    dest.mkdir(mode=0o755)
    for d in ("usr/bin", "usr/lib", "etc/ssl", "opt/app"):
        (dest / d).mkdir(mode=0o755, parents=True)
    os.symlink("usr/bin", dest / "bin")
    (dest / "usr/bin/busybox").write_bytes(b"\x7fELF" + bytes(range(256)) * 100 + extra)
    os.link(dest / "usr/bin/busybox", dest / "usr/bin/sh")
    os.symlink("busybox", dest / "usr/bin/ls")
    (dest / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (dest / "etc/empty").write_bytes(b"")
    os.symlink("/etc/ssl/certs", dest / "etc/ssl/certs")
    os.mkfifo(dest / "opt/app/fifo", 0o644)
    (dest / "opt/app/run").write_text("#!/bin/sh\n")
    (dest / "opt/app/run").chmod(0o755)
    (dest / "var").mkdir()                       # not in DIRS: not covered
    (dest / "var/log").write_text("x")
    for p in [dest, *dest.rglob("*")]:
        if not p.is_symlink():
            os.chmod(p, os.stat(p).st_mode & ~0o022)
    return dest


def digest(tree: Path, dirs=DIRS) -> str:
    return manifest_digest(str(tree), dirs)[0]


# ---------------------------------------------------------------------------------- the manifest
def test_same_tree_twice_and_copies_elsewhere_have_one_digest(tmp_path):
    a = make_tree(tmp_path / "a")
    d, files, size = manifest_digest(str(a), DIRS)
    assert d.startswith("sha256:") and len(d) == 71
    assert manifest_digest(str(a), DIRS) == (d, files, size)
    (tmp_path / "deep" / "other").mkdir(parents=True)
    b = make_tree(tmp_path / "deep" / "other" / "place")
    assert manifest_digest(str(b), DIRS) == (d, files, size)
    c = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(a), str(c)], check=True)   # times differ: not covered
    os.utime(c / "etc/os-release", (1, 1))
    assert digest(c) == d
    # bin, etc, etc/empty, etc/os-release, etc/ssl, etc/ssl/certs, opt, opt/app, opt/app/fifo,
    # opt/app/run, usr, usr/bin, usr/bin/busybox, usr/bin/ls, usr/bin/sh, usr/lib
    assert files == 16
    assert size == 2 * (4 + 25600) + len('ID=debian\nVERSION_ID="12"\n') + len("#!/bin/sh\n")


def test_dirs_order_and_duplicates_do_not_matter_but_membership_does(tmp_path):
    a = make_tree(tmp_path / "a")
    assert digest(a, ("usr", "opt", "etc", "bin")) == digest(a, DIRS)
    assert digest(a, DIRS + ("lib64", "nonexistent")) == digest(a, DIRS)   # missing names: not covered
    assert digest(a, ("usr", "etc", "bin")) != digest(a, DIRS)
    assert digest(a, DIRS + ("var",)) != digest(a, DIRS)
    (a / "var/log").write_text("changed")                                  # not in dirs: not covered
    assert digest(a, DIRS) == digest(tmp_path.joinpath("a"), DIRS)


def _chown(p: Path, uid: int, gid: int) -> None:
    os.chown(p, uid, gid, follow_symlinks=False)


MUTATIONS = {
    "one byte": lambda t: (t / "opt/app/run").write_text("#!/bin/sh\r"),
    "one byte in a hard-linked file": lambda t: (t / "usr/bin/busybox").open("r+b").write(b"\x7fELG"),
    "a mode bit": lambda t: (t / "opt/app/run").chmod(0o754),
    "setuid": lambda t: (t / "opt/app/run").chmod(0o4755),
    "sticky on a directory": lambda t: (t / "opt/app").chmod(0o1755),
    "the owner": lambda t: _chown(t / "etc/empty", 1234, 0),
    "the group": lambda t: _chown(t / "etc/empty", 0, 1234),
    "a symlink's owner": lambda t: _chown(t / "usr/bin/ls", 1234, 0),
    "a symlink target": lambda t: (os.unlink(t / "usr/bin/ls"), os.symlink("busybox ", t / "usr/bin/ls")),
    "a top-level symlink target": lambda t: (os.unlink(t / "bin"), os.symlink("/usr/bin", t / "bin")),
    "a renamed file": lambda t: os.rename(t / "etc/empty", t / "etc/empty2"),
    "a file moved to another directory": lambda t: os.rename(t / "etc/empty", t / "opt/empty"),
    "an added empty file": lambda t: (t / "usr/lib/new").write_bytes(b""),
    "an added empty directory": lambda t: (t / "usr/lib/new").mkdir(mode=0o755),
    "a removed empty file": lambda t: os.unlink(t / "etc/empty"),
    "a file became a symlink": lambda t: (os.unlink(t / "etc/empty"), os.symlink("x", t / "etc/empty")),
    "a hard link became a copy with other content": lambda t: (
        os.unlink(t / "usr/bin/sh"), (t / "usr/bin/sh").write_bytes(b"other")),
    "a fifo became a file": lambda t: (os.unlink(t / "opt/app/fifo"), (t / "opt/app/fifo").write_bytes(b"")),
    "a device": lambda t: os.mknod(t / "opt/app/null", 0o644 | 0o020000, os.makedev(1, 3)),
}


@needs_root
@pytest.mark.parametrize("what", sorted(MUTATIONS))
def test_each_change_changes_the_digest(tmp_path, what):
    tree = make_tree(tmp_path / "t")
    before = digest(tree)
    MUTATIONS[what](tree)
    assert digest(tree) != before, what


def test_device_number_counts(tmp_path):
    if not IS_ROOT:
        pytest.skip("mknod needs root")
    a, b = make_tree(tmp_path / "a"), make_tree(tmp_path / "b")
    os.mknod(a / "opt/app/dev", 0o644 | 0o020000, os.makedev(1, 3))
    os.mknod(b / "opt/app/dev", 0o644 | 0o020000, os.makedev(1, 5))
    assert digest(a) != digest(b)


def test_symlinks_are_recorded_not_followed(tmp_path):
    """A link to /etc/shadow (or out of the tree at the top) is a link record: the target's content
    is never read, so changing it outside the tree changes nothing."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("one")
    tree = make_tree(tmp_path / "t")
    os.symlink("/etc/shadow", tree / "etc/shadow")
    os.symlink(str(outside / "secret"), tree / "etc/secret")
    os.symlink(str(outside), tree / "lib64")                     # a top-level name pointing out
    dirs = DIRS + ("lib64",)
    before = manifest_digest(str(tree), dirs)
    (outside / "secret").write_text("two, and longer")
    (outside / "more").write_text("x")
    assert manifest_digest(str(tree), dirs) == before
    records = [r for r, _ in manifest_records(str(tree), dirs)]
    assert b"L\0etc/shadow\0" + b"0777\0" + b"%d\0%d\0" % (os.getuid(), os.getgid()) + b"/etc/shadow\0\n" in records
    assert [r for r in records if r.startswith(b"L\0lib64\0")] == [
        b"L\0lib64\0" + b"0777\0" + b"%d\0%d\0" % (os.getuid(), os.getgid()) + os.fsencode(outside) + b"\0\n"]
    assert not any(r.startswith(b"F\0lib64/") for r in records)


def _decode(stream: bytes):
    """The manifest's grammar, written independently of the code: the stream decodes one way only."""
    extra = {b"F": 2, b"L": 1, b"C": 1, b"B": 1, b"D": 0, b"P": 0, b"S": 0}
    out, i = [], 0
    while i < len(stream):
        fields = []
        kind_end = stream.index(b"\0", i)
        kind = stream[i:kind_end]
        i = kind_end + 1
        for _ in range(4 + extra[kind]):
            j = stream.index(b"\0", i)
            fields.append(stream[i:j])
            i = j + 1
        assert stream[i:i + 1] == b"\n", (kind, fields)
        i += 1
        out.append((kind, *fields))
    return out


NASTY = [b"a\nF", b"a b", b"a\\0b", b"trailing\n", b"\n", b"F\x00"[:1], b"\xff\xfe not utf-8", b"0644",
         b"x\\n", b" ", b"-", b"a\tb", b"\x1b[31mred"]


def test_record_encoding_decodes_one_way_with_hostile_names(tmp_path):
    tree = make_tree(tmp_path / "t")
    d = os.fsencode(tree / "opt")
    for name in NASTY:
        with open(os.path.join(d, name), "wb") as f:
            f.write(name)
        os.symlink(b"target\n" + name + b"\nF", os.path.join(d, b"link-" + name))
    stream = b"".join(r for r, _ in manifest_records(str(tree), DIRS))
    entries = _decode(stream)
    names = {e[1] for e in entries}
    for name in NASTY:
        assert b"opt/" + name in names
        link = [e for e in entries if e[1] == b"opt/link-" + name][0]
        assert link[0] == b"L" and link[5] == b"target\n" + name + b"\nF"
    assert len(entries) == manifest_digest(str(tree), DIRS)[1]


@pytest.mark.parametrize("a,b", [
    ({"l": ("L", b"x\nF")}, {"l": ("L", b"x"), "l\nF": ("F", b"")}),
    ({"a b": ("F", b"")}, {"a": ("F", b""), "b": ("F", b"")}),
    ({"a\nF": ("F", b"")}, {"a": ("F", b""), "F": ("F", b"")}),
    ({"x": ("L", b"y\n")}, {"x": ("L", b"y")}),
    ({"x": ("F", b"ab")}, {"x": ("F", b"a"), "b": ("F", b"")}),
])
def test_near_collisions_differ(tmp_path, a, b):
    digests = []
    for n, spec in enumerate((a, b)):
        tree = tmp_path / str(n)
        (tree / "etc").mkdir(parents=True)
        for name, (kind, data) in spec.items():
            p = os.path.join(os.fsencode(tree / "etc"), os.fsencode(name))
            if kind == "L":
                os.symlink(data, p)
            else:
                with open(p, "wb") as f:
                    f.write(data)
        digests.append(digest(tree, ("etc",)))
    assert digests[0] != digests[1]


def test_big_file_is_streamed(tmp_path):
    """A 64 MiB file: hashed in chunks (peak memory stays far below the file's size)."""
    import resource
    tree = tmp_path / "t"
    (tree / "usr").mkdir(parents=True)
    with open(tree / "usr/big", "wb") as f:
        f.truncate(64 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    d, files, size = manifest_digest(str(tree), ("usr",))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert (files, size) == (2, 64 << 20)
    assert grown_kib < 16 * 1024, f"peak memory grew by {grown_kib} KiB"
    import hashlib
    content = hashlib.sha256(b"\0" * (64 << 20)).hexdigest().encode()
    expect = hashlib.sha256(b"envsched-manifest-1\n"
                            + b"D\0usr\0%04o\0%d\0%d\0\n" % (os.stat(tree / "usr").st_mode & 0o7777,
                                                              os.getuid(), os.getgid())
                            + b"F\0usr/big\0%04o\0%d\0%d\0%d\0" % (os.stat(tree / "usr/big").st_mode & 0o7777,
                                                                    os.getuid(), os.getgid(), 64 << 20)
                            + content + b"\0\n").hexdigest()
    assert d == "sha256:" + expect


@needs_root
def test_unreadable_is_an_error_not_skipped(base):
    """As an ordinary user, a root-only file in the tree stops the manifest with its name."""
    tree = make_tree(base / "t")
    (tree / "etc/shadow").write_text("x")
    (tree / "etc/shadow").chmod(0o600)
    code = ("import sys; from envsched.versions import manifest_digest, StampError\n"
            "try: manifest_digest(sys.argv[1], ('etc', 'usr'))\n"
            "except StampError as e: print(e.message, e.code); sys.exit(3)\n")
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                        sys.executable, "-c", code, str(tree)], env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 3, p.stdout
    assert p.stdout.strip() == f"{tree}/etc/shadow: cannot open: Permission denied 69"


def test_a_directory_swapped_for_a_symlink_is_not_followed(tmp_path, monkeypatch):
    """Between listing and opening, a directory replaced by a link to / is an error, never walked."""
    import envsched.versions as v
    tree = make_tree(tmp_path / "t")
    real_stat = os.stat
    swapped = []

    def stat_then_swap(path, *a, **kw):
        st = real_stat(path, *a, **kw)
        if path == b"app" and not swapped:
            swapped.append(1)
            shutil.rmtree(tree / "opt/app")
            os.symlink("/", tree / "opt/app")
        return st
    monkeypatch.setattr(v.os, "stat", stat_then_swap)
    with pytest.raises(StampError, match=r"opt/app: changed while being read"):
        manifest_digest(str(tree), DIRS)


# --------------------------------------------------------------------------------- the stamp book
def env(tree: Path, name: str = "deb12", **kw) -> Environment:
    return Environment(name=name, path=str(tree), dirs=DIRS, **kw)


def fake(name="deb12", digest="sha256:" + "0" * 64, version="", path="/os/none", stamped=1.0, key=(1, 2, 3)):
    return TreeStamp(name, digest, version, path, stamped, 1, 0, key)


def write_book(directory: Path, name: str, stamps, mode=0o644) -> Path:
    directory.mkdir(mode=0o755, exist_ok=True)
    f = directory / f"{name}.json"
    f.write_text(json.dumps({"format": 1, "environment": name, "stamps": [s.to_dict() for s in stamps]}))
    f.chmod(mode)
    return f


def test_stamps_dir_is_beside_the_policy():
    assert stamps_dir("/etc/envsched/policy.toml") == "/etc/envsched/stamps"


@needs_root
def test_stamp_writes_a_trusted_file_and_history_reads_it(base):
    tree = make_tree(base / "os-deb12")
    book = StampBook(str(base / "etc" / "stamps"))
    (base / "etc").mkdir(mode=0o755)
    st = book.stamp(env(tree), "2026.12")
    assert (st.environment, st.version, st.path) == ("deb12", "2026.12", str(tree))
    assert (st.digest, st.files, st.bytes) == manifest_digest(str(tree), DIRS)
    s = os.stat(tree)
    assert st.root_key == (s.st_dev, s.st_ino, s.st_ctime_ns)
    assert abs(st.stamped - time.time()) < 60
    f = base / "etc/stamps/deb12.json"
    assert oct(f.stat().st_mode & 0o7777) == "0o644" and f.stat().st_uid == 0
    assert oct((base / "etc/stamps").stat().st_mode & 0o7777) == "0o755"
    assert sorted(os.listdir(base / "etc/stamps")) == ["deb12.json"]          # no temporary file left
    assert StampBook(book.directory).history("deb12") == [st]
    assert StampBook(book.directory).history("deb13") == []
    (tree / "etc/os-release").write_text("ID=debian\n")
    st2 = book.stamp(env(tree))
    assert st2.version == "" and st2.digest != st.digest
    assert StampBook(book.directory).history("deb12") == [st2, st]            # newest first
    assert TreeStamp.from_json(st2.to_json()) == st2


@needs_root
def test_stamp_label_from_the_version_key_and_label_grammar(base):
    tree = make_tree(base / "t")
    book = StampBook(str(base / "stamps"))
    with_key = SimpleNamespace(name="deb12", path=str(tree), kind="tree", dirs=DIRS, version="12.7")
    assert book.stamp(with_key).version == "12.7"
    assert book.stamp(with_key, "override").version == "override"
    for bad in ("a b", "../x", "sha256:abc", "-x", "x" * 65):
        with pytest.raises(UsageError, match="invalid version label"):
            book.stamp(env(tree), bad)


@needs_root
def test_stamp_refuses_images_broken_trees_and_untrusted_dirs(base):
    tree = make_tree(base / "t")
    book = StampBook(str(base / "stamps"))
    with pytest.raises(UsageError, match="images carry their digest; nothing to stamp"):
        book.stamp(Environment(name="img", path=str(base), kind="image"))
    tree.chmod(0o775)
    with pytest.raises(EnvironmentBroken) as e:
        book.stamp(env(tree))
    assert e.value.message == f"deb12 not stamped: {tree}: writable by group or others (mode 0775)"
    assert e.value.code == ExitCode.ENV_BROKEN
    tree.chmod(0o755)
    (base / "stamps").mkdir(mode=0o755)
    (base / "stamps").chmod(0o775)
    with pytest.raises(PolicyError, match="must be a directory of root's"):
        book.stamp(env(tree))
    (base / "stamps").chmod(0o755)
    os.chown(base / "stamps", 1234, 0)
    with pytest.raises(PolicyError, match="must be a directory of root's"):
        book.stamp(env(tree))
    os.chown(base / "stamps", 0, 0)
    assert book.stamp(env(tree))


def test_stamp_needs_root(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NotPermitted):
        StampBook(str(tmp_path)).stamp(env(make_tree(tmp_path / "t")))


@needs_root
def test_side_by_side_current_find_and_still_there(base):
    t11 = make_tree(base / "deb12-2026.11")
    t12 = make_tree(base / "deb12-2026.12", extra=b"new")
    book = StampBook(str(base / "stamps"))
    s11 = book.stamp(env(t11), "2026.11")
    s12 = book.stamp(env(t12), "2026.12")
    assert s11.digest != s12.digest
    book = StampBook(book.directory)
    policy_env = env(t12)
    assert book.current(policy_env) == s12
    assert book.current(env(t11)) == s11
    assert book.current(env(base / "deb12-other")) is None
    # full digest, prefix, label
    assert book.find("deb12", s11.digest) == s11
    assert book.find("deb12", s11.digest[:7 + 12]) == s11
    assert book.find("deb12", s12.digest[:7 + 40]) == s12
    assert book.find("deb12", "2026.11") == s11
    assert book.find("deb12", "2026.12") == s12
    assert book.find("deb12", "2026.10") is None
    assert book.find("deb12", "sha256:" + "f" * 64) is None or s11.digest.startswith("sha256:ffff")
    assert book.find("deb13", "2026.11") is None
    with pytest.raises(UsageError, match="at least 12"):
        book.find("deb12", s11.digest[:7 + 11])
    with pytest.raises(UsageError):
        book.find("deb12", "sha256:" + s11.digest[7:].upper())
    with pytest.raises(UsageError, match="not a digest"):
        book.find("deb12", "a b")
    assert book.still_there(s11) is None and book.still_there(s12) is None
    # the old version goes away: find still names it (the caller says why it cannot run)
    shutil.rmtree(t11)
    assert book.find("deb12", "2026.11") == s11
    assert book.still_there(s11) == f"{t11} is gone"
    # the new one is replaced at the same path (a rebuild renamed into place) and not re-stamped
    os.rename(t12, base / "old")
    make_tree(t12, extra=b"rebuilt")
    assert book.still_there(s12) == (f"{t12} has been replaced since it was stamped on "
                                     f"{time.strftime('%Y-%m-%d', time.localtime(s12.stamped))}")
    assert book.current(policy_env) is None                     # the stamp no longer describes it
    os.unlink(t12 / "bin")
    shutil.rmtree(t12)
    (base / "x").write_text("")
    os.rename(base / "x", t12)
    assert book.still_there(s12) == f"{t12} has been replaced (no longer a directory)"


@needs_root
def test_newest_label_wins_and_restamped_paths_supersede(base):
    a, b = make_tree(base / "a"), make_tree(base / "b", extra=b"b")
    book = StampBook(str(base / "stamps"))
    old_a = book.stamp(env(a), "stable")
    new_b = book.stamp(env(b), "stable")
    assert book.find("deb12", "stable") == new_b
    # the newest is gone: the newest one still there wins
    os.rename(b, base / "b-moved")
    assert book.find("deb12", "stable") == old_a
    os.rename(base / "b-moved", b)
    # a tree changed in place and stamped again: its older stamp names content that is no longer there
    (a / "etc/os-release").write_text("changed\n")
    a2 = book.stamp(env(a), "a2")
    assert book.find("deb12", old_a.digest) is None
    assert book.find("deb12", "a2") == a2
    assert book.find("deb12", "stable") == new_b
    assert [s.version for s in book.live("deb12")] == ["a2", "stable"]
    assert [s.version for s in book.history("deb12")] == ["a2", "stable", "stable"]


@needs_root
def test_ambiguous_prefix_is_refused_same_digest_is_not(base):
    d = base / "stamps"
    common = "sha256:" + "0123456789ab"
    one, two = common + "0" * 52, common + "1" * 52
    write_book(d, "deb12", [fake(digest=one, path="/os/a"), fake(digest=two, path="/os/b"),
                            fake(digest=one, path="/os/c", stamped=5.0)])
    book = StampBook(str(d))
    with pytest.raises(AmbiguousVersion) as e:
        book.find("deb12", common)
    assert e.value.code == ExitCode.REFUSED
    assert e.value.message == (f"deb12@{common} is ambiguous: it matches 2 stamped versions "
                               f"({one[:23]}, {two[:23]}); give more digits")
    assert book.find("deb12", common + "0").path == "/os/c"      # one digest at two paths: the newest
    assert book.find("deb12", two[:20]).path == "/os/b"


@needs_root
@pytest.mark.parametrize("how", ["group-writable", "other-writable", "not root's", "dir group-writable",
                                 "dir not root's"])
def test_untrusted_stamp_file_is_refused(base, how):
    d = base / "stamps"
    f = write_book(d, "deb12", [fake()])
    if how == "group-writable":
        f.chmod(0o664)
    elif how == "other-writable":
        f.chmod(0o646)
    elif how == "not root's":
        os.chown(f, 1234, 1234)
    elif how == "dir group-writable":
        d.chmod(0o775)
    else:
        os.chown(d, 1234, 0)
    with pytest.raises(PolicyError) as e:
        StampBook(str(d)).history("deb12")
    assert e.value.code == ExitCode.POLICY_INVALID == 78
    assert e.value.message.startswith(f"{f}: stamp file not trusted: ")
    assert StampBook(str(d), trusted=False).history("deb12") == [fake()]    # a user's own reading


@needs_root
@pytest.mark.parametrize("text", [
    "", "not json", "[]", '{"format": 1, "environment": "deb12"}',
    '{"format": 2, "environment": "deb12", "stamps": []}',
    '{"format": 1, "environment": "deb13", "stamps": []}',
    '{"format": 1, "environment": "deb12", "stamps": {}}',
    '{"format": 1, "environment": "deb12", "stamps": [], "extra": 1}',
    '{"format": 1, "environment": "deb12", "stamps": [{}]}',
    "[" * 100000,
])
def test_malformed_stamp_file_is_refused(base, text):
    d = base / "stamps"
    d.mkdir(mode=0o755)
    (d / "deb12.json").write_text(text)
    with pytest.raises(PolicyError) as e:
        StampBook(str(d)).history("deb12")
    assert e.value.message.startswith(f"{d}/deb12.json: malformed stamp file: ")
    assert "\n" not in e.value.message


def test_stamp_json_is_strict():
    good = fake(version="v1").to_dict()
    assert TreeStamp.from_dict(dict(good)) == fake(version="v1")
    bad = [
        {**good, "digest": "sha256:" + "0" * 63},
        {**good, "digest": "sha256:" + "A" * 64},
        {**good, "digest": "md5:" + "0" * 64},
        {**good, "version": "a b"},
        {**good, "environment": "../x"},
        {**good, "path": "relative"},
        {**good, "path": "/a\nb"},
        {**good, "files": -1},
        {**good, "bytes": True},
        {**good, "stamped": "yesterday"},
        {**good, "stamped": float("nan")},
        {**good, "root_key": [1, 2]},
        {**good, "root_key": [1, 2, "3"]},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "files"},
    ]
    for b in bad:
        with pytest.raises(ValueError):
            TreeStamp.from_dict(b)
    with pytest.raises(ValueError):
        TreeStamp.from_json("{")
    assert DIGEST_RE == r"sha256:[0-9a-f]{64}"


def test_invalid_names_never_become_paths(tmp_path):
    book = StampBook(str(tmp_path))
    for name in ("../policy", "a/b", ".hidden", ""):
        with pytest.raises(UsageError):
            book.history(name)


@needs_root
def test_verify(base):
    tree = make_tree(base / "t")
    book = StampBook(str(base / "stamps"))
    assert book.verify(env(tree)) == [f"deb12: the tree at {tree} is not stamped: stamp it with "
                                      f"`envsched env stamp deb12`"]
    st = book.stamp(env(tree))
    assert StampBook(book.directory).verify(env(tree)) == []
    (tree / "usr/lib/new").write_text("")
    day = time.strftime("%Y-%m-%d", time.localtime(st.stamped))
    assert StampBook(book.directory).verify(env(tree)) == [
        f"deb12: the tree at {tree} no longer matches its stamp {st.digest[:19]} (stamped {day}): "
        f"re-stamp it with `envsched env stamp deb12`"]
    book.stamp(env(tree))
    assert StampBook(book.directory).verify(env(tree)) == []
    assert book.verify(Environment(name="img", path="/x.sqfs", kind="image")) == []


@needs_root
def test_lookups_are_fast(base):
    """Every job start reads the history (a fresh book each time: no cache): well under 1 ms."""
    tree = make_tree(base / "t")
    book = StampBook(str(base / "stamps"))
    for i in range(20):
        book.stamp(env(tree), f"v{i}")
    e = env(tree)
    n = 300
    start = time.perf_counter()
    for _ in range(n):
        b = StampBook(book.directory)
        assert b.current(e) is not None and b.find("deb12", "v19") is not None
    per = (time.perf_counter() - start) / n
    print(f"\nhistory+current+find with 20 stamps: {per * 1e6:.0f} us")
    assert per < 1e-3
