"""The job's $TMPDIR is writable inside the view (issue 16, item 3: it was read-only in every job on
a site configured as docs/admin.md said, which breaks OpenMPI's session directory and PMIx).

execd makes TMPDIR = <queue tmpdir>/<job>.<task>.<queue> (the test clusters' tmpdir is c.dir/tmp,
not under the shared /tmp); `site-config render` reads the queues' tmpdir with `qconf -sq` and binds
it read-write into every view: the prolog's --bind (all.q), the starter's bind= (legacy.q, qrsh: the
starter prepares) and the user-namespace starter's --bind (user.q)."""
from __future__ import annotations

import os
import time

import pytest
from test_uge_chos import gc_until_released
from ugesite import INTERACTIVE_QUEUE, SITE_QUEUE, UNPRIVILEGED_QUEUE, render_section

pytestmark = pytest.mark.uge

# writes a file and a directory in $TMPDIR, then waits (at most 20 s) for the host to answer there
JOB = r"""#!/bin/sh
. /etc/os-release
echo "os=$VERSION_ID tmpdir=$TMPDIR"
echo "$JOB_ID" > "$TMPDIR/file" && mkdir "$TMPDIR/dir" && echo inner > "$TMPDIR/dir/inner" || exit 3
n=0
while [ ! -e "$TMPDIR/host-was-here" ] && [ $n -lt 200 ]; do sleep 0.1; n=$((n + 1)); done
[ -e "$TMPDIR/host-was-here" ] && echo "TMPDIR writable and shared with the host"
"""


def test_render_binds_the_queue_tmpdir_read_write(uge_site):
    """What the cluster was configured from: the tmpdir qconf -sq shows, bound rw in both places."""
    tmp = str(uge_site.cluster.dir / "tmp")
    rendered = uge_site.rendered
    assert f"#   tmpdir {tmp} (all.q, legacy.q) [qconf -sq]: bound read-write (not in the view otherwise)\n" \
        in rendered, rendered[:2000]
    prolog = next(ln for ln in render_section(rendered, "queue") if ln.startswith("prolog "))
    assert f" --bind {tmp}:{tmp}:rw " in prolog + " ", prolog
    assert f"bind={tmp}:{tmp}:rw" in render_section(rendered, "starter_conf")


@pytest.mark.parametrize("queue", [SITE_QUEUE, UNPRIVILEGED_QUEUE])
def test_job_writes_its_tmpdir_and_the_host_sees_it(uge_site, uge_user, queue):
    c = uge_site.cluster
    job = c.qsub(JOB, "-q", queue, "-l", "chos=deb13", user=uge_user.pw_name)
    tmpdir = c.dir / "tmp" / f"{job}.1.{queue}"
    deadline = time.monotonic() + 30
    while not (tmpdir / "dir" / "inner").exists():       # seen from the host while the job runs
        if time.monotonic() > deadline or c.job_state(job) is None:
            acct = c.wait(job)
            pytest.fail(f"the job wrote nothing to {tmpdir} (exit {acct.exit_status}):\n{c.output(job)}")
        time.sleep(0.05)
    assert (tmpdir / "file").read_text() == f"{job}\n"
    st = os.stat(tmpdir / "dir")
    assert (st.st_uid, (tmpdir / "dir" / "inner").read_text()) == (uge_user.pw_uid, "inner\n")
    (tmpdir / "host-was-here").touch()
    acct = c.wait(job)
    out = c.output(job)
    assert (acct.exit_status, acct["qname"]) == (0, queue), out
    assert f"os=13 tmpdir={tmpdir}\n" in out and "TMPDIR writable and shared with the host\n" in out, out


def test_qrsh_writes_its_tmpdir(uge_site, uge_user):
    """legacy.q runs no prolog: the set-user-ID starter prepares the view with its bind= lines."""
    c = uge_site.cluster
    p = c.qrsh("-l", "chos=deb13", 'echo x > $TMPDIR/file && mkdir $TMPDIR/dir && cat $TMPDIR/file '
               '&& echo tmpdir=$TMPDIR', user=uge_user.pw_name)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert f"x\ntmpdir={c.dir}/tmp/" in p.stdout and f".1.{INTERACTIVE_QUEUE}" in p.stdout, (p.stdout, p.stderr)
    gc_until_released(uge_site)
