"""Grid Engine jobs across hosts (#15), in the virtual cell (`uge_vsite`, tests/uge/vcell.py): two
execution hosts, each its own node with its own hostname, address, /run and run_dir.

A job's pin lives in the run_dir of the host it runs on and nowhere else; a tightly integrated PE
job (`-pe envsched 2`, allocation_rule $round_robin: one slot on each host) starts its second task
on the other host with `qrsh -inherit` from inside the view, and that task runs in the requested
environment too: the starter there has the resolver prepare the view (no prolog runs for it on
that host) and `envsched gc` collects that pin once the job is over; the task on the master's own
host joins the view the prolog made there. (This replaces test_uge_chos.py's single-host PE case,
whose `qrsh -inherit "$HOSTNAME"` never left the master's host.)
"""
from __future__ import annotations

import pytest

from vcell import TASK, Go, tasks_seen, wait_for

@pytest.mark.parametrize("host_index", [0, 1])
def test_batch_job_pins_only_its_own_host(uge_vsite, uge_user, host_index):
    """A batch job on one execution host: its pin in that host's run_dir only; released by the
    epilog there; it ran in deb13 on that host."""
    site = uge_vsite
    c = site.cluster
    host, other = c.exec_hosts[host_index], c.exec_hosts[1 - host_index]
    with Go(uge_user) as go:
        job = c.qsub("#!/bin/sh\n" + TASK.format(go=go) + "\n", "-q", f"all.q@{host}", "-l", "chos=deb13",
                     user=uge_user.pw_name)
        key = f"uge-{job}.1"
        wait_for(lambda: key in site.pins_on(host), f"the pin {key} on {host}", site=site)
        assert key not in site.pins_on(other), site.pins()
        go.give()
        acct = c.wait(job)
    assert acct.exit_status == 0 and acct["hostname"] == host, acct.fields
    assert tasks_seen(c.output(job)) == {host: ("13", "deb13")}, c.output(job)
    wait_for(lambda: key not in site.pins_on(host), f"the epilog's release of {key} on {host}", site=site)


def test_pe_job_across_hosts(uge_vsite, uge_user):
    """A 2-slot PE job spans both hosts; its master task starts a task on every host of
    $PE_HOSTFILE with `qrsh -inherit`: both run in deb13, each on its own host, each host's pin in
    its own run_dir. After the job: the master host's pin goes with the epilog, the other's with gc."""
    site = uge_vsite
    c = site.cluster
    go = Go(uge_user)
    task = TASK.format(go=go).replace("'", "'\\''")
    script = ("#!/bin/sh\n"
              "for h in $(awk '{print $1}' \"$PE_HOSTFILE\"); do\n"
              f"  qrsh -inherit \"$h\" '{task}' &\n"
              "done\n"
              "wait\n"
              'echo "master host=$(cat /proc/sys/kernel/hostname) done"\n')
    with go:
        job = c.qsub(script, "-pe", "envsched", "2", "-l", "chos=deb13", user=uge_user.pw_name)
        key = f"uge-{job}.1"
        wait_for(lambda: all(key in site.pins_on(h) for h in c.exec_hosts), f"{key} pinned on both hosts",
                  site=site)
        # each host's view is mounted in its own node (VNet.mounts), and the run_dir is nobody else's:
        # not the head node's, not this host's (the test's)
        for h in c.exec_hosts:
            assert f"{site.run_dir}/{key}/mnt" in site.mounts_on(h), site.mounts_on(h)
        assert not (c.net.root(c.head) / str(site.run_dir).lstrip("/")).exists()
        assert not site.run_dir.exists()
        go.give()
        acct = c.wait(job)
    out = c.output(job)
    assert acct.exit_status == 0, (acct.fields, out)
    assert tasks_seen(out) == {h: ("13", "deb13") for h in c.exec_hosts}, out
    master = acct["hostname"]
    slave, = [h for h in c.exec_hosts if h != master]
    wait_for(lambda: key not in site.pins_on(master), f"the epilog's release of {key} on {master}", site=site)
    site.gc()
    assert site.leftovers() == []
