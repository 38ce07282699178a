"""Exact versions with the real commands (#11): two stamped trees side by side, `chos list
--versions`, `NAME@LABEL` / `NAME@sha256:...` as root and as a user, CHOS_DIGEST, the admin log,
and a version that is gone."""
from __future__ import annotations

import shutil

import pytest

from testlib import TEST_USER

pytestmark = pytest.mark.ns


@pytest.fixture
def two_versions(site_dir):
    """vers at /os/vers-1 (stamped 2026.11), then the policy's path moved to /os/vers-2 (2026.12)."""
    base = site_dir.root / "versions-site"
    base.mkdir(mode=0o755)
    old = site_dir.build_env("vers-1", "debian", "12.1")
    new = site_dir.build_env("vers-2", "debian", "12.2")

    def policy(path):
        p = base / "policy.toml"
        p.write_text(f'[site]\nrun_dir = "{site_dir.run_dir}"\nlog_file = "{base}/envsched.log"\n'
                     f'[environments.vers]\npath = "{path}"\ndescription = "two versions"\n')
        p.chmod(0o644)
        return p

    yield base, old, new, policy
    shutil.rmtree(base)
    shutil.rmtree(old)
    shutil.rmtree(new)


def _stamp(envsched_cmd, policy, label):
    r = envsched_cmd("--policy", str(policy), "env", "stamp", "vers", "--version", label)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[1]


def test_two_versions_side_by_side(envsched_cmd, chos_cmd, two_versions, test_user):
    base, old, new, policy = two_versions
    d1 = _stamp(envsched_cmd, policy(old), "2026.11")
    p = policy(new)
    d2 = _stamp(envsched_cmd, p, "2026.12")
    assert d1 != d2
    r = chos_cmd("--policy", str(p), "list", "--versions", user=TEST_USER)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if "sha256:" in line]
    assert rows[0][:3] == ["=", d2[:19], "2026.12"] and rows[0][-1] == str(new)
    assert rows[1][:2] == [d1[:19], "2026.11"] and rows[1][-1] == str(old)
    show = 'echo "$(head -1 /etc/os-release) $CHOS $CHOS_DIGEST"'
    for request, digest, pretty in (("vers", d2, "12.2"), ("vers@2026.11", d1, "12.1"),
                                    (f"vers@{d1[:19]}", d1, "12.1"), (f"vers@{d2}", d2, "12.2")):
        for how in ("root", "user"):
            if how == "root":
                r = envsched_cmd("--policy", str(p), "exec", "--user", TEST_USER, "--no-user-file", "--request",
                                 request, "--", "/bin/sh", "-c", show)
            else:
                r = chos_cmd("--policy", str(p), "run", request, "--", "/bin/sh", "-c", show, user=TEST_USER)
            assert r.returncode == 0, (request, how, r.stderr)
            assert r.stdout.split()[-2:] == ["vers", digest] and pretty in r.stdout, (request, how, r.stdout)
    log = (base / "envsched.log").read_text()
    assert f"env=vers source=option path={old} digest={d1} version=2026.11" in log


def test_a_version_that_is_gone_is_refused_never_replaced(envsched_cmd, two_versions):
    base, old, new, policy = two_versions
    _stamp(envsched_cmd, policy(old), "2026.11")
    p = policy(new)
    _stamp(envsched_cmd, p, "2026.12")
    moved = old.with_name("vers-1.moved")
    old.rename(moved)
    try:
        for request in ("vers@2026.11", "vers@2025.01", "vers@sha256:000000000000"):
            r = envsched_cmd("--policy", str(p), "exec", "--user", TEST_USER, "--no-user-file", "--request", request,
                             "--", "/bin/true")
            assert r.returncode == 69, (request, r.stderr)
            assert len(r.stderr.splitlines()) == 1 and f"environment {request} is not on this node" in r.stderr
    finally:
        moved.rename(old)
    # an unstamped label that is the policy's own `version` key names the tree as it is
    p.write_text(p.read_text().replace('description = "two versions"', 'description = "x"\nversion = "edge"'))
    r = envsched_cmd("--policy", str(p), "explain", "--user", TEST_USER, "--no-user-file", "--request",
                     "vers@edge")
    assert r.returncode == 0 and "version: edge sha256:" in r.stdout, r.stdout


def test_forged_chos_digest_is_not_the_jobs(envsched_cmd, site_dir):
    """A CHOS_DIGEST the caller brings along never reaches a job whose version has no digest."""
    policy = site_dir.policy(name="policy-digest.toml")
    r = envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--no-user-file", "--request", "deb12",
                     "--", "/bin/sh", "-c", 'echo "[$CHOS_DIGEST]"', env={"CHOS_DIGEST": "sha256:" + "f" * 64})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
