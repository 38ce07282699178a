"""`envsched env stamp | versions | verify` for real: busybox trees, a trusted policy, the CLI."""
from __future__ import annotations

import json
import os
import re
import shutil
import time

import pytest

from envsched.versions import manifest_digest

pytestmark = pytest.mark.ns

STAMP_LINE = re.compile(r"(\S+) (sha256:[0-9a-f]{64})(?: (\S+))? \((\d+) files, (\d+) bytes\)\Z")


@pytest.fixture
def stamp_site(site_dir):
    """A policy directory of its own under the session's site (its stamps/ beside it), and two
    versions of one environment side by side: /os/stable-2026.11 and /os/stable-2026.12."""
    d = site_dir.root / f"stamp-{os.urandom(4).hex()}"
    d.mkdir(mode=0o755)
    trees = {v: site_dir.build_env(f"{d.name}-stable-{v}", "debian", v) for v in ("2026.11", "2026.12")}

    def policy(version: str, extra: str = ""):
        return site_dir.policy(body=f'\n[environments.stable]\npath = "{trees[version]}"\n{extra}',
                               name=f"{d.name}/policy.toml")
    yield d, trees, policy
    shutil.rmtree(d)
    for t in trees.values():
        shutil.rmtree(t, ignore_errors=True)


def test_stamp_two_versions_side_by_side_list_and_verify(stamp_site, envsched_cmd):
    d, trees, policy = stamp_site
    p = str(policy("2026.11"))
    r = envsched_cmd("--policy", p, "env", "stamp", "stable", "--version", "2026.11")
    assert r.returncode == 0, r.stderr
    m = STAMP_LINE.match(r.stdout.strip())
    assert m, r.stdout
    d11, files, size = manifest_digest(str(trees["2026.11"]), ("bin", "etc", "lib", "lib32", "lib64", "libx32",
                                                               "opt", "sbin", "usr"))
    assert m.groups() == ("stable", d11, "2026.11", str(files), str(size))
    assert files > 200 and size > 500_000                      # busybox and its applets' links
    stamps = d / "stamps"
    assert oct(stamps.stat().st_mode & 0o7777) == "0o755" and stamps.stat().st_uid == 0
    assert oct((stamps / "stable.json").stat().st_mode & 0o7777) == "0o644"

    # the admin builds the next version beside it, points the policy at it and stamps it
    p = str(policy("2026.12"))
    r = envsched_cmd("--policy", p, "env", "stamp", "stable", "--version", "2026.12")
    assert r.returncode == 0, r.stderr
    d12 = STAMP_LINE.match(r.stdout.strip()).group(2)
    assert d12 != d11

    r = envsched_cmd("--policy", p, "env", "versions", "stable")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ENVIRONMENT", "DIGEST", "VERSION", "STAMPED", "FILES", "BYTES", "STATE", "PATH"]
    today = time.strftime("%Y-%m-%d")
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[1], r[2], r[3], r[7], r[8]) for r in rows] == [
        ("stable", d12[:19], "2026.12", today, "current", str(trees["2026.12"])),
        ("stable", d11[:19], "2026.11", today, "-", str(trees["2026.11"])),
    ]
    r = envsched_cmd("--policy", p, "env", "versions", "--json")
    listed = json.loads(r.stdout)
    assert [(s["environment"], s["digest"], s["version"], s["state"]) for s in listed] == [
        ("stable", d12, "2026.12", "current"), ("stable", d11, "2026.11", "")]

    r = envsched_cmd("--policy", p, "env", "verify", "stable")
    assert (r.returncode, r.stdout) == (0, f"stable: ok {d12} ({listed[0]['files']} files)\n")

    # a file changed in the current tree: verify says so, with the fix; the CLI exits 1
    with open(trees["2026.12"] / "etc" / "envsched-mini-release", "a") as f:
        f.write("edited\n")
    r = envsched_cmd("--policy", p, "env", "verify")
    assert r.returncode == 1, r.stdout + r.stderr
    assert (f"stable: the tree at {trees['2026.12']} no longer matches its stamp {d12[:19]} (stamped {today}): "
            f"re-stamp it with `envsched env stamp stable`") in r.stdout.splitlines()
    assert "deb12: the tree at" in r.stdout and "is not stamped" in r.stdout   # the site's other trees

    # the old version is removed: listed as gone
    shutil.rmtree(trees["2026.11"])
    r = envsched_cmd("--policy", p, "env", "versions", "stable")
    assert r.stdout.splitlines()[2].split()[7] == "gone"


def test_stamp_refusals(stamp_site, envsched_cmd, site_dir):
    d, trees, policy = stamp_site
    p = str(policy("2026.11"))
    r = envsched_cmd("--policy", p, "env", "stamp", "nosuch")
    assert (r.returncode, r.stderr) == (64, f"envsched: no environment 'nosuch' in {p} (defined: deb12, deb13, "
                                            f"stable)\n")
    r = envsched_cmd("--policy", p, "env", "stamp", "stable", "--version", "bad label")
    assert r.returncode == 64 and "invalid version label" in r.stderr
    # a broken tree is not stamped
    trees["2026.11"].chmod(0o775)
    r = envsched_cmd("--policy", p, "env", "stamp", "stable")
    assert (r.returncode, r.stderr) == (69, f"envsched: stable not stamped: {trees['2026.11']}: writable by group "
                                            f"or others (mode 0775)\n")
    assert not (d / "stamps" / "stable.json").exists()
    trees["2026.11"].chmod(0o755)
    # not as a user
    r = envsched_cmd("--policy", p, "env", "stamp", "stable", user="nobody")
    assert (r.returncode, r.stderr) == (73, "envsched: envsched env stamp needs root\n")
    # a stamp file someone else could have written is not believed
    assert envsched_cmd("--policy", p, "env", "stamp", "stable").returncode == 0
    (d / "stamps" / "stable.json").chmod(0o664)
    r = envsched_cmd("--policy", p, "env", "versions")
    assert r.returncode == 78
    assert r.stderr.startswith(f"envsched: {d}/stamps/stable.json: stamp file not trusted: ")


def test_stamp_real_debian_tree(real_tree, site_dir, envsched_cmd):
    """The debootstrap tree: stamped in a few seconds at most, and verify agrees."""
    d = site_dir.root / f"stamp-real-{os.urandom(4).hex()}"
    d.mkdir(mode=0o755)
    try:
        p = str(site_dir.policy(body=f'\n[environments.real]\npath = "{real_tree}"\n', name=f"{d.name}/policy.toml"))
        start = time.monotonic()
        r = envsched_cmd("--policy", p, "env", "stamp", "real", "--version", "bookworm")
        took = time.monotonic() - start
        assert r.returncode == 0, r.stderr
        m = STAMP_LINE.match(r.stdout.strip())
        print(f"\nstamped {real_tree}: {m.group(4)} files, {int(m.group(5)) >> 20} MiB in {took:.2f} s")
        assert int(m.group(4)) > 3000 and took < 30
        r = envsched_cmd("--policy", p, "env", "verify", "real")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        shutil.rmtree(d)
