"""`envsched site-config install --scheduler slurm` and `envsched doctor` on the throwaway cluster,
whose SlurmdSpoolDir is not Slurm's default (`<cluster>/spool/%n`) and whose munged listens in
`<cluster>/munge` (AuthInfo socket=): what install writes comes from `scontrol show config`, not
from defaults (the field report: `bind=/var/spool/slurmd` whatever SlurmdSpoolDir said, and every
job failed at start, exit 71). Then doctor is clean, a job runs in its environment, and a line
rendered with the old defaults is caught by doctor.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from spanksite import PLUGIN_DIR, lines, run_batch

pytestmark = pytest.mark.slurm
try:                            # the checkout's envsched, or the packages' (ENVSCHED_TEST_INSTALLED=1)
    from installed import envsched as _envsched
    ENVSCHED = _envsched()
except ImportError:
    ENVSCHED = str(Path(sys.executable).parent / "envsched")


@pytest.fixture
def plugstack_restored(site):
    """The site's plugstack.conf (and no backups of ours) after the test."""
    c = site.cluster
    before = c.plugstack.read_text()
    yield c.plugstack
    c.write_plugstack(before)
    for bak in c.dir.glob("plugstack.conf.envsched-bak.*"):
        bak.unlink()
    site.settle()


def envsched(site, *args, stdin=subprocess.DEVNULL):
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "SLURM_CONF": str(site.cluster.conf)}
    return subprocess.run([ENVSCHED, "--policy", str(site.policy), *args], stdin=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=120)


def install(site, *extra):
    return envsched(site, "site-config", "install", "--scheduler", "slurm", "--plugin",
                    f"{PLUGIN_DIR}/envsched_spank.so", "--resolver", ENVSCHED, "--host-tools",
                    str(site.cluster.dir / "tools"), *extra)


def test_install_from_scontrol_then_doctor_then_a_job(site, slurm_user, home, plugstack_restored):
    c = site.cluster
    root = c.dir
    before = c.plugstack.read_text()
    # not on a terminal and no --yes: the diff, and nothing written
    r = install(site)
    assert r.returncode == 64, r.stderr
    assert "not on a terminal: give --yes" in r.stderr
    assert r.stdout.startswith(f"--- {c.plugstack}\n+++ {c.plugstack}\n")
    assert c.plugstack.read_text() == before
    # --yes: written where PlugStackConfig says, from what scontrol says, the old file kept
    r = install(site, "--yes")
    assert r.returncode == 0, r.stderr
    text = c.plugstack.read_text()
    line, = [ln for ln in text.splitlines() if ln.startswith("required ")]
    assert line == (f"required {PLUGIN_DIR}/envsched_spank.so policy={site.policy} resolver={ENVSCHED} "
                    f"run_dir={site.run_dir} log_file={root}/envsched.log bind={root}/spool bind={root}/munge "
                    f"host_tools={root}/tools")
    assert f"#   SlurmdSpoolDir {root}/spool/%n [scontrol show config]\n" in text
    assert "/var/spool/slurmd" not in text and "bind=/run/munge" not in text
    st = c.plugstack.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
    backups = list(root.glob("plugstack.conf.envsched-bak.*"))
    assert len(backups) == 1 and backups[0].read_text() == before
    assert f"{c.plugstack}: backup {backups[0]}" in r.stdout
    # again: nothing to change, no new backup
    r = install(site, "--yes")
    assert r.returncode == 0 and "nothing to change" in r.stdout, r.stdout + r.stderr
    assert len(list(root.glob("plugstack.conf.envsched-bak.*"))) == 1
    # slurmd loaded the plugin when the site started (the same .so): nothing to restart, nothing wrong
    r = envsched(site, "doctor", "--scheduler", "slurm")
    problems = [ln for ln in r.stdout.splitlines() if not ln.startswith(("note: ", "envsched doctor: "))]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == f"envsched doctor: ok (policy {site.policy}; slurm)"
    # and a job runs in its environment
    job, state, out = run_batch(site, home, slurm_user.pw_name, "--chos=deb13")
    assert state.state == "COMPLETED", out
    assert lines(out)["PRETTY_NAME"] == "Debian 13 (mini)" and lines(out)["CHOS"] == "deb13"


def test_doctor_catches_the_default_spool_dir(site, plugstack_restored):
    """The field report's line (Slurm's defaults instead of what the cluster says): doctor names both
    binds that do not exist and the spool and munge directories that are not in views, exit 1."""
    c = site.cluster
    r = install(site, "--yes", "--spool-dir", "/nonexistent/slurmd", "--munge-socket-dir", "/nonexistent/munge")
    assert r.returncode == 0, r.stderr
    r = envsched(site, "doctor", "--scheduler", "slurm")
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert f"slurm: spool: SlurmdSpoolDir {c.dir}/spool/%n [scontrol show config] is not bound into views" in out
    assert f"slurm: munge: munged's socket directory {c.dir}/munge" in out
    assert "slurm: bind: bind=/nonexistent/slurmd" in out and "fails at start (exit 71)" in out
    assert all(" -- fix: " in ln for ln in out.splitlines()[:-1] if not ln.startswith("note: "))
    assert out.splitlines()[-1].startswith("envsched doctor: 4 problems")
