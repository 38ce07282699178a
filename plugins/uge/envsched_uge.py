#!/usr/bin/python3 -I
"""envsched's execution-side shims for (Son of / Univa) Grid Engine, one Python start each.

    prolog   queue `prolog root@/usr/bin/python3 -I .../envsched_uge.py prolog --policy P [--src S] [--bind B]`
             root, once per job per host, before the job: prepare and pin the job's view
             (`envsched prepare`, key uge-<job>.<task>). The job is the one of the process that
             started us, a root sge_shepherd (held by a pidfd): its working directory is the job's
             spool directory, whose `config` (owner, queue, job id) and `environment` (the request:
             ENVSCHED_REQUEST, CHOS; a root prolog does not inherit the job's -v/JSV variables)
             execd wrote. Both are read as the shepherd reads them, at most 1 MiB, O_NOFOLLOW, and
             must be root's or Grid Engine's admin user's; a key set twice with different values
             (a job value with a line break: Grid Engine does not escape them) refuses the job.
             It always exits 0: any other status would put the job (100) or the whole queue
             in error. A refusal or failure is in the admin log or syslog; the starter, finding no
             pin, asks the resolver again and prints the one line to the job's stderr.
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
from typing import Dict, List, Optional, Sequence, Tuple

KEY_PREFIX = "uge-"
SPOOL_FILE_MAX = 1 << 20        # the job's config and environment: larger is refused
SHEPHERD_CONFIG_LINE = 100000   # sge_shepherd's read_config(): fgets(buf[100000])
SHEPHERD_ENV_LINE = 10000       # sge_shepherd's sge_set_environment(): fgets(buf[10000])


class SpoolError(Exception):
    """The job cannot be identified, or its spool files are not execd's: one line, the job refused."""


def shepherd_lines(data: bytes, size: int) -> List[bytes]:
    """The lines the shepherd's fgets(buf[size]) reads: a line ends at a newline or after size-1
    bytes (the rest of a longer line is read as a line of its own)."""
    out, off = [], 0
    while off < len(data):
        nl = data.find(b"\n", off, off + size - 1)
        end = nl + 1 if nl >= 0 else min(len(data), off + size - 1)
        out.append(data[off:end])
        off = end
    return out


def unique(pairs: List[Tuple[bytes, Optional[bytes]]], what: str) -> Dict[str, str]:
    """NAME -> VALUE; a name given twice with different values is refused (the shepherd takes the
    last line, and only a job value with a line break can add one)."""
    out: Dict[bytes, Optional[bytes]] = {}
    for name, value in pairs:
        if name in out and out[name] != value:
            raise SpoolError(f"the job's {what} sets {name[:64].decode('ascii', 'backslashreplace')!r} twice: "
                             "a value of the job's (an argument, -M, -o, ...) holds a line break, which "
                             "Grid Engine does not escape; submit it without one")
        out[name] = value
    return {k.decode("utf-8", "surrogateescape"): (v or b"").decode("utf-8", "surrogateescape")
            for k, v in out.items()}


def parse_config(data: bytes, where: str = "config") -> Dict[str, str]:
    """execd's job `config` as the shepherd's read_config() reads it: strtok(line, " =") is the
    name, strtok(NULL, "\n") the value; a line of delimiters alone ends the reading."""
    pairs: List[Tuple[bytes, Optional[bytes]]] = []
    for line in shepherd_lines(data, SHEPHERD_CONFIG_LINE):
        rest = line.lstrip(b" =")
        if not rest:
            break
        cut = min((i for i in (rest.find(b" "), rest.find(b"=")) if i >= 0), default=-1)
        if cut < 0:
            pairs.append((rest, None))
            continue
        value = rest[cut + 1:].lstrip(b"\n").split(b"\n", 1)[0]
        pairs.append((rest[:cut], value or None))
    return unique(pairs, f"configuration {where}")


def parse_environment(data: bytes, where: str = "environment") -> Dict[str, str]:
    """execd's job `environment` as the shepherd's sge_set_environment() reads it: lines of at most
    one byte are skipped, strtok(line, "=") is the name, strtok(NULL, "\n") the value."""
    pairs: List[Tuple[bytes, Optional[bytes]]] = []
    for line in shepherd_lines(data, SHEPHERD_ENV_LINE):
        if len(line) <= 1:
            continue
        rest = line.lstrip(b"=")
        if not rest:
            continue
        name, eq, value = rest.partition(b"=")
        value = value.lstrip(b"\n").split(b"\n", 1)[0] if eq else b""
        pairs.append((name, value.replace(b"\\n", b"\n") or None))
    return unique(pairs, f"environment {where}")


def read_spool_file(dirfd: int, name: str, admin: int, where: str) -> bytes:
    """NAME in the job's directory (a descriptor), as root: no symbolic link, a regular file of
    root's or of the Grid Engine admin user's, not writable by group or others, at most 1 MiB."""
    import stat
    where = f"{'configuration' if name == 'config' else name} {where}"     # as the C starter says it
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                     dir_fd=dirfd)
    except OSError as e:
        raise SpoolError(f"the job's {where}/{name}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, admin) or st.st_mode & 0o022:
            raise SpoolError(f"the job's {where}/{name} is not a regular file of root's or Grid Engine's "
                             "admin user's, or writable by others")
        data = b""
        while len(data) <= SPOOL_FILE_MAX:
            chunk = os.read(fd, SPOOL_FILE_MAX + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if st.st_size > SPOOL_FILE_MAX or len(data) > SPOOL_FILE_MAX:
            raise SpoolError(f"the job's {where}/{name} is larger than {SPOOL_FILE_MAX} bytes")
        return data
    finally:
        os.close(fd)


class Job:
    """The job of the sge_shepherd that started us (the prolog's and epilog's parent)."""
    def __init__(self, id: str, task: str, queue: str, owner: str, spool: str, dirfd: int, admin: int,
                 shepherd: int) -> None:
        self.id, self.task, self.queue, self.owner = id, task, queue, owner
        self.spool, self.dirfd, self.admin, self.shepherd = spool, dirfd, admin, shepherd
        self.key = f"{KEY_PREFIX}{id}.{task}"

    def environment(self) -> Dict[str, str]:
        return parse_environment(read_spool_file(self.dirfd, "environment", self.admin, self.spool),
                                 f"{self.spool}/environment")


def _status(procfd: int) -> Dict[str, List[str]]:
    fd = os.open("status", os.O_RDONLY | os.O_CLOEXEC, dir_fd=procfd)
    with os.fdopen(fd, "rb") as f:
        return {k.decode(): v.decode().split() for k, _, v in (ln.partition(b":") for ln in f.read().splitlines())}


def identify_job(env: Dict[str, str]) -> Job:
    """The job from the process tree and execd's spool, never from our environment alone:

    1. our parent held by a pidfd, then its /proc directory (opened while the pidfd's process
       held the pid: the same process; every fact below is read through it);
    2. it is sge_shepherd with real uid 0 (its effective uid is the Grid Engine admin user, who
       owns the execd spool);
    3. its working directory, by name (.../active_jobs/<job>.<task>[/<petask>]: the job) and as a
       descriptor (the files), of root's or the admin user's, not writable by others;
    4. `config` there: job id and task must be the directory's; the queue and the owner;
    5. what execd put in our environment must agree (JOB_ID, SGE_TASK_ID, QUEUE and
       SGE_JOB_SPOOL_DIR are execd's: they are set after the job's own variables);
    6. the shepherd is still alive and still our parent: no pid was reused while we read."""
    import signal
    import stat
    ppid = os.getppid()
    try:                                                                 # 1
        pidfd = os.pidfd_open(ppid)
    except OSError:
        raise SpoolError(f"not started by Grid Engine (parent {ppid} is gone)") from None
    procfd = -1
    try:
        try:
            procfd = os.open(f"/proc/{ppid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            signal.pidfd_send_signal(pidfd, 0)
            exe = os.readlink("exe", dir_fd=procfd)                      # 2
            uids = _status(procfd).get("Uid", [])
            cwd = os.readlink("cwd", dir_fd=procfd)                      # 3
            dirfd = os.open("cwd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=procfd)
        except OSError as e:
            raise SpoolError(f"not started by Grid Engine (parent {ppid}: {e.strerror})") from None
        if os.path.basename(exe) != "sge_shepherd" or len(uids) < 2 or uids[0] != "0":
            os.close(dirfd)
            raise SpoolError(f"not started by Grid Engine (parent {ppid} is {exe}, not a root sge_shepherd)")
        admin = int(uids[1])
        try:
            st = os.fstat(dirfd)
            _, sep, rest = cwd.partition("/active_jobs/")
            job, dot, task = rest.split("/", 1)[0].partition(".")
            if not (stat.S_ISDIR(st.st_mode) and st.st_uid in (0, admin) and not st.st_mode & 0o022):
                raise SpoolError(f"sge_shepherd {ppid} works in {cwd}, not in a job directory of Grid Engine's")
            if not (sep and dot and job.isdigit() and task.isdigit() and job.isascii() and task.isascii()):
                raise SpoolError(f"cannot read the job id from {cwd}")
            config = parse_config(read_spool_file(dirfd, "config", admin, cwd), f"{cwd}/config")  # 4
            if config.get("job_id") != job or config.get("ja_task_id") not in (task, "0" if task == "1" else task):
                raise SpoolError(f"the job's configuration {cwd}/config does not name job {job}.{task}")
            queue, owner = config.get("queue", ""), config.get("job_owner", "")
            if not queue or not queue.isprintable() or " " in queue or not owner:
                raise SpoolError(f"the job's configuration {cwd}/config has no usable queue= or job_owner= line")
            want = {"JOB_ID": job, "QUEUE": queue}                                     # 5
            if env.get("SGE_TASK_ID", "undefined") != "undefined":
                want["SGE_TASK_ID"] = task
            for name, value in want.items():
                if name in env and env[name] != value:
                    raise SpoolError(f"{name}={env[name]!r} in the environment, but the job's "
                                     f"configuration says {value!r}")
            spool = env.get("SGE_JOB_SPOOL_DIR")
            try:
                same = spool is None or os.path.samestat(os.stat(spool), st)
            except OSError:
                same = False
            if not same:
                raise SpoolError(f"SGE_JOB_SPOOL_DIR={spool!r} is not the job directory {cwd}")
            try:                                                                        # 6
                signal.pidfd_send_signal(pidfd, 0)
                alive = os.getppid() == ppid
            except OSError:
                alive = False
            if not alive:
                raise SpoolError(f"not started by Grid Engine (sge_shepherd {ppid} went away while the job "
                                 "was identified)")
        except BaseException:
            os.close(dirfd)
            raise
        return Job(job, task, queue, owner, cwd, dirfd, admin, ppid)
    finally:
        if procfd >= 0:
            os.close(procfd)
        os.close(pidfd)


def read_pairs(path: str) -> Dict[str, str]:
    """NAME=VALUE lines of an execd spool file, for the unprivileged starter (as the user: advisory);
    lines end at a newline only, at most 1 MiB."""
    try:
        with open(path, "rb") as f:
            data = f.read(SPOOL_FILE_MAX + 1)
    except OSError:
        return {}
    if len(data) > SPOOL_FILE_MAX:
        raise SpoolError(f"{path} is larger than {SPOOL_FILE_MAX} bytes")
    out: Dict[str, str] = {}
    for raw in data.decode("utf-8", "surrogateescape").split("\n"):
        name, eq, value = raw.partition("=")
        if eq:
            out[name] = value
    return out


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


def prepare_argv(opts: Dict[str, object], job: Job) -> List[str]:
    """The resolver's arguments: owner, queue and job from execd's config, the request from
    execd's copy of the job's environment (the user's to choose: checked against the policy for
    the owner)."""
    job_env = job.environment()
    owner, queue = job.owner, job.queue
    request, chos = job_env.get("ENVSCHED_REQUEST", ""), job_env.get("CHOS", "")
    argv = ["--policy", str(opts["policy"]), "prepare", "--format", "shim", "--reuse", "--record-local",
            "--gc", "--key", job.key, "--user", owner, "--job", f"{job.id}.{job.task}",
            "--owner-pid", str(job.shepherd), f"--chos-var={chos}",
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


def _log(opts: Dict[str, object], mode: str, message: str) -> None:
    """One line to the admin log (the policy's site.log_file, which tests and admins read) and to
    syslog: `event=failed step=prolog job=... reason=...`."""
    from envsched import audit
    try:
        from envsched.policy import load_policy
        audit.configure(load_policy(str(opts["policy"])).site.log_file)
    except Exception:  # noqa: BLE001 - syslog still gets the line
        pass
    audit.log("failed", step=mode, job=os.environ.get("JOB_ID"), reason=message)


def prolog(opts: Dict[str, object]) -> int:
    try:
        job = identify_job(dict(os.environ))
    except SpoolError as e:
        _log(opts, "prolog", str(e))     # the starter refuses the job with its own line
        return 0
    try:
        run_resolver(prepare_argv(opts, job))
    except SpoolError as e:
        _log(opts, "prolog", str(e))
    finally:
        os.close(job.dirfd)
    return 0


def epilog(opts: Dict[str, object]) -> int:
    try:
        job = identify_job(dict(os.environ))
    except SpoolError as e:
        _log(opts, "epilog", str(e))     # `envsched gc` collects the pin
        return 0
    os.close(job.dirfd)
    run_resolver(["--policy", str(opts["policy"]), "release", "--key", job.key, "--quiet"])
    return 0


def job_command(args: Sequence[str], env: Dict[str, str]) -> List[str]:
    """The job as the shepherd would run it (see plugins/uge/starter/job.c, same rules)."""
    shell = env.get("SGE_STARTER_SHELL_PATH") or "/bin/sh"
    spool = env.get("SGE_JOB_SPOOL_DIR", "/nonexistent")
    try:
        via_qrsh = os.path.basename(os.readlink(f"/proc/{os.getppid()}/exe")) == "qrsh_starter"
    except OSError:
        via_qrsh = False
    config = read_pairs(os.path.join(spool, "config"))     # as the user: only how to start the job
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
    except SpoolError as e:
        print(f"envsched: {e}", file=sys.stderr)
        return 70
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
