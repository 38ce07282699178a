"""Node hooks through the real Grid Engine integration (#12): the root prolog's `envsched
prepare` runs the environment's node prolog once, the C epilog hands a pin with hooks to the
resolver, which runs the node epilog; a failing prolog refuses the job in one line. The hooks are
recording scripts (McKernel cannot be installed here)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from testlib import hook_environments, recording_hooks

pytestmark = pytest.mark.uge

@pytest.fixture(scope="module")
def hooked(uge_site):
    root = uge_site.cluster.dir
    top = root / "hooks"
    records = recording_hooks(top, {"boot": 0, "shutdown": 0, "broken-boot": 7})
    original = uge_site.policy.read_text()
    tree = next(iter(uge_site.trees.values()))
    uge_site.policy.write_text(original + hook_environments(tree, top))
    try:
        yield records
    finally:
        uge_site.policy.write_text(original)
        shutil.rmtree(top)


def test_prolog_and_epilog_once_per_job(uge_site, uge_user, hooked):
    c = uge_site.cluster
    job = c.qsub("#!/bin/sh\necho ran in $CHOS\n", "-l", "chos=mck", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, c.output(job))
    assert c.output(job).strip() == "ran in mck"
    deadline = time.monotonic() + 15
    while len(list(hooked.glob(f"*-uge-{job}*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    runs = sorted(p.read_text().split()[0] for p in hooked.glob(f"*-uge-{job}*"))
    assert runs == ["epilog", "prolog"]
    assert all(p.read_text().split()[3] == uge_user.pw_name for p in hooked.glob(f"*-uge-{job}*"))


def test_a_failing_prolog_refuses_the_job(uge_site, uge_user, hooked):
    c = uge_site.cluster
    marker = Path(uge_user.pw_dir) / "hooked-ran"
    marker.unlink(missing_ok=True)
    job = c.qsub(f"#!/bin/sh\ntouch {marker}\n", "-l", "chos=mck-broken", user=uge_user.pw_name,
                 cwd=uge_user.pw_dir)
    acct = c.wait(job)
    assert not marker.exists()
    out = c.output(job)
    assert "envsched: environment mck-broken: its node prolog failed on this node (exit 7" in out, \
        (acct.fields, out)
