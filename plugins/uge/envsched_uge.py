#!/usr/bin/python3 -I
"""envsched's execution-side shims for (Son of / Univa) Grid Engine, one Python start each.

    prolog   queue `prolog root@/usr/bin/python3 -I .../envsched_uge.py prolog --policy P [--src S] [--bind B]`
             root, once per job per host, before the job: prepare and pin the job's view
             (`envsched prepare`, key uge-<job>.<task>). The root prolog does not inherit the
             job's -v/JSV variables: the request (ENVSCHED_REQUEST, CHOS) and the job owner
             are read from $SGE_JOB_SPOOL_DIR/environment and /config, written by execd.
             It always exits 0: any other status would put the job (100) or the whole queue
             in error. A refusal or failure is in the admin log; the starter, finding no pin,
             asks the resolver again and prints the one line to the job's stderr.
    epilog   `envsched release` for the job's pin, for sites that prefer it to the C epilog
             (plugins/uge/starter/epilog.c, the rendered default: no Python per job end).
             Always exits 0 (a failing epilog puts the queue in error); failures are logged.
    starter  unprivileged mode, queue `starter_method` (the launcher `envsched site-config render
             --scheduler uge --unprivileged` writes, as Grid Engine passes the starter no
             options of its own): runs as the job user, decides (reading
             ~/.chos like any resolver run) and enters the environment through a user
             namespace, then runs the job as the shepherd would. No set-user-ID anywhere.

The privileged starter is the C program plugins/uge/starter (set-user-ID root).
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Dict, List, Optional, Sequence

KEY_PREFIX = "uge-"


def read_pairs(path: str) -> Dict[str, str]:
    """NAME=VALUE lines of an execd spool file (environment, config)."""
    out: Dict[str, str] = {}
    try:
        with open(path, "rb") as f:
            for raw in f.read().decode("utf-8", "surrogateescape").splitlines():
                name, eq, value = raw.partition("=")
                if eq:
                    out[name] = value
    except OSError:
        pass
    return out


def job_key(env: Dict[str, str]) -> Optional[str]:
    job, task = env.get("JOB_ID", ""), env.get("SGE_TASK_ID", "")
    if not job.isdigit():
        return None
    return f"{KEY_PREFIX}{job}.{task if task.isdigit() else '1'}"


def parse_args(argv: Sequence[str]) -> Dict[str, object]:
    opts: Dict[str, object] = {"policy": None, "src": None, "bind": []}
    rest = list(argv)
    if not rest or rest[0] not in ("prolog", "epilog", "starter"):
        sys.exit("usage: envsched_uge.py prolog|epilog|starter --policy FILE [--src DIR] [--bind PATH]...")
    opts["mode"] = rest.pop(0)
    while rest and rest[0].startswith("--"):
        if rest[0] == "--":
            rest.pop(0)
            break
        key, eq, val = rest.pop(0).partition("=")
        name = key[2:].replace("-", "_")
        if name not in ("policy", "src", "bind"):
            sys.exit(f"envsched_uge.py: unknown option {key}")
        if not eq:
            if not rest:
                sys.exit(f"envsched_uge.py: {key} needs a value")
            val = rest.pop(0)
        if name == "bind":
            opts["bind"].append(val)      # type: ignore[union-attr]
        else:
            opts[name] = val
    opts["command"] = rest
    if not opts["policy"]:
        sys.exit("envsched_uge.py: --policy FILE is required")
    return opts


def prepare_argv(opts: Dict[str, object], env: Dict[str, str], key: str) -> List[str]:
    spool = env.get("SGE_JOB_SPOOL_DIR", "")
    job_env = read_pairs(os.path.join(spool, "environment"))
    owner = read_pairs(os.path.join(spool, "config")).get("job_owner") or env.get("USER", "")
    request, chos, queue = job_env.get("ENVSCHED_REQUEST", ""), job_env.get("CHOS", ""), env.get("QUEUE", "")
    argv = ["--policy", str(opts["policy"]), "prepare", "--format", "shim", "--reuse", "--record-local",
            "--gc", "--key", key, "--user", owner, "--job", key[len(KEY_PREFIX):],
            "--owner-pid", str(os.getppid()), f"--chos-var={chos}",
            f"--inputs=uid={owner}\trequest={request}\tchos={chos}\tqueue={queue}"]
    if request:
        argv.append(f"--request={request}")
    if queue:
        argv.append(f"--partition={queue}")
    for b in opts["bind"]:                  # type: ignore[union-attr]
        argv += ["--bind", str(b)]
    return argv


def run_resolver(argv: List[str]) -> int:
    """`envsched ARGV` in this process, its output kept from the job's output files."""
    from envsched.cli.envsched import main
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            return main(argv)
        except SystemExit as e:             # argparse
            return int(e.code or 0) if not isinstance(e.code, str) else 64


def prolog(opts: Dict[str, object]) -> int:
    env = dict(os.environ)
    key = job_key(env)
    if key is not None:
        run_resolver(prepare_argv(opts, env, key))
    return 0


def epilog(opts: Dict[str, object]) -> int:
    key = job_key(dict(os.environ))
    if key is not None:
        run_resolver(["--policy", str(opts["policy"]), "release", "--key", key, "--quiet"])
    return 0


def job_command(args: Sequence[str], env: Dict[str, str]) -> List[str]:
    """The job as the shepherd would run it (see plugins/uge/starter/job.c, same rules)."""
    shell = env.get("SGE_STARTER_SHELL_PATH") or "/bin/sh"
    spool = env.get("SGE_JOB_SPOOL_DIR", "/nonexistent")
    try:
        via_qrsh = os.path.basename(os.readlink(f"/proc/{os.getppid()}/exe")) == "qrsh_starter"
    except OSError:
        via_qrsh = False
    config = read_pairs(os.path.join(spool, "config"))
    binary = via_qrsh or config.get("handle_as_binary") == "1"
    if binary and config.get("no_shell") == "1":          # qsub -shell no, DRMAA: verbatim
        return list(args)
    if binary:
        return [shell, "-c", " ".join(args)]
    if env.get("SGE_STARTER_SHELL_START_MODE") == "unix_behavior":
        return list(args)
    return [shell, *args]


def starter(opts: Dict[str, object]) -> int:
    """Unprivileged mode: decide as the user and enter through a user namespace."""
    from envsched.enter import enter_and_exec
    from envsched.errors import EnvschedError
    from envsched.identity import current_user
    from envsched.policy import load_policy
    from envsched.service import JobContext, plan_for_job
    command = list(opts["command"])         # type: ignore[arg-type]
    if not command:
        print("envsched: the starter got no job to run", file=sys.stderr)
        return 64
    env = dict(os.environ)
    try:
        from envsched.cli.jobargs import bind_arg
        # binds in a user namespace give the job nothing it could not read anyway
        binds = tuple(bind_arg(str(b)) for b in opts["bind"])      # type: ignore[union-attr]
        policy = load_policy(str(opts["policy"]))
        ctx = JobContext(user=current_user(), option=env.get("ENVSCHED_REQUEST") or None,
                         chos_var=env.get("CHOS") or None, partition=env.get("QUEUE") or None,
                         job=env.get("JOB_ID"), extra_binds=binds)
        _decision, plan = plan_for_job(policy, ctx)
        enter_and_exec(plan, ctx.user, job_command(command, env), unprivileged=True)
    except EnvschedError as e:
        print(f"envsched: {e.message}", file=sys.stderr)
        return int(e.code)
    except Exception as e:  # noqa: BLE001 - argparse-type errors from bind_arg, bugs: fail closed
        print(f"envsched: the job's environment could not be entered: {e}", file=sys.stderr)
        return 70
    return 70


def main(argv: Optional[Sequence[str]] = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts["src"]:
        sys.path.insert(0, str(opts["src"]))
    mode = opts["mode"]
    if mode == "starter":
        return starter(opts)
    try:
        return prolog(opts) if mode == "prolog" else epilog(opts)
    except Exception as e:  # noqa: BLE001 - never put the queue in error; the starter fails closed
        import syslog
        syslog.openlog("envsched-uge", syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_ERR, f"{mode} job {os.environ.get('JOB_ID')}: internal error: {e!r}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
