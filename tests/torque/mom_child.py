"""The forked pbs_mom child of one batch job (tests/torque/mom_harness.py starts it as root).

Torque runs the prologue from the very process that then becomes the job
(src/resmom/start_exec.c, TMomFinalizeChild: run_pelog(PE_PROLOG, ...) and later exec of the
shell in the same child), so the prologue's parent pid is the job's pid. This helper does the
same: prologue as a child (argv, empty environment, stdin /dev/null, stdout/stderr the job's
files, cwd mom_priv), its exit code mapped as start_exec.c does (1: abort, other non-zero:
requeue), then a new session, the job's user, and the exec of the job starter with the job's
environment and the script on stdin.

    python3 mom_child.py SPEC.json      exit: the job's status, or 201 abort / 202 requeue
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

ABORT, REQUEUE = 201, 202


def main() -> int:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    out = os.open(spec["stdout"], os.O_WRONLY | os.O_APPEND)
    err = os.open(spec["stderr"], os.O_WRONLY | os.O_APPEND)
    if spec.get("prologue"):
        # Torque's "Script environment" appendix: environment empty, stdin /dev/null, stdout and
        # stderr connected to the job's output files; cwd mom_priv ("execution directory")
        rc = subprocess.run(spec["prologue"], env={}, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                            cwd=spec["mom_priv"], timeout=300).returncode
        if rc == 1:
            return ABORT
        if rc != 0:
            return REQUEUE
    script = os.open(spec["script"], os.O_RDONLY)       # opened as root: stdin of the job
    os.dup2(script, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    # [SRC-SE] TMomFinalizeChild: a new session, then become_the_user_sjr (the starter is not run
    # privileged), then the exec of [job_starter, shell, -shell]
    os.setsid()
    os.initgroups(spec["user"], spec["gid"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    os.chdir(spec["cwd"])
    os.execve(spec["path"], spec["argv"], spec["env"])
    return 127


if __name__ == "__main__":
    sys.exit(main())
