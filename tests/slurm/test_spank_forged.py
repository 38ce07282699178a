"""The job's user forges the values the SPANK plugin's decision rests on, every way Slurm 22.05 lets
them reach slurmstepd; the job must run with the decision of its real partition and account, or be
refused, never get what the forged value would grant.

What reaches slurmstepd (Slurm 22.05.8 source; docs/admin.md, "Slurm", has the table):
  * a step's environment is the one its srun sends (slurmstepd_job.c: stepd_step_rec_create copies
    the launch request's env; nothing before user_init rewrites SLURM_JOB_PARTITION/ACCOUNT). Stock
    srun writes SLURM_JOB_ACCOUNT only when it made the allocation and the job has an account, and
    never inside an allocation; so `export SLURM_JOB_ACCOUNT=x; srun`, `srun --export=...`, or a
    variable set before a standalone srun of a job without an account arrive as the user wrote them.
    SLURM_JOB_PARTITION is rewritten by stock srun, but srun is the user's program: the tests use
    srun with a copy of libslurmfull.so in which that name is changed (LD_LIBRARY_PATH beats srun's
    RUNPATH), and the forged partition arrives too;
  * a batch step's environment is the submission's; slurmstepd rewrites SLURM_JOB_PARTITION, and
    SLURM_JOB_ACCOUNT only when the job has an account (env.c: env_array_for_batch_job).
The plugin takes both from the job record the job prolog writes from the job credential (jobrec.c).
Where a forging job runs, its payload shows that the forged value did reach it, and that it did not
count; where it asks for what only the forged value would grant, it is refused and never runs.

The test cluster has no accounting: a job's account is what -A said, or none.
"""
from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from spanksite import chown_to, lines, policy_text, run_batch

pytestmark = pytest.mark.slurm

# seen|partition|account|CHOS|PRETTY_NAME, shell builtins only (srun --export=NONE leaves no PATH)
SEEN = '#!/bin/sh\n. /etc/os-release\necho "seen|$SLURM_JOB_PARTITION|$SLURM_JOB_ACCOUNT|$CHOS|$PRETTY_NAME"\n'
DEB12 = "Debian 12 (mini)"
DEB13 = "Debian 13 (mini)"


@pytest.fixture(scope="module")
def forge_site(site):
    """The site's policy plus: `legacyonly` only in partition legacy, `physonly` only for account
    physics, `rootgroup` only for group root, and account physics defaulting to deb13 (partition
    legacy already does)."""
    base = site.policy.read_text()
    site.policy.write_text(policy_text(
        site.cluster.dir, site.run_dir, site.trees,
        extra_defaults='accounts = { physics = "deb13" }\n',
        extra_environments=f"""[environments.legacyonly]
path = "{site.trees['deb13']}"
allow_partitions = ["legacy"]
[environments.physonly]
path = "{site.trees['deb13']}"
allow_accounts = ["physics"]
[environments.rootgroup]
path = "{site.trees['deb13']}"
allow_groups = ["root"]
"""))
    yield site
    site.policy.write_text(base)


@pytest.fixture(autouse=True)
def views_released(forge_site):
    """After every test: every view released and every job record removed."""
    yield
    forge_site.settle()


@pytest.fixture(scope="module")
def tools(slurm_user):
    """In the user's home: seen.sh (what the payload saw), and forge/libslurmfull.so, srun's library
    with SLURM_JOB_PARTITION renamed, so srun no longer writes the variable and the user's value is
    sent as it is (what any user can build: srun is not set-user-ID)."""
    home = Path(slurm_user.pw_dir)
    seen = home / "seen.sh"
    seen.write_text(SEEN)
    seen.chmod(0o755)
    chown_to(seen, slurm_user)
    out = subprocess.run(["ldd", shutil.which("srun")], stdout=subprocess.PIPE, text=True, check=True).stdout
    lib = next(line.split("=>")[1].split()[0] for line in out.splitlines() if "libslurmfull.so" in line)
    data = Path(lib).read_bytes()
    assert data.count(b"SLURM_JOB_PARTITION\0") >= 1
    forge = home / "forge"
    forge.mkdir(exist_ok=True)
    (forge / "libslurmfull.so").write_bytes(data.replace(b"SLURM_JOB_PARTITION\0", b"SLURM_JOB_PARTITIOX\0"))
    for p in (forge, forge / "libslurmfull.so"):
        chown_to(p, slurm_user)
    yield {"seen": str(seen), "forge": str(forge)}
    seen.unlink()
    shutil.rmtree(forge)


def seen_rows(text: str):
    """(partition, account, CHOS, os) of every `seen|` line."""
    return [tuple(line.split("|")[1:]) for line in text.splitlines() if line.startswith("seen|")]


def refusal(env: str, source: str, reason: str) -> str:
    return f"envsched: environment '{env}' ({source}) refused: {reason}"


def refusals(text: str, env: str, source: str, reason: str) -> int:
    """How many of the user's refusal lines (one per refused step and node; the exact lines around
    them are test_spank_messages.py's)."""
    return sum(line.startswith(refusal(env, source, reason)) for line in text.splitlines())


# ------------------------------------------------------------------------------------------ batch
@pytest.mark.parametrize("how", ["environment", "--export"])
def test_forged_partition_batch(forge_site, slurm_user, home, tools, how):
    env, args = ({"SLURM_JOB_PARTITION": "legacy"}, []) if how == "environment" else \
        ({}, ["--export=ALL,SLURM_JOB_PARTITION=legacy"])
    marker = home / f"ran-{uuid.uuid4().hex[:6]}"
    job, state, out = run_batch(forge_site, home, slurm_user.pw_name, "-p", "debug", "--chos=legacyonly", *args,
                                script=f"touch {marker}", env=env)
    assert state.state == "FAILED" and not marker.exists(), out
    assert refusal("legacyonly", "option", "not allowed in partition 'debug'") in out
    # no request: the real partition's default (none: the site's deb12), not legacy's deb13
    job, state, out = run_batch(forge_site, home, slurm_user.pw_name, "-p", "debug", *args,
                                script=tools["seen"], env=env)
    assert state.state == "COMPLETED", out
    assert seen_rows(out) == [("debug", "", "deb12", DEB12)]


@pytest.mark.parametrize("how", ["environment", "--export"])
def test_forged_account_batch(forge_site, slurm_user, home, tools, how):
    env, args = ({"SLURM_JOB_ACCOUNT": "physics"}, []) if how == "environment" else \
        ({}, ["--export=ALL,SLURM_JOB_ACCOUNT=physics"])
    marker = home / f"ran-{uuid.uuid4().hex[:6]}"
    job, state, out = run_batch(forge_site, home, slurm_user.pw_name, "--chos=physonly", *args,
                                script=f"touch {marker}", env=env)
    assert state.state == "FAILED" and not marker.exists(), out
    assert refusal("physonly", "option", "not allowed for account (none)") in out
    # the job has no account, so Slurm leaves the forged value in the batch environment: the payload
    # sees it, the decision does not (physics would default to deb13)
    job, state, out = run_batch(forge_site, home, slurm_user.pw_name, *args, script=tools["seen"], env=env)
    assert state.state == "COMPLETED", out
    assert seen_rows(out) == [("debug", "physics", "deb12", DEB12)]


def test_forged_in_batch_script_before_srun(forge_site, slurm_user, home, tools):
    """A batch script (on the host OS: CHOS=local, so its steps inherit no --chos) sets the variables
    before its steps, with stock srun, srun --export and the renamed-variable srun; a step's decision
    uses the job's partition and account."""
    seen, forge = tools["seen"], tools["forge"]
    script = f"""
export SLURM_JOB_PARTITION=legacy SLURM_JOB_ACCOUNT=physics
srun --chos=physonly {seen}
LD_LIBRARY_PATH={forge} srun --chos=legacyonly {seen}
srun --export=ALL,SLURM_JOB_ACCOUNT=physics --chos=physonly {seen}
CHOS=legacyonly LD_LIBRARY_PATH={forge} srun {seen}
unset CHOS
srun {seen}
LD_LIBRARY_PATH={forge} srun {seen}
srun --export=NONE {seen}
srun --export=SLURM_JOB_ACCOUNT=physics,SLURM_JOB_PARTITION=legacy {seen}
exit 0
"""
    job, state, out = run_batch(forge_site, home, slurm_user.pw_name, "-p", "debug", script=script,
                                env={"CHOS": "local"})
    assert state.state == "COMPLETED", out
    assert refusals(out, "physonly", "option", "not allowed for account (none)") == 2, out
    assert refusals(out, "legacyonly", "option", "not allowed in partition 'debug'") == 1, out
    assert refusals(out, "legacyonly", "CHOS variable", "not allowed in partition 'debug'") == 1, out
    # the forged values reached every step; each got the site default of the job's real partition
    # and account (deb12), not partition legacy's or account physics's (deb13)
    # (srun --export=NAME=VALUE: srun's own SLURM_* variables win over the list, the partition with them)
    assert seen_rows(out) == [
        ("debug", "physics", "deb12", DEB12),
        ("legacy", "physics", "deb12", DEB12),
        ("debug", "physics", "deb12", DEB12),
        ("debug", "physics", "deb12", DEB12),
    ], out


# ------------------------------------------------------------------------------------------ srun
def test_forged_srun_standalone(forge_site, slurm_user, home, tools):
    c, user, seen = forge_site.cluster, slurm_user.pw_name, tools["seen"]
    forged = {"SLURM_JOB_PARTITION": "legacy", "SLURM_JOB_ACCOUNT": "physics", "LD_LIBRARY_PATH": tools["forge"]}
    for request, reason in (("legacyonly", "not allowed in partition 'debug'"),
                            ("physonly", "not allowed for account (none)")):
        r = c.srun("-p", "debug", f"--chos={request}", seen, user=user, env=forged)
        assert r.returncode != 0 and not seen_rows(r.stdout), r.stdout
        assert refusal(request, "option", reason) in r.stderr
    r = c.srun("-p", "debug", seen, user=user, env=forged)
    assert r.returncode == 0, r.stderr
    assert seen_rows(r.stdout) == [("legacy", "physics", "deb12", DEB12)]
    # --export with stock srun: the account gets through, the partition is srun's own
    r = c.srun("-p", "debug", "--export=SLURM_JOB_ACCOUNT=physics,SLURM_JOB_PARTITION=legacy", seen, user=user)
    assert r.returncode == 0, r.stderr
    assert seen_rows(r.stdout) == [("debug", "physics", "deb12", DEB12)]
    # a real account: the forged one is sent only where srun writes none; the decision is chem's
    r = c.srun("-A", "chem", "--chos=physonly", seen, user=user, env=forged)
    assert r.returncode != 0 and refusal("physonly", "option", "not allowed for account 'chem'") in r.stderr


def test_forged_inside_salloc(forge_site, slurm_user, home, tools):
    """salloc -A chem; the shell forges, then runs steps (the submit-time check skips them: only
    slurmstepd decides)."""
    seen, forge = tools["seen"], tools["forge"]
    steps = home / f"steps-{uuid.uuid4().hex[:6]}.sh"
    steps.write_text(f"""#!/bin/sh
export SLURM_JOB_PARTITION=legacy SLURM_JOB_ACCOUNT=physics
srun --chos=physonly {seen}
LD_LIBRARY_PATH={forge} srun --chos=legacyonly {seen}
srun {seen}
LD_LIBRARY_PATH={forge} srun {seen}
""")
    steps.chmod(0o755)
    chown_to(steps, slurm_user)
    try:
        r = forge_site.cluster.run(["salloc", "-Q", "-A", "chem", "-p", "debug", "-N1", str(steps)],
                                   user=slurm_user.pw_name, timeout=90)
    finally:
        steps.unlink()
    assert refusal("physonly", "option", "not allowed for account 'chem'") in r.stderr, r.stderr
    assert refusal("legacyonly", "option", "not allowed in partition 'debug'") in r.stderr, r.stderr
    # stock srun in an allocation writes no SLURM_JOB_ACCOUNT: the user's physics reaches the step
    assert seen_rows(r.stdout) == [("debug", "physics", "deb12", DEB12),
                                   ("legacy", "physics", "deb12", DEB12)], r.stdout


def test_forged_identity_variables(forge_site, slurm_user, home, tools):
    """Job id, user and step come from SPANK items (the launch request slurmd checked against the
    credential), groups and ~/.chos from the uid's passwd and group entries: variables naming root,
    its group, another home or step change nothing."""
    fake_home = home / f"fakehome-{uuid.uuid4().hex[:6]}"
    fake_home.mkdir()
    (fake_home / ".chos").write_text("deb13\n")
    for p in (fake_home, fake_home / ".chos"):
        chown_to(p, slurm_user)
    seen = tools["seen"]
    forged = (f"SLURM_JOB_UID=0 SLURM_UID=0 SLURM_JOB_USER=root USER=root LOGNAME=root HOME={fake_home} "
              f"SLURM_JOB_GID=0 SLURM_STEP_ID=999 SLURM_STEPID=999 SLURMD_NODENAME=node9")
    steps = home / f"steps-{uuid.uuid4().hex[:6]}.sh"
    steps.write_text(f"""#!/bin/sh
echo "job=$SLURM_JOB_ID"
env {forged} srun --chos=secret {seen}
env {forged} srun --chos=rootgroup {seen}
env _SLURM_SPANK_OPTION_envsched_chos=secret srun {seen}
env {forged} srun {seen}
""")
    steps.chmod(0o755)
    chown_to(steps, slurm_user)
    try:
        r = forge_site.cluster.run(["salloc", "-Q", "-N1", str(steps)], user=slurm_user.pw_name, timeout=90)
    finally:
        steps.unlink()
        shutil.rmtree(fake_home)
    # the option's variable (how srun hands --chos to slurmstepd) is a request like --chos itself
    assert refusals(r.stderr, "secret", "option", "restricted to other users or groups") == 2, r.stderr
    assert refusals(r.stderr, "rootgroup", "option", "restricted to other users or groups") == 1, r.stderr
    assert seen_rows(r.stdout) == [("debug", "", "deb12", DEB12)], r.stdout
    job = lines(r.stdout)["job"]
    log = (forge_site.cluster.dir / "envsched.log").read_text().splitlines()
    mine = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in log if f" job={job}." in line]
    assert [(m["event"], m["job"], m["user"]) for m in mine if m["event"] in ("refused", "decided")] == [
        ("refused", f"{job}.0", slurm_user.pw_name), ("refused", f"{job}.1", slurm_user.pw_name),
        ("refused", f"{job}.2", slurm_user.pw_name), ("decided", f"{job}.3", slurm_user.pw_name)], mine


def test_forged_client_configuration(forge_site, slurm_user, home, tools):
    """The user's srun may read a slurm.conf of the user's with no plugin at all (no --chos, no
    submit-time check): slurmstepd loads the plugin from slurmd's configuration regardless."""
    c = forge_site.cluster
    mine = home / f"slurm-{uuid.uuid4().hex[:6]}.conf"
    empty = home / "plugstack-empty.conf"
    empty.write_text("")
    mine.write_text("\n".join(f"PlugStackConfig={empty}" if line.startswith("PlugStackConfig=") else line
                              for line in c.conf.read_text().splitlines()) + "\n")
    for p in (mine, empty):
        chown_to(p, slurm_user)
    try:
        forged = {"SLURM_CONF": str(mine), "SLURM_JOB_ACCOUNT": "physics"}
        for chos, reason in (("secret", "restricted to other users or groups"),
                             ("physonly", "not allowed for account (none)")):
            r = c.srun(tools["seen"], user=slurm_user.pw_name, env={**forged, "CHOS": chos})
            assert r.returncode != 0 and not seen_rows(r.stdout), r.stdout
            assert refusals(r.stderr, chos, "CHOS variable", reason) == 1, r.stderr
    finally:
        mine.unlink()
        empty.unlink()


def test_forged_account_cannot_add_lines_to_the_record(forge_site, slurm_user, home):
    """Without accounting an account is any string: one holding a line break ("chem\nqueue legacy")
    gets no record at all (never a record with a second queue line), and the job is refused."""
    marker = home / f"ran-{uuid.uuid4().hex[:6]}"
    job, state, out = run_batch(forge_site, home, slurm_user.pw_name, "-p", "debug", "-A", "chem\nqueue legacy",
                                "--chos=legacyonly", script=f"touch {marker}")
    assert state.state == "FAILED" and not marker.exists(), out
    assert "envsched: this node has no record of the job's partition and account" in out
    assert not forge_site.record_path(job).exists()
    log = forge_site.cluster.logs(lines=400)
    assert f"envsched: job {job}: the job record was not written" in log


# ------------------------------------------------------------------------------------------ controls
def test_real_partition_and_account_decide(forge_site, slurm_user, home, tools):
    """The other way round: the job's real partition and account grant and default as the policy says,
    whatever the variables say."""
    user, seen = slurm_user.pw_name, tools["seen"]
    for args, expected in ((["-p", "legacy", "--chos=legacyonly"], ("legacy", "", "legacyonly", DEB13)),
                           (["-A", "physics", "--chos=physonly"], ("debug", "physics", "physonly", DEB13)),
                           (["-A", "physics", "--export=ALL,SLURM_JOB_ACCOUNT=chem"],
                            ("debug", "physics", "deb13", DEB13)),
                           (["-p", "legacy", "--export=ALL,SLURM_JOB_PARTITION=debug"],
                            ("legacy", "", "deb13", DEB13))):
        job, state, out = run_batch(forge_site, home, user, *args, script=seen)
        assert state.state == "COMPLETED", (args, out)
        assert seen_rows(out) == [expected], (args, out)
    r = forge_site.cluster.srun("-A", "physics", "--chos=physonly", seen, user=user,
                                env={"SLURM_JOB_ACCOUNT": "chem"})
    assert r.returncode == 0, r.stderr
    assert seen_rows(r.stdout) == [("debug", "physics", "physonly", DEB13)]


# ------------------------------------------------------------------------------------------ the record
def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.1)


def test_job_record_is_roots_and_goes_with_the_job(forge_site, slurm_user, home):
    c = forge_site.cluster
    job = c.sbatch("#!/bin/sh\nsleep 300\n", "-p", "legacy", "-A", "physics", "--chos=deb12",
                   "-o", f"{home}/out-%j.txt", user=slurm_user.pw_name, cwd=str(home))
    try:
        rec = forge_site.record_path(job)
        _wait_for(rec)
        st, dst = rec.stat(), rec.parent.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o644)
        assert (dst.st_uid, dst.st_mode & 0o777) == (0, 0o700)
        assert rec.read_text() == (f"uid {slurm_user.pw_uid}\nuser {slurm_user.pw_name}\nqueue legacy\n"
                                   f"account physics\n")
    finally:
        c.run(["scancel", job])
        c.wait(job)
    forge_site.settle()
    assert not forge_site.record_path(job).exists()


def test_steps_refused_without_a_usable_record(forge_site, slurm_user, home, tools):
    """Fail-closed: with the record gone, naming another user, or not root's alone, no step runs,
    not even one the memo of an earlier step would let join without the resolver."""
    c, user, seen = forge_site.cluster, slurm_user.pw_name, tools["seen"]
    job = c.sbatch("#!/bin/sh\nsleep 300\n", "-p", "debug", "--chos=deb12", "-o", f"{home}/out-%j.txt",
                   user=user, cwd=str(home))
    rec = forge_site.record_path(job)
    try:
        _wait_for(rec)
        good = rec.read_text()
        r = c.srun(f"--jobid={job}", "--chos=deb12", seen, user=user)
        assert r.returncode == 0 and seen_rows(r.stdout) == [("debug", "", "deb12", DEB12)], r.stderr
        for spoil in ("remove", "other uid", "user's file", "group-writable"):
            if spoil == "remove":
                rec.unlink()
            elif spoil == "other uid":
                rec.write_text(good.replace(f"uid {slurm_user.pw_uid}\n", "uid 0\n"))
            elif spoil == "user's file":
                rec.write_text(good)
                chown_to(rec, slurm_user)
            else:
                rec.write_text(good)
                rec.chmod(0o664)
            r = c.srun(f"--jobid={job}", "--chos=deb12", seen, user=user)
            assert r.returncode != 0 and not seen_rows(r.stdout), (spoil, r.stdout)
            assert ("envsched: this node has no record of the job's partition and account" in r.stderr or
                    "envsched: this node's record of the job is not usable" in r.stderr), (spoil, r.stderr)
            rec.unlink(missing_ok=True)
    finally:
        c.run(["scancel", job])
        c.wait(job)
    forge_site.settle()
