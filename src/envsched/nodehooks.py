"""Node hooks: root's commands from the policy, once per job per node, around the job's view (#12).

An environment may say `node_prolog = [PROGRAM, ARGS...]` and `node_epilog = [...]`: a site
that specializes the kernel per application (IHK/McKernel: reserve the job's CPUs and memory
and boot a lightweight kernel on them before the first task, shut it down after the last) or
the node in any other way. They run when a job's view is pinned on a node (pin.py: prepare,
before the view is built) and when it is released (after the view is gone), so once per job per
node whatever the number of tasks and steps that join it. `envsched exec` and `chos run` (no pin)
run none.

Each runs as root with a clean environment that tells it the job, from the scheduler and the
kernel (never from the job's environment):

  ENVSCHED_HOOK         prolog | epilog
  ENVSCHED_JOB          the scheduler's job id (as the shim gave it; may be empty)
  ENVSCHED_SCHEDULER    slurm, uge, torque, openpbs, pam (from the pin key)
  ENVSCHED_KEY          the pin's key
  ENVSCHED_USER, ENVSCHED_UID   the job's user
  ENVSCHED_ENVIRONMENT  the environment's name
  ENVSCHED_CPUS         the CPUs the job may use here: the pin owner's (the scheduler's step
                        daemon, shepherd or mom) allowed CPU list, /proc/PID/status
  ENVSCHED_MEMORY       its memory limit in bytes from its cgroup, "" where it has none

stdin is /dev/null; stdout and stderr (the first 64 KiB) go to the admin log with the exit
status (event=node_hook). A prolog that fails, or outlives site.node_hook_timeout, refuses the
job (exit 69, one line) and no view is made; an epilog that fails is logged (the job is over).
The program must be root's and not writable by group or others, on such a path (as the policy).
"""
from __future__ import annotations

import os
import syslog

from . import audit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence
from .errors import EnvironmentBroken, PolicyError

MAX_OUTPUT = 64 * 1024


class HookFailed(EnvironmentBroken):
    """A node prolog failed: the job does not run here (exit 69)."""


def hook_env(kind: str, key: str, environment: str, user: str, uid: int, owner_pid: int,
             job: Optional[str]) -> Dict[str, str]:
    from .cli.jobargs import scheduler_of
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "ENVSCHED_HOOK": kind,
            "ENVSCHED_JOB": job or "", "ENVSCHED_SCHEDULER": scheduler_of(key) or "", "ENVSCHED_KEY": key,
            "ENVSCHED_USER": user, "ENVSCHED_UID": str(uid), "ENVSCHED_ENVIRONMENT": environment,
            "ENVSCHED_CPUS": cpus_of(owner_pid), "ENVSCHED_MEMORY": memory_of(owner_pid)}


def cpus_of(pid: int) -> str:
    """The CPUs `pid` may run on (the scheduler's binding of the job's step daemon), as a list."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def memory_of(pid: int) -> str:
    """`pid`'s memory limit in bytes from its cgroup (v2 memory.max, v1 memory.limit_in_bytes)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    for line in lines:
        _, controllers, path = line.split(":", 2)
        candidates = []
        if controllers == "":
            candidates.append(f"/sys/fs/cgroup{path}/memory.max")
            candidates.append(f"/sys/fs/cgroup/unified{path}/memory.max")
        elif "memory" in controllers.split(","):
            candidates.append(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        for name in candidates:
            try:
                with open(name) as f:
                    value = f.read().strip()
            except OSError:
                continue
            if value.isdigit() and int(value) < (1 << 62):
                return value
    return ""


def run(kind: str, argv: Sequence[str], env: Dict[str, str], timeout: float) -> None:
    """Run one hook; raise HookFailed for a failed prolog (an epilog's failure is only logged)."""
    import subprocess
    from .policy.load import check_trusted_path
    where = {"hook": kind, "key": env.get("ENVSCHED_KEY"), "job": env.get("ENVSCHED_JOB") or None,
             "user": env.get("ENVSCHED_USER"), "env": env.get("ENVSCHED_ENVIRONMENT"),
             "scheduler": env.get("ENVSCHED_SCHEDULER") or None}
    try:
        check_trusted_path(argv[0], f"node_{kind}")
        if not os.access(argv[0], os.X_OK):
            raise PolicyError(f"node_{kind} {argv[0]}: not executable")
    except PolicyError as e:
        audit.log("node_hook", syslog.LOG_ERR, **where, argv=" ".join(argv), reason=e.message)
        return _failed(kind, env, f"{e.message}")
    try:
        p = subprocess.run(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, close_fds=True, cwd="/")
        code, output = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        code, output = None, e.output or b""
    except OSError as e:
        code, output = None, f"cannot run: {e.strerror}".encode()
    text = output[:MAX_OUTPUT].decode(errors="replace")
    audit.log("node_hook", syslog.LOG_INFO if code == 0 else syslog.LOG_ERR, **where, argv=" ".join(argv),
              code=code if code is not None else f"timeout after {timeout:g} s", output=text or None)
    if code != 0:
        _failed(kind, env, f"exit {code}" if code is not None else f"still running after {timeout:g} s")


def _failed(kind: str, env: Dict[str, str], why: str) -> None:
    if kind == "prolog":
        raise HookFailed(f"environment {env.get('ENVSCHED_ENVIRONMENT')}: its node prolog failed on this node "
                         f"({why}; the admin log has its output)", detail=why)


def hooks_of(ops: List[Dict[str, object]], kind: str) -> Sequence[str]:
    op = next((o for o in ops if o.get("op") == f"node_{kind}"), None)
    argv = op.get("argv") if op else None
    return [a for a in argv if isinstance(a, str)] if isinstance(argv, list) else []
