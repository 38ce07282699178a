"""`envsched metrics` on real pins: two views prepared with the CLI, counted, released and gc'd."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from testlib import TEST_USER, two_tree_policy

pytestmark = pytest.mark.ns


def _samples(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(s: dict, name: str, **labels: str) -> float:
    return s.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_site(site_dir):
    """A policy of its own: its own run_dir and log file, so other tests' pins and lines do not count."""
    pytest.importorskip("prometheus_client")
    root = Path(tempfile.mkdtemp(prefix="metrics-", dir=site_dir.root))
    root.chmod(0o755)
    run_dir = root / "run"
    policy = two_tree_policy(root, run_dir, site_dir.envs)
    out_dir = root / "textfile"
    out_dir.mkdir(mode=0o755)
    was_mount = os.path.ismount(run_dir)
    yield root, policy, run_dir, out_dir / "envsched.prom"
    if not was_mount and os.path.ismount(run_dir):      # made private on a host whose /run is shared
        subprocess.run(["umount", "-l", str(run_dir)], check=False)
    shutil.rmtree(root)


def test_metrics_counts_real_pins(metrics_site, envsched_cmd, test_user, home):
    root, policy, run_dir, prom = metrics_site
    pol = ("--policy", str(policy))
    owner = subprocess.Popen(["sleep", "300"])            # the second view's owner: gone before gc
    keys = []
    try:
        for key, env, pid in (("slurm-901", "deb12", os.getpid()), ("uge-902.1", "deb13", owner.pid)):
            r = envsched_cmd(*pol, "prepare", "--key", key, "--user", TEST_USER, "--request", env,
                             "--owner-pid", str(pid), "--job", key.split("-")[1])
            assert r.returncode == 0, r.stderr
            keys.append(key)
            assert json.loads(r.stdout)["environment"] == env
        r = envsched_cmd(*pol, "prepare", "--key", "slurm-903", "--user", TEST_USER, "--request", "no\"pe x=1")
        assert r.returncode == 77, r.stderr                # refused: the hostile name is in the log, quoted
        prepared = [ln for ln in (root / "envsched.log").read_text().splitlines() if "event=prepared" in ln]
        assert len(prepared) == 2 and all(" setup_ms=" in ln for ln in prepared)

        r = envsched_cmd(*pol, "metrics", "--output", str(prom))
        assert r.returncode == 0 and r.stderr == "" and r.stdout == "", r.stderr
        assert oct(prom.stat().st_mode & 0o777) == "0o644"
        assert sorted(p.name for p in prom.parent.iterdir()) == ["envsched.prom"]
        state = run_dir / ".metrics-state.json"
        st = state.stat()
        assert st.st_uid == 0 and oct(st.st_mode & 0o777) == "0o600"
        s = _samples(prom.read_text())
        assert _get(s, "envsched_active_views") == 2
        assert _get(s, "envsched_jobs_started_total", environment="deb12", scheduler="slurm") == 1
        assert _get(s, "envsched_jobs_started_total", environment="deb13", scheduler="uge") == 1
        assert _get(s, "envsched_refusals_total", reason="invalid_name") == 1
        assert _get(s, "envsched_view_setup_seconds_count") == 2
        assert _get(s, "envsched_view_setup_seconds_bucket", le="+Inf") == 2
        assert 0 < _get(s, "envsched_view_setup_seconds_sum") < 60
        assert _get(s, "envsched_pins_released_total", cause="release") == 0
        assert _get(s, "envsched_pins_released_total", cause="gc") == 0
        assert _get(s, "envsched_log_readable") == 1 and _get(s, "envsched_policy_valid") == 1

        r = envsched_cmd(*pol, "metrics")                  # stdout; nothing new in the log
        assert r.returncode == 0, r.stderr
        assert _samples(r.stdout) == s

        r = envsched_cmd(*pol, "release", "--key", "slurm-901")
        assert r.returncode == 0, r.stderr
        owner.kill()
        owner.wait()
        r = envsched_cmd(*pol, "gc")
        assert r.returncode == 0 and r.stdout == "released uge-902.1\n", r.stderr
        keys = []
        r = envsched_cmd(*pol, "metrics", "--output", str(prom))
        assert r.returncode == 0, r.stderr
        s2 = _samples(prom.read_text())
        assert _get(s2, "envsched_active_views") == 0
        assert _get(s2, "envsched_pins_released_total", cause="release") == 1
        assert _get(s2, "envsched_pins_released_total", cause="gc") == 1
        for name, labels in s:                             # the counters went on, nothing recounted
            if name.endswith(("_total", "_count", "_bucket", "_sum")) and name != "envsched_pins_released_total":
                assert s2[(name, labels)] == s[(name, labels)], name
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for key in keys:
            envsched_cmd(*pol, "release", "--key", key)


def test_metrics_needs_root_and_reports_an_invalid_policy(metrics_site, envsched_cmd, test_user):
    root, policy, run_dir, prom = metrics_site
    r = envsched_cmd("--policy", str(policy), "metrics", user=TEST_USER)
    assert r.returncode == 73 and r.stdout == ""
    bad = root / "bad.toml"
    bad.write_text("[site\n")
    bad.chmod(0o644)
    r = envsched_cmd("--policy", str(bad), "metrics", "--output", str(prom))
    assert r.returncode == 78
    assert _samples(prom.read_text()) == {("envsched_policy_valid", ()): 0.0}
