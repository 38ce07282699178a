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

What the hook does, once per job per host:

  1. the request: the `chos` resource (e.job.Resource_List["chos"]), the job's CHOS (e.env,
     else e.job.Variable_List), the queue (as the partition), the account (e.job.Account_Name,
     qsub -A), the job user (e.job.euser): all but the request as the server keeps them;
  2. if this host already has the job's pin, run_dir/openpbs-<jobid> (a second task of the
     job: pbsdsh, pbs_tmrsh, mpirun over TM), reuse it without deciding again; else decide
     (reading ~/.chos as the user), check the tree, build the view and pin it (PinStore), or
     record the decision for the host OS;
  3. rewrite the launch so the program enters the view: progname becomes the set-user-ID joiner
     (plugins/torque/openpbs/joiner), argv [joiner, KEY, PROGNAME, ARGV...]; the environment's
     env operations (CHOS, ...) are applied to e.env. For the host OS only e.env changes.

The pin's owner is the job's pbs_mom (the nearest ancestor whose executable is pbs_mom, run by
root; else the hook's parent); it outlives every task of the job on this host, and the
execjob_end hook (envsched_end.py) releases the pin when the job ends; `envsched gc` collects
pins whose mom died.

A refusal or failure never runs the job elsewhere. With "on_refusal": "exit" (the default) the
launch is replaced by `/bin/sh -c 'printf "%s\n" "$1" >&2; exit "$2"'`, run as the job user, so
the one line lands in the job's error file and the job ends with envsched's exit code (77
refused, 69 broken tree, 71 setup); with "reject" the hook calls e.reject(line) and PBS handles
the job as for any rejecting launch hook (the line goes to the mom log; see docs/admin.md).

Configuration (pbs.hook_config_filename, JSON): policy (required), joiner (required), src
(optional sys.path entry), binds (host paths for every view: PBS_HOME, where job scripts live),
on_refusal ("exit" | "reject").
"""
import json
import os
import re
import sys
import time

import pbs

RESOURCE = "chos"
KEY_PREFIX = "openpbs-"
WAIT_FOR_PIN = 60.0          # seconds: another task of the job may be building the view right now
REFUSAL_SCRIPT = 'printf "%s\\n" "$1" >&2; exit "$2"'


class Refused(Exception):
    def __init__(self, line, code):
        super().__init__(line)
        self.line, self.code = line, code


def one_line(text):
    return " ".join(str(text).split())


def untrusted_src(src):
    """The first of `src` and the directories above it not root's alone (root imports code from it)."""
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
    return conf


def pin_key(job_id):
    """openpbs-<jobid>, in the pin name grammar (array subjobs: 12[3].srv -> 12_3_.srv)."""
    return (KEY_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "_", str(job_id)))[:64]


def mom_pid():
    """The pbs_mom above this hook (root's), else our parent: the pin lives as long as it does."""
    pid = os.getppid()
    for _ in range(4):
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
            st = os.stat(f"/proc/{pid}")
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if exe == "pbs_mom" and st.st_uid == 0:
            return pid
        if ppid <= 1:
            break
        pid = ppid
    return os.getppid()


def apply_env_ops(env, process_ops):
    """The plan's env operations, as the other shims apply them (plugins/uge/starter/envops.c)."""
    for op in process_ops:
        if op.get("op") != "env":
            continue
        name, action = op["name"], op["action"]
        if action == "unset":
            env.pop(name, None)
        elif action == "set" or not env.get(name):
            env[name] = op["value"]
        elif action == "prepend":
            env[name] = f"{op['value']}:{env[name]}"
        else:
            env[name] = f"{env[name]}:{op['value']}"


def complete_pin(store, key, uid):
    """The pin's plan if `key` is a finished pin (its shim written last) for uid, else None."""
    try:
        meta = store.meta(key)
        if meta.uid != uid or not os.path.exists(os.path.join(store.path(key), "shim")):
            return None
        return store.plan(key)
    except (OSError, ValueError, TypeError):
        return None


def prepare(conf, e, key):
    """The job's plan on this host: the existing pin's, or decided and pinned now."""
    from envsched import audit
    from envsched.cli.jobargs import bind_arg
    from envsched.errors import UsageError
    from envsched.identity import lookup_user
    from envsched.pin import PinStore
    from envsched.policy import load_policy
    from envsched.service import JobContext, plan_for_job
    from envsched.shim import shim_lines

    job = e.job
    policy = load_policy(conf["policy"])
    audit.configure(policy.site.log_file)
    user = lookup_user(job.euser)
    store = PinStore(policy.site.run_dir)
    plan = complete_pin(store, key, user.uid)
    if plan is not None:                        # a later task of this job on this host
        return plan
    option = job.Resource_List[RESOURCE]
    chos = e.env.get("CHOS") or (job.Variable_List or {}).get("CHOS")
    ctx = JobContext(user=user, option=str(option) if option is not None else None,
                     chos_var=chos or None, partition=job.queue or None, cwd=user.home, job=str(job.id),
                     account=str(job.Account_Name) if getattr(job, "Account_Name", None) else None,
                     scheduler="openpbs",
                     extra_binds=tuple(bind_arg(b) for b in conf.get("binds", [])))
    decision, plan = plan_for_job(policy, ctx)
    owner = mom_pid()
    try:
        if plan.mount_ops:
            _, plan = store.prepare(key, plan, user, owner)     # as pinned: a user image's digest and Env
            audit.log("prepared", job=ctx.job, user=user.name, env=decision.name, key=key, owner=owner,
                      digest=plan.digest or None)
        else:
            store.record(key, plan, user, owner)
            audit.log("recorded", job=ctx.job, user=user.name, env=decision.name, key=key, owner=owner)
    except UsageError:                          # exists: another task is pinning it right now
        deadline = time.monotonic() + WAIT_FOR_PIN
        while time.monotonic() < deadline:
            found = complete_pin(store, key, user.uid)
            if found is not None:
                return found
            time.sleep(0.05)
        raise
    pin = os.path.join(store.path(key), "mnt") if plan.mount_ops else None
    store.write_memo(key, f"uid={user.uid}", "\n".join(shim_lines(decision, plan, key, pin, False, user)) + "\n")
    return plan


def launch(conf, e):
    if conf.get("src") and conf["src"] not in sys.path:
        sys.path.insert(0, conf["src"])
    from envsched.errors import EnvschedError
    key = pin_key(e.job.id)
    try:
        plan = prepare(conf, e, key)
    except EnvschedError as err:
        raise Refused(f"envsched: {one_line(err.message)}", int(err.code)) from None
    env = e.env
    apply_env_ops(env, plan.process_ops)
    e.env = env
    if plan.mount_ops:
        e.argv = [conf["joiner"], key, e.progname] + list(e.argv)
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
