"""What `chos submit` (DRMAA) meets on Grid Engine 8.1.9 beyond the behaviour tested in
test_uge_drmaa.py: why the client JSV is needed, two former limits (arguments through envsched's
starters, several jobs per process) and the cost of a submission. Same site and helpers as
test_uge_drmaa.py."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Iterator, List

import pytest
from test_uge_drmaa import SHOW, DrmaaSite, checked_site, chos_submit, out_file, python_as, script

pytestmark = pytest.mark.uge


@pytest.fixture(scope="module")
def drmaa_site(uge_jsv) -> Iterator[DrmaaSite]:
    yield from checked_site(uge_jsv)


@pytest.mark.parametrize("queue", ["all.q", "user.q"])    # set-user-ID starter, user-namespace starter
def test_arguments_arrive_verbatim(drmaa_site, uge_user, queue):
    """DRMAA jobs are binary jobs with no_shell=1: like plain SGE, both starters exec them with the
    arguments as given (no re-splitting, no expansion)."""
    out = out_file(drmaa_site)
    p = chos_submit(drmaa_site, "--env", "deb13", "--queue", queue, "--output", str(out),
                    str(script(drmaa_site, SHOW, uge_user)), "a b", "$HOME", user=uge_user)
    assert p.returncode == 3, p.stderr
    acct = drmaa_site.cluster.wait(p.stdout.strip())    # gone from qstat: the epilog has released the view
    assert acct["qname"] == queue
    text = out.read_text()
    assert " os=13 " in text and text.endswith(" args=[a b][$HOME]\n"), text


def test_without_client_jsv_drmaa_verification_fails(drmaa_site, uge_user):
    """What a cell without the client JSV gives: DRMAA's -w e rejects the unoffered complex."""
    sge_request = drmaa_site.cluster.common / "sge_request"
    saved = sge_request.read_text()
    sge_request.unlink()
    try:
        p = chos_submit(drmaa_site, "--env", "deb13", str(script(drmaa_site, SHOW, uge_user)), user=uge_user)
    finally:
        sge_request.write_text(saved)
        sge_request.chmod(0o644)
    assert p.returncode == 76, p.stderr
    assert p.stderr.endswith(" in deb13: error: no suitable queues\n"), p.stderr
    print("no client JSV:", p.stderr.strip())


SEVERAL = """import time
from envsched.submit import DrmaaSession, get_scheduler, make_request
s = get_scheduler('uge')
reqs = [make_request(%r, [], 'deb13', output=o) for o in %r]
def run(d, r):
    t0 = time.monotonic(); job = d.run(r); print(job, '%%.3f' %% (time.monotonic() - t0))
with DrmaaSession(s) as d:       # two jobs in one session
    run(d, reqs[0]); run(d, reqs[1])
with DrmaaSession(s) as d:       # and one in a second session of the same process
    run(d, reqs[2])
"""


def test_further_jobs_of_a_process_keep_their_request(drmaa_site, uge_user):
    """libdrmaa applies sge_request again at every runJob of a process (new sessions too), so the k-th
    job runs the client JSV k times; from the second run on the JSV finds the ENVSCHED_REQUEST its first
    run recorded and keeps it (--accept-request-var): every job runs in deb13, not the default deb12."""
    outs = [str(out_file(drmaa_site)) for _ in range(3)]
    path = str(script(drmaa_site, SHOW, uge_user))
    log_start = drmaa_site.log.stat().st_size
    p = python_as(drmaa_site, SEVERAL % (path, outs), uge_user, preload=True)
    lines = [line.split() for line in p.stdout.splitlines()]
    jobs = [job for job, _ in lines]
    assert (p.returncode, len(jobs)) == (0, 3), (p.stdout, p.stderr)
    assert [drmaa_site.cluster.wait(job).exit_status for job in jobs] == [3, 3, 3]
    runs = drmaa_site.log.read_bytes()[log_start:].decode(errors="replace").count(">>> PARAM CONTEXT client")
    assert runs == 1 + 2 + 3
    assert [Path(o).read_text().split()[:3] for o in outs] == [["req=deb13", "chos=deb13", "os=13"]] * 3
    print("runJob seconds, 1st to 3rd job of one process:", " ".join(t for _, t in lines))


TIMING = """import time
from envsched.submit import DrmaaSession, get_scheduler, make_request
s = get_scheduler('uge'); r = make_request(%r, [], 'deb13', output='/dev/null')
t0 = time.monotonic()
with DrmaaSession(s) as d:
    t1 = time.monotonic(); job = d.run(r); t2 = time.monotonic()
    ok = d.wait(job, 'deb13', 120).exit_code == 0
print('%%.3f %%.3f %%.3f' %% (t1 - t0, t2 - t1, time.monotonic() - t2), ok)
"""


def test_submission_cost(drmaa_site, uge_user):
    """Seconds per `chos submit --no-wait` (Python start, re-exec, DRMAA session, client and server JSV),
    the API's parts (session, runJob, wait; the first job of a process), and one whole submit-and-wait."""
    c = drmaa_site.cluster
    path = str(script(drmaa_site, "#!/bin/sh\nexit 0\n", uge_user))
    cli: List[float] = []
    for _ in range(5):
        t0 = time.monotonic()
        p = chos_submit(drmaa_site, "--env", "deb13", "--no-wait", "--output", "/dev/null", path, user=uge_user)
        cli.append(time.monotonic() - t0)
        assert p.returncode == 0, p.stderr
        c.wait(p.stdout.strip())
    api = []
    for _ in range(3):
        p = python_as(drmaa_site, TIMING % path, uge_user, preload=True)
        assert p.returncode == 0 and p.stdout.endswith("True\n"), (p.stdout, p.stderr)
        api.append([float(x) for x in p.stdout.split()[:3]])
    init, per_job, wait_one = (statistics.median(col) for col in zip(*api))
    t0 = time.monotonic()
    p = chos_submit(drmaa_site, "--env", "deb13", "--output", "/dev/null", path, user=uge_user)
    turnaround = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    print(f"chos submit --no-wait median {1000 * statistics.median(cli):.0f} ms; API medians: session "
          f"{1000 * init:.0f} ms, runJob {1000 * per_job:.0f} ms, wait {wait_one:.2f} s; "
          f"chos submit (wait) turnaround {turnaround:.2f} s")
    assert statistics.median(cli) < 5
