"""A contract harness that plays Torque's pbs_mom (and qsub's submit filter) as documented.

Torque is not installable here, so envsched's Torque shims are tested against this stand-in,
not a live pbs_mom. Every behaviour it relies on cites its source:

  [AG-PE]  Adaptive Computing, Torque admin guide, appendix "Prologue and epilogue scripts":
           prologue/epilogue run as root on Mother Superior from TORQUE_HOME/mom_priv; "readable
           and executable by root and NOT writable by anyone but root"; the execution
           directory is mom_priv.
  [AG-ENV] same guide, "Script environment": prologue argv jobid, user, group, jobname,
           resource list, queue, account (6.x/9.x: the script path as 8th argument); epilogue
           argv jobid, user, group, jobname, session id, resource list, resources used, queue,
           account, exit code (11th: script path); "the environment passed to the script is
           empty"; stdin /dev/null; stdout/stderr connected to the job's output files.
  [SRC-SE]  Torque source src/resmom/start_exec.c (adaptivecomputing/torque, master): TMomFinalizeChild
           runs the prologue in the child that later execs the job; prologue exit 1 ->
           JOB_EXEC_FAIL2 (abort), other non-zero -> JOB_EXEC_RETRY (requeue); the child starts a
           session (setsid) and, unless $job_starter_run_privileged is true, becomes the job's
           user (become_the_user_sjr: groups, gid, uid) before the exec; the job shell's argv0
           is "-" + basename(shell) (a login shell) unless $source_login_batch is false; the
           script is the shell's stdin; cwd PBS_O_INITDIR else the user's home.
           InitUserEnv: the job's variables first, then pbs_mom's own (HOME, LOGNAME, PBS_JOBID,
           PBS_QUEUE, USER, PBS_JOBCOOKIE, ...), then, for a TM task, the task's own environment
           from the TM request, last (so a task sets USER, HOME, PBS_JOBID, ... to anything);
           a TM task gets neither USER nor LOGNAME from pbs_mom (no passwd entry passed).
           mom_jobstarter_execute_job: the batch job is exec'd as [job_starter, <shell path>,
           <shell argv0>, ...]; become_the_jobs_subprocess: a TM task as [job_starter, argv...];
           start_process: setsid and become_the_user_sjr for the task likewise.
  [SRC-TM]  src/resmom/mom_comm.c tm_request: a TM request names a job by id and cookie ("verify
           the jobid is known and the cookie matches"); src/lib/Libifl/tm.c tm_init takes both
           from PBS_JOBID/PBS_JOBCOOKIE in the caller's environment.
  [SRC-PC] Torque source src/resmom/parse_config.c: `$job_starter PATH` must name an existing
           file executable by its owner; `$job_starter_run_privileged` is a boolean (setbool).
  [AG-SF]  same guide, appendix "Job submission filter": the filter gets qsub's arguments, the
           script on stdin, prints the (possibly modified) script; a failing exit status makes
           qsub reject the job (documented for -1; qsub treats any non-zero status as a refusal).
"""
from __future__ import annotations

import itertools
import json
import os
import pwd
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
PERMISSION_ERROR = -1        # [AG-PE]/[REF]: a root script writable by others is not run
ABORT, REQUEUE = 201, 202    # mom_child.py's codes for [SRC-SE]'s prologue outcomes
_ids = itertools.count(100)


@dataclass
class Refused:
    stderr: str
    status: int


@dataclass
class Job:
    id: str
    user: pwd.struct_passwd
    script: str
    variables: Dict[str, str]           # Variable_List: PBS_O_* and the -v variables
    queue: str = "batch"
    account: str = ""
    cwd: Optional[str] = None           # PBS_O_INITDIR (-d); else the home [SRC-SE]


@dataclass
class Outcome:
    state: str                          # "completed", "aborted", "requeued", "not_run"
    exit_status: Optional[int]
    stdout: str
    stderr: str


@dataclass
class Mom:
    pbs_home: Path                      # TORQUE_HOME: mom_priv/{prologue,epilogue,jobs}
    starter: Optional[str]              # $job_starter, exec'd as the job's user [SRC-SE]
    submit_filter: Optional[str]
    out_dir: Path
    log: List[str] = field(default_factory=list)

    @property
    def mom_priv(self) -> Path:
        return self.pbs_home / "mom_priv"

    # ------------------------------------------------------------------ qsub
    def qsub(self, user: pwd.struct_passwd, script: str, args: Sequence[str] = (),
             submit_env: Optional[Dict[str, str]] = None) -> "Job | Refused":
        env = {"PATH": "/usr/bin:/bin", "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}
        env.update(submit_env or {})
        if self.submit_filter:                                          # [AG-SF]
            p = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
                                "--", self.submit_filter, *args], input=script, env=env, cwd=user.pw_dir,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
            if p.returncode != 0:
                return Refused(p.stderr, p.returncode)
            script = p.stdout
        variables = {"PBS_O_HOME": user.pw_dir, "PBS_O_LOGNAME": user.pw_name, "PBS_O_PATH": env["PATH"],
                     "PBS_O_SHELL": "/bin/sh", "PBS_O_WORKDIR": user.pw_dir, "PBS_O_QUEUE": "batch"}
        variables.update(parse_v(script, args, env))
        return Job(f"{next(_ids)}.torque-test", user, script, variables)

    # ------------------------------------------------------------------ the job on Mother Superior
    def job_env(self, job: Job, task: int = 1) -> Dict[str, str]:
        """[SRC-SE]: the job's variables first, pbs_mom's values over them."""
        env = dict(job.variables)
        env.update(HOME=job.user.pw_dir, LOGNAME=job.user.pw_name, USER=job.user.pw_name, SHELL="/bin/sh",
                   PBS_JOBNAME="job", PBS_JOBID=job.id, PBS_QUEUE=job.queue, PBS_JOBCOOKIE="0" * 32,
                   PBS_NODENUM="0", PBS_TASKNUM=str(task), PBS_MOMPORT="15003", PBS_ENVIRONMENT="PBS_BATCH",
                   ENVIRONMENT="BATCH", PBS_NODEFILE=str(self.mom_priv / "aux" / job.id))
        return env

    def run(self, job: Job, shell: str = "/bin/sh") -> Outcome:
        out, err = self.out_dir / f"{job.id}.o", self.out_dir / f"{job.id}.e"
        for f in (out, err):
            f.write_text("")
            os.chown(f, job.user.pw_uid, job.user.pw_gid)
            f.chmod(0o600)
        script_path = self.mom_priv / "jobs" / f"{job.id}.SC"
        script_path.write_text(job.script)
        script_path.chmod(0o500)
        prologue = self.mom_priv / "prologue"
        group = pwd.getpwuid(job.user.pw_uid).pw_gid
        spec = {"stdout": str(out), "stderr": str(err), "mom_priv": str(self.mom_priv), "script": str(script_path),
                "cwd": job.cwd or job.user.pw_dir, "env": self.job_env(job),
                # [SRC-SE]/[REF]: the starter in front of the shell and its login argv0
                "path": self.starter or shell,
                "argv": ([self.starter, shell] if self.starter else []) + ["-" + os.path.basename(shell)],
                "prologue": None, "user": job.user.pw_name, "uid": job.user.pw_uid, "gid": job.user.pw_gid}
        if prologue.exists():
            if not root_script_ok(prologue):                            # [AG-PE]: -1, job requeued
                self.log.append(f"prologue {prologue}: permission error")
                return Outcome("requeued", PERMISSION_ERROR, out.read_text(), err.read_text())
            spec["prologue"] = [str(prologue), job.id, job.user.pw_name, str(group), "job", "walltime=60",
                                job.queue, job.account, str(script_path)]   # [AG-ENV], 6.x script path
        spec_path = self.mom_priv / "aux" / f"{job.id}.json"
        spec_path.write_text(json.dumps(spec))
        p = subprocess.run([sys.executable, "-I", str(HERE / "mom_child.py"), str(spec_path)],
                           env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL, timeout=120)
        spec_path.unlink()
        state = {ABORT: "aborted", REQUEUE: "requeued"}.get(p.returncode, "completed")
        status = None if state != "completed" else p.returncode
        self.epilogue(job, out, err, status if status is not None else -2, str(script_path))
        script_path.unlink()
        return Outcome(state, status, out.read_text(), err.read_text())

    def epilogue(self, job: Job, out: Path, err: Path, status: int, script: str) -> Optional[int]:
        epilogue = self.mom_priv / "epilogue"
        if not epilogue.exists():
            return None
        if not root_script_ok(epilogue):
            return PERMISSION_ERROR
        with open(out, "a") as o, open(err, "a") as e:                  # [AG-ENV]
            return subprocess.run([str(epilogue), job.id, job.user.pw_name, str(job.user.pw_gid), "job", "4242",
                                   "walltime=60", "cput=0", job.queue, job.account, str(status), script],
                                  env={}, stdin=subprocess.DEVNULL, stdout=o, stderr=e, cwd=self.mom_priv,
                                  timeout=300).returncode

    def tm_spawn(self, job: Job, argv: Sequence[str], task: int = 2,
                 task_env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        """A TM task (pbsdsh, mpirun via tm): a new session, the job's user, [starter, argv...] with
        the job's environment and then the task's own (the TM request's, the user's) [SRC-SE]."""
        env = self.job_env(job, task)
        del env["USER"], env["LOGNAME"]                 # InitUserEnv without a passwd entry [SRC-SE]
        env.update(task_env or {})
        user = job.user

        def become_the_user() -> None:
            os.setsid()
            os.initgroups(user.pw_name, user.pw_gid)
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        return subprocess.run([self.starter, *argv] if self.starter else list(argv), env=env,
                              cwd=job.user.pw_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=60, preexec_fn=become_the_user)

    def prologue_parallel(self, job: Job) -> int:
        """mom_priv/prologue.parallel on a sister node: root, the prologue's arguments, no script
        there [AG-PE]/[AG-ENV]."""
        script = self.mom_priv / "prologue.parallel"
        if not root_script_ok(script):
            return PERMISSION_ERROR
        return subprocess.run([str(script), job.id, job.user.pw_name, str(job.user.pw_gid), "job", "walltime=60",
                               job.queue, job.account], env={}, stdin=subprocess.DEVNULL, cwd=self.mom_priv,
                              timeout=300).returncode

    def epilogue_parallel(self, job: Job) -> int:
        script = self.mom_priv / "epilogue.parallel"
        if not root_script_ok(script):
            return PERMISSION_ERROR
        return subprocess.run([str(script), job.id, job.user.pw_name, str(job.user.pw_gid), "job", "4242",
                               "walltime=60", "cput=0", job.queue, job.account, "0"], env={},
                              stdin=subprocess.DEVNULL, cwd=self.mom_priv, timeout=300).returncode


def root_script_ok(path: Path) -> bool:
    """[AG-PE]: a regular file of root's, not writable by group or others."""
    st = os.lstat(path)
    return stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def parse_v(script: str, args: Sequence[str], env: Dict[str, str]) -> Dict[str, str]:
    """qsub's -v: `#PBS -v` in the script, then the command line's -v (which wins)."""
    out: Dict[str, str] = {}

    def assign(value: str) -> None:
        for item in value.split(","):
            name, eq, val = item.partition("=")
            if name:
                out[name] = val if eq else env.get(name, "")
    for line in script.splitlines():
        if line.startswith("#PBS"):
            words = line[4:].split()
            for i, w in enumerate(words[:-1]):
                if w == "-v":
                    assign(words[i + 1])
        elif line.strip() and not line.startswith("#"):
            break
    for i, a in enumerate(args):
        if a == "-v" and i + 1 < len(args):
            assign(args[i + 1])
    return out
