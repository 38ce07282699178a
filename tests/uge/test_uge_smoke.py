"""The throwaway Grid Engine cluster runs real jobs (no envsched integration): script jobs as root and as an
ordinary user, binary jobs, exit status propagation into qacct, qrsh, the second queue legacy.q."""
from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

pytestmark = pytest.mark.uge

REPORT = """#!/bin/sh
{{
  echo "user=$(id -un)"
  echo "pwd=$(pwd)"
  echo "job=$JOB_ID"
  echo "queue=$QUEUE"
  echo "host=$HOSTNAME"
}} > {out}
"""


def read_report(path: Path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def queue_rows(cluster) -> set:
    p = cluster.run(["qstat", "-f"])
    assert p.returncode == 0, p.stderr
    return {tuple(line.split()[:3]) for line in p.stdout.splitlines() if "@" in line}


def test_cluster_is_up(uge_cluster):
    c = uge_cluster
    p = c.run(["qhost", "-h", c.host])
    assert p.returncode == 0, p.stderr
    row = [line.split() for line in p.stdout.splitlines() if line.split()[:1] == [c.host]]
    assert row and row[0][6] != "-", p.stdout          # a load value was reported
    assert queue_rows(c) == {(f"all.q@{c.host}", "BI", "0/0/2"), (f"legacy.q@{c.host}", "BI", "0/0/2")}
    sconf = c.qconf("-ssconf").stdout
    assert "schedule_interval                 0:0:1" in sconf
    conf = c.qconf("-sconf", "global").stdout.split()
    for key in ("qlogin_command", "rsh_command", "rlogin_command"):
        assert conf[conf.index(key) + 1] == "builtin"
    for q in c.queues:
        qconf = dict(line.split(None, 1) for line in c.qconf("-sq", q).stdout.splitlines())
        assert (qconf["pe_list"].strip(), qconf["load_thresholds"].strip()) == ("NONE", "NONE")
    st = os.stat(c.dir)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o755)
    assert not str(c.dir).startswith("/tmp")
    assert c.env["SGE_ROOT"] == str(c.root) and c.root != Path("/var/lib/gridengine")
    print(f"start.sh: ready in {c.ready_seconds}s")


def test_script_job_as_root(uge_cluster):
    c = uge_cluster
    out = c.dir / "work" / "root-report.txt"
    job_id = c.qsub(REPORT.format(out=out) + "echo to-stdout\n", "-cwd")
    acct = c.wait(job_id)
    assert (acct.exit_status, acct.failed) == (0, 0), acct.fields
    assert (acct["qname"], acct["owner"], acct["hostname"]) == ("all.q", "root", c.host)
    r = read_report(out)
    assert r == {"user": "root", "pwd": str(c.dir / "work"), "job": job_id, "queue": "all.q", "host": c.host}
    assert c.output(job_id) == "to-stdout\n"
    out.unlink()


def test_script_job_as_user(uge_cluster, uge_user: pwd.struct_passwd):
    c = uge_cluster
    home = Path(uge_user.pw_dir)
    out = home / "report.txt"
    out.unlink(missing_ok=True)
    # no -cwd: the job runs in the user's home; -o relative to it, with a pseudo variable
    job_id = c.qsub(REPORT.format(out=out) + "echo to-stdout; echo to-stderr >&2\n",
                    "-o", "uge-$JOB_ID.out", "-e", "uge-$JOB_ID.err", user=uge_user.pw_name, cwd="/")
    acct = c.wait(job_id)
    assert (acct.exit_status, acct.failed) == (0, 0), acct.fields
    assert (acct["qname"], acct["owner"]) == ("all.q", uge_user.pw_name)
    r = read_report(out)
    assert r == {"user": uge_user.pw_name, "pwd": uge_user.pw_dir, "job": job_id, "queue": "all.q",
                 "host": c.host}
    for path, text in ((out, None), (home / f"uge-{job_id}.out", "to-stdout\n"),
                       (home / f"uge-{job_id}.err", "to-stderr\n")):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (uge_user.pw_uid, uge_user.pw_gid), path
        if text is not None:
            assert path.read_text() == text
        path.unlink()


def test_binary_job(uge_cluster, uge_user: pwd.struct_passwd):
    c = uge_cluster
    # a binary job runs as `sh -c "CMD ARGS"`: arguments are joined, expanded and re-split
    job_id = c.qsub(None, "-b", "y", "-N", "binjob", "/bin/echo", "binary", "$JOB_ID", "a  b",
                    user=uge_user.pw_name)
    acct = c.wait(job_id)
    assert (acct.exit_status, acct.failed, acct["owner"]) == (0, 0, uge_user.pw_name), acct.fields
    assert acct["jobname"] == "binjob"
    assert c.output(job_id) == f"binary {job_id} a b\n"
    out = c.dir / "out" / f"binjob.o{job_id}"
    assert os.stat(out).st_uid == uge_user.pw_uid
    out.unlink()


def test_exit_status_propagates(uge_cluster):
    c = uge_cluster
    job_id = c.qsub("#!/bin/sh\necho before-exit\nexit 3\n")
    acct = c.wait(job_id)
    assert (acct.exit_status, acct.failed) == (3, 0), acct.fields
    assert c.output(job_id) == "before-exit\n"
    job_id = c.qsub(None, "-b", "y", "/bin/false")
    assert c.wait(job_id).exit_status == 1


def test_qrsh(uge_cluster, uge_user: pwd.struct_passwd):
    c = uge_cluster
    p = c.qrsh("hostname")
    assert (p.returncode, p.stdout) == (0, f"{c.host}\n"), p.stderr
    # the arguments are one remote shell command line; its exit status is qrsh's
    p = c.qrsh("echo", "$QUEUE", "$JOB_ID;", "id", "-un;", "pwd;", "exit", "5", user=uge_user.pw_name)
    assert p.returncode == 5, p.stderr
    queue, job_id, user, wd = p.stdout.split()
    assert (queue, user, wd) == ("all.q", uge_user.pw_name, uge_user.pw_dir)
    acct = c.wait(job_id)
    assert (acct["owner"], acct.exit_status) == (uge_user.pw_name, 5), acct.fields
    p = c.qrsh("cat", stdin="through-stdin\n")
    assert (p.returncode, p.stdout) == (0, "through-stdin\n"), p.stderr


def test_legacy_queue(uge_cluster):
    c = uge_cluster
    out = c.dir / "work" / "legacy-report.txt"
    job_id = c.qsub(REPORT.format(out=out), "-q", "legacy.q", "-cwd")
    acct = c.wait(job_id)
    assert (acct.exit_status, acct["qname"]) == (0, "legacy.q"), acct.fields
    assert read_report(out)["queue"] == "legacy.q"
    out.unlink()
    p = c.qrsh("-q", "legacy.q", "echo $QUEUE")
    assert (p.returncode, p.stdout) == (0, "legacy.q\n"), p.stderr


def test_set_global_conf(uge_cluster):
    c = uge_cluster
    before = c.qconf("-sconf", "global").stdout
    c.set_global_conf(administrator_mail="envsched@example.invalid")
    conf = c.qconf("-sconf", "global").stdout.split()
    assert conf[conf.index("administrator_mail") + 1] == "envsched@example.invalid"
    c.set_global_conf(administrator_mail="none")
    assert c.qconf("-sconf", "global").stdout == before
    assert not list((c.dir / "conf").glob("mconf-*"))
    assert stat.S_IMODE(os.stat(c.dir / "conf").st_mode) == 0o755
