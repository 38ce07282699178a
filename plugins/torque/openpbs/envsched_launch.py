"""envsched's OpenPBS execjob_launch hook: put the job into its environment's view.

Registered by `envsched site-config render --scheduler openpbs` (section `qmgr`):
    create hook envsched_launch event=execjob_launch
    import hook envsched_launch application/x-python default envsched_launch.py
    import hook envsched_launch application/x-config default envsched.json
    set hook envsched_launch alarm = 120

An execjob_launch hook runs on the execution host just before PBS launches the job's program,
as root by default (pbs_hook_attributes.7B, `user`: default "pbsadmin", "The hook executes as
root"), in a pbs_python process of the mom's. It may replace the program, its arguments and its
environment: e.progname, e.argv, e.env are the only assignable event parameters (_svr_types.py,
_event.__setattr__; mom_hook_func.h: "progname - used by execjob_launch hook as the
pbs.event().progname value", argv and env likewise). e.env is the environment the program gets:
the job's variables (-v, -V) and PBS's own (PBS_JOBID, ...) (OpenPBS functional test of hook
environments: "Job B would see the same environment variables, with Job B also seeing the
changes made ... by the 2 mom hooks").

What the hook does, once per job per host, importing nothing of envsched (PBS runs it in its
own pbs_python; the deciding, preparing and releasing are C and the resolver, as for Torque):

  1. the request: the `chos` resource (e.job.Resource_List["chos"]), the job's CHOS (e.env,
     else e.job.Variable_List), the queue (as the partition), the account (e.job.Account_Name,
     qsub -A), the job user (e.job.euser): all but the request as the server keeps them;
  2. runs `pbs-prepare launch JOBID EUSER QUEUE ACCOUNT REQUEST CHOS` (joiner/pbs_prepare.c,
     root's, beside the joiner; its settings in pbs-prepare.conf beside it): if this host already
     has the job's pin, run_dir/openpbs-<jobid> (a second task of the job: pbsdsh, pbs_tmrsh,
     mpirun over TM), it reuses it without deciding again; else the decision cache serves a job
     whose inputs are an earlier job's, all unchanged (no Python at all), and otherwise the
     resolver (`envsched prepare`) decides, reading ~/.chos as the user, checks the tree, builds
     or shares the view and pins it, or records the decision for the host OS. It prints the
     resolver's protocol lines (src/envsched/shim.py), or exits with envsched's code and the one
     line;
  3. rewrite the launch so the program enters the view: progname becomes the set-user-ID joiner
     (plugins/torque/openpbs/joiner), argv [joiner, KEY, PROGNAME, ARGV...]; the environment's
     env operations (CHOS, ...) are applied to e.env. For the host OS only e.env changes.

The values are passed as arguments: this hook runs as root and takes them from the server's job
object (the CHOS value by the rule above, which is the job's own request either way: the policy
decides what it may have). The pin's owner is the job's pbs_mom (the nearest ancestor whose
executable is pbs_mom, run by root; else the hook's parent), found by pbs-prepare; it outlives
every task of the job on this host, and the execjob_end hook (envsched_end.py) releases the pin
when the job ends; `envsched gc` collects pins whose mom died.

A refusal or failure never runs the job elsewhere. With "on_refusal": "exit" (the default) the
launch is replaced by `/bin/sh -c 'printf "%s\n" "$1" >&2; exit "$2"'`, run as the job user, so
the one line lands in the job's error file and the job ends with envsched's exit code (77
refused, 69 broken tree, 71 setup); with "reject" the hook calls e.reject(line) and PBS handles
the job as for any rejecting launch hook (the line goes to the mom log; see docs/admin.md).

Configuration (pbs.hook_config_filename, JSON): policy (required; the queuejob hook's), joiner
(required), prepare (default: pbs-prepare beside the joiner), src (the queuejob hook's sys.path
entry: still refused here when it is not root's alone), binds (the queuejob hook's; pbs-prepare has
its own, in pbs-prepare.conf), on_refusal ("exit" | "reject").
"""
import json
import os

import pbs

RESOURCE = "chos"
PREPARE = "pbs-prepare"
REFUSAL_SCRIPT = 'printf "%s\\n" "$1" >&2; exit "$2"'
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


def run(argv):
    """argv as root's child with a clean environment and stdin /dev/null: (status, stdout, stderr).
    os.posix_spawn (Python 3.8+), not subprocess, whose import alone costs the hook about as much as
    pbs-prepare's whole warm run; pbs-prepare writes at most a line to stderr, so reading stdout to
    its end first cannot block."""
    if not hasattr(os, "posix_spawn"):
        import subprocess
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=CLEAN_ENV, cwd="/", close_fds=True)
        return p.returncode, p.stdout, p.stderr
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawn(argv[0], argv, CLEAN_ENV, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)])
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    data = []
    for fd in (out_r, err_r):
        chunks = []
        with open(fd, "rb", closefd=True) as f:
            for chunk in iter(lambda: f.read(65536), b""):
                chunks.append(chunk)
        data.append(b"".join(chunks))
    _, status = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    return code, data[0], data[1]


class Refused(Exception):
    def __init__(self, line, code):
        super().__init__(line)
        self.line, self.code = line, code


def one_line(text):
    return " ".join(str(text).split())


def untrusted_src(src):
    """The first of `src` and the directories above it not root's alone (root runs or imports from it)."""
    parts = os.path.abspath(src).split("/")
    return next((d for d in ("/".join(parts[:i]) or "/" for i in range(1, len(parts) + 1))
                 if os.lstat(d).st_uid != 0 or os.lstat(d).st_mode & 0o022), None)


def load_config():
    path = pbs.hook_config_filename
    if not path:
        raise Refused("envsched: the launch hook has no configuration file", 78)
    with open(path) as f:
        conf = json.load(f)
    if not isinstance(conf, dict) or not all(isinstance(conf.get(k), str) for k in ("policy", "joiner")):
        raise Refused(f"envsched: {path}: expected a JSON object with \"policy\" and \"joiner\"", 78)
    if conf.get("on_refusal", "exit") not in ("exit", "reject"):
        raise Refused(f"envsched: {path}: on_refusal must be \"exit\" or \"reject\"", 78)
    if conf.get("src") and untrusted_src(conf["src"]):
        raise Refused(f"envsched: {path}: src {conf['src']}: {untrusted_src(conf['src'])} must be root's and not "
                      "writable by group or others", 78)
    prepare = conf.get("prepare") or os.path.join(os.path.dirname(conf["joiner"]), PREPARE)
    if not isinstance(prepare, str) or not prepare.startswith("/"):
        raise Refused(f"envsched: {path}: prepare must be an absolute path", 78)
    if untrusted_src(prepare):
        raise Refused(f"envsched: {path}: prepare {prepare}: {untrusted_src(prepare)} must be root's and not "
                      "writable by group or others", 78)
    conf["prepare"] = prepare
    return conf


def text(value):
    """A job attribute as an argument: "" for none."""
    return "" if value is None else str(value)


def apply_env_ops(env, lines):
    """The plan's env lines (`env ACTION NAME [VALUE]`), as the other shims apply them
    (plugins/common/es_envop.c)."""
    for line in lines:
        if not line.startswith("env "):
            continue
        fields = line.split(" ", 3)
        action, name = fields[1], fields[2]
        value = fields[3] if len(fields) > 3 else ""
        if action == "unset":
            env.pop(name, None)
        elif action == "set" or not env.get(name):
            env[name] = value
        elif action == "prepend":
            env[name] = f"{value}:{env[name]}"
        else:
            env[name] = f"{env[name]}:{value}"


def prepare(conf, e):
    """The job's pin on this host (pbs-prepare): the protocol lines, or Refused."""
    job = e.job
    option = job.Resource_List[RESOURCE]
    chos = e.env.get("CHOS") or (job.Variable_List or {}).get("CHOS")
    account = job.Account_Name if getattr(job, "Account_Name", None) else None
    argv = [conf["prepare"], "launch", text(job.id), text(job.euser), text(job.queue or None), text(account),
            text(option), text(chos or None)]
    status, out, err = run(argv)
    if status != 0:
        said = [line for line in err.decode("utf-8", "replace").splitlines() if line.startswith("envsched: ")]
        line = one_line(said[-1]) if said else f"envsched: the job's environment could not be prepared (exit {status})"
        raise Refused(line, status if 0 < status < 128 else 70)
    return out.decode("utf-8", "replace").splitlines()


def launch(conf, e):
    lines = prepare(conf, e)
    fields = dict(line.split(" ", 1) for line in lines if " " in line and line.split(" ", 1)[0] in ("key", "pin"))
    env = e.env
    apply_env_ops(env, lines)
    e.env = env
    if fields.get("pin", "-") != "-":
        e.argv = [conf["joiner"], fields["key"], e.progname] + list(e.argv)
        e.progname = conf["joiner"]


def main():
    e = pbs.event()
    conf = {}
    try:
        conf = load_config()
        launch(conf, e)
    except Refused as r:
        refuse(e, conf, r.line, r.code)
    except Exception as err:  # noqa: BLE001 - fail closed: the job never runs on the host instead
        refuse(e, conf, f"envsched: the job's environment could not be prepared: "
                        f"{one_line(type(err).__name__ + ': ' + str(err))}", 70)
    e.accept()


def refuse(e, conf, line, code):
    pbs.logmsg(pbs.LOG_ERROR, f"{e.job.id}: {line}")
    if conf.get("on_refusal", "exit") == "reject":
        e.reject(line)
    e.progname = "/bin/sh"
    e.argv = ["/bin/sh", "-c", REFUSAL_SCRIPT, "envsched", line, str(code)]


main()
