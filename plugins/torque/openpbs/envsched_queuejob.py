"""envsched's OpenPBS queuejob hook: refuse an unknown or disallowed environment at qsub time.

Registered by `envsched site-config render --scheduler openpbs` (section `qmgr`):
    create hook envsched_queuejob event=queuejob
    import hook envsched_queuejob application/x-python default envsched_queuejob.py
    import hook envsched_queuejob application/x-config default envsched.json

A queuejob hook runs at submission, on the server, before the job is queued; `e.reject(msg)`
stops the submission and qsub prints msg (_svr_types.py, _event.reject: the message goes to "the
STDERR of the PBS command that caused this event"). OpenPBS runs server hooks inside pbs_server's
own Python interpreter, so this hook does not fork: no `~/.chos` (read as the user through a
child process, and the home may not be on the server host) and no tree checks; it checks the
request against the identity rules of the policy (users, groups), as `envsched validate
--identity-only` does. Queue rules, ~/.chos and the tree are checked when the job starts
(envsched_launch.py).

The request: the `chos` resource (`qsub -l chos=NAME`, a custom resource made with `qmgr -c
"create resource chos type=string"`, read as e.job.Resource_List["chos"], pbs_module.7B) or
the job's CHOS variable (`qsub -v CHOS=NAME`, e.job.Variable_List). The user: e.requestor
(_svr_types.py, _event.__init__: `self.requestor = rq_user`), the user who submits.

Pinned at submit (site.pin_at_submit, the default): a job that named its environment (-l chos=NAME,
or -v CHOS=NAME) leaves this hook carrying NAME@sha256:<digest of NAME's version current now>
(`envsched validate --pin`) in the same place: e.job.Resource_List["chos"], or the job's CHOS in
e.job.Variable_List (a queuejob hook may set job attributes: pbs_module.7B, "queuejob"), so the
launch hook prepares that version even if the admin stamps a new one while the job waits.
Unchanged when the site does not pin, the request names a version already, or this host knows no
version of NAME (the stamps are read beside the policy). A user who submits the pinned value
asks for that exact version, as any -l chos=NAME@sha256:... does: the launch hook checks it against
the policy like any request.

Warm submissions (#13): a submission whose inputs are an earlier one's, all unchanged, is answered
without importing envsched: the hook runs `pbs-prepare submit USER OPTION CHOS` (joiner/pbs_prepare.c,
root's C, settings in pbs-prepare.conf beside it), which gives back the answer this hook kept in
root's own run_dir/.submit when it last decided for the same user, request and policy, provided
the policy file, the user's passwd entry and groups, and the stamps and tree of the version it
pinned are all unchanged (src/envsched/submitcache.py's entry, checked by
plugins/common/es_submit.c). The hook applies that answer exactly as it applies the resolver's:
the refusal line, or the pinned request carried into the job. Anything else (no entry, a change,
pbs-prepare or its configuration missing on the server host, any error) decides in Python as
before, and keeps the answer for the next submission. Once this interpreter has imported envsched
(pbs_server keeps it between events until it restarts it), the hook decides in Python again:
in-process that costs ~0.4 ms, less than starting pbs-prepare (docs/performance.md). Kept: answers for requests that name
environments of the policy (or nothing), at most MAX_ENTRIES; never an answer from an error,
from an image's version, or one that cannot be written as one line. The cache is root's and
holds nothing a user wrote; nothing of the user's home is read (docs/security.md).

Configuration: hooks get no arguments, so the settings come from the hook's configuration
file (JSON), whose path PBS puts in pbs.hook_config_filename (pbs_module.7B):
    {"policy": "/etc/envsched/policy.toml", "src": null, "joiner": ..., "prepare": ...}
`src` (optional) is put first on sys.path to import envsched from a directory of root's;
`prepare` (default: pbs-prepare beside `joiner`) is the C program that answers warm submissions.
"""
import json
import os
import sys

import pbs

RESOURCE = "chos"
PREPARE = "pbs-prepare"
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
SUBMIT_DIR = ".submit"                  # run_dir/.submit: root's, 0700 (pbs_prepare.c)
MAX_ENTRIES = 4096


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
        raise RuntimeError("the hook has no configuration file (import hook ... application/x-config)")
    with open(path) as f:
        conf = json.load(f)
    if not isinstance(conf, dict) or not isinstance(conf.get("policy"), str):
        raise RuntimeError(f"{path}: expected a JSON object with \"policy\"")
    if conf.get("src") and untrusted_src(conf["src"]):
        raise RuntimeError(f"{path}: src {conf['src']}: {untrusted_src(conf['src'])} must be root's and not "
                           "writable by group or others")
    return conf


def request_of(job):
    """(option, chos_var): the resource beats the variable, as -l chos beats CHOS elsewhere."""
    option = job.Resource_List[RESOURCE]
    variables = job.Variable_List or {}
    chos = variables.get("CHOS") if hasattr(variables, "get") else None
    return (str(option) if option is not None else None), (str(chos) if chos else None)


PIN_SELECTOR = "@sha256:"


def carried(request, pinned):
    """`pinned` when it is `request` with a version added (NAME -> NAME@sha256:<hex>), else `request`:
    a decision that is not the job's own request is never carried."""
    if not request or not pinned or "@" in request or not pinned.startswith(request + PIN_SELECTOR):
        return request
    digest = pinned[len(request) + len(PIN_SELECTOR):]
    return pinned if digest and all(c in "0123456789abcdef" for c in digest) else request


def carry(job, option, chos, pinned):
    """Make the job carry the pinned request (site.pin_at_submit) where its request came from."""
    if option is not None:
        if carried(option, pinned) != option:
            job.Resource_List[RESOURCE] = carried(option, pinned)
    elif chos is not None and carried(chos, pinned) != chos:
        job.Variable_List["CHOS"] = carried(chos, pinned)


def pinned_of(policy, outcome, user):
    """The request the job carries (envsched validate --pin's answer), or None: no version known
    here, the launch hook decides, unpinned."""
    from envsched.cli.envsched import pinned_request
    from envsched.errors import EnvschedError
    try:
        return pinned_request(policy, outcome, user)
    except (EnvschedError, OSError):
        return None


def prepare_path(conf):
    """pbs-prepare, when it may be run as root: root's, with every directory above it; else None."""
    path = conf.get("prepare")
    if not path and isinstance(conf.get("joiner"), str):
        path = os.path.join(os.path.dirname(conf["joiner"]), PREPARE)
    if not isinstance(path, str) or not path.startswith("/") or not os.path.isfile(path) or untrusted_src(path):
        return None
    return path


def cached_answer(conf, user_name, option, chos):
    """The answer pbs-prepare gives from root's cache: (code, out lines, err lines), or None (a miss,
    or it cannot be asked: then Python decides). Its stdout is read to the end: it writes a few
    lines; stderr (the reason of a miss) is not read."""
    prepare = prepare_path(conf)
    if prepare is None or not hasattr(os, "posix_spawn"):
        return None
    argv = [prepare, "submit", user_name, option or "", chos or ""]
    out_r, out_w = os.pipe()
    try:
        pid = os.posix_spawn(prepare, argv, CLEAN_ENV, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)])
    except OSError:
        os.close(out_r)
        return None
    finally:
        os.close(out_w)
    with open(out_r, "rb", closefd=True) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    code, out, err = None, [], []
    for line in data.decode("utf-8", "replace").splitlines():
        kind, _, value = line.partition("\t")
        if kind == "exit" and code is None and value.isdigit():
            code = int(value)
        elif kind == "out":
            out.append(value)
        elif kind == "err":
            err.append(value)
        else:
            return None
    return None if code is None else (code, out, err)


def apply_answer(job, option, chos, answer):
    """The cached answer, applied as check() applies the resolver's: None (accepted, the pin carried)
    or the refusal line."""
    code, out, err = answer
    if code != 0:
        said = [line for line in err if line.startswith("envsched: ")]
        return one_line(said[-1]) if said else f"envsched: the submit check failed (exit {code})"
    carry(job, option, chos, out[0] if out else None)
    return None


def keep(conf, policy, user, option, chos, outcome, line, pinned):
    """The answer, for pbs-prepare to give again (submitcache.py's entry, root's run_dir/.submit).
    Quietly nothing where it must not or cannot be kept."""
    from envsched import submitcache
    from envsched.decisioncache import write_owned
    from envsched.exitcodes import ExitCode
    names = policy.environments
    if os.geteuid() != 0 or not policy.site.decision_cache or any(v is not None and v not in names
                                                                   for v in (option, chos)):
        return                          # an unknown name: not kept (the cache stays bounded)
    from envsched.pin import _secure_dir
    run_dir = policy.site.run_dir
    directory = os.path.join(run_dir, SUBMIT_DIR)
    _secure_dir(run_dir, 0o700)         # as the pins and job records have it (pin.py; raises if not root's)
    _secure_dir(directory, 0o700)
    if len(os.listdir(directory)) >= MAX_ENTRIES:
        return
    pinned_tree = None
    if line is None and policy.site.pin_at_submit and outcome.environment is not None and \
            outcome.source in ("option", "CHOS variable") and not outcome.selector:
        pinned_tree = outcome.environment
        if pinned is None:
            return                      # no version known here for a reason the entry cannot check
    inputs = submitcache.inputs_line(user.uid, option, chos, conf["policy"]) + "\tscheduler=openpbs"
    code = ExitCode.REFUSED if line is not None else 0
    entry = submitcache.entry_lines(policy.source, inputs, user, None, pinned_tree, code,
                                    [pinned] if line is None and pinned else [], [line] if line is not None else [])
    if entry is not None:
        write_owned(0, directory, inputs, entry)


def check(e, conf):
    """None if the request is fine, else the one line for the user; a fine request is pinned.
    A warm submission from root's cache (pbs-prepare), else in Python."""
    option, chos = request_of(e.job)
    if option is not None and not option:
        return f"envsched: -l {RESOURCE} needs an environment name"
    user_name = e.requestor
    if not user_name:
        return "envsched: the job has no submitting user"
    if "envsched.resolve" not in sys.modules:
        # pbs_server keeps its hook interpreter (and what it imported) between events until it
        # restarts it: once envsched is imported, deciding here costs ~0.4 ms, less than starting
        # pbs-prepare (~1.5 ms); before that, the cache spares the import (2-5 ms)
        answer = cached_answer(conf, str(user_name), option, chos)
        if answer is not None:
            return apply_answer(e.job, option, chos, answer)

    if conf.get("src") and conf["src"] not in sys.path:
        sys.path.insert(0, conf["src"])
    from envsched.errors import EnvschedError
    from envsched.identity import lookup_user
    from envsched.policy import load_policy
    from envsched.resolve import Refusal, resolve
    from envsched.service import JobContext, request_for

    try:
        policy = load_policy(conf["policy"])
        user = lookup_user(user_name)
        ctx = JobContext(user=user, option=option, chos_var=chos, read_user_file=False)
        outcome = resolve(policy, request_for(policy, ctx), identity_only=True)
    except EnvschedError as err:
        return f"envsched: {one_line(err.message)}"
    line = f"envsched: {one_line(outcome.message())}" if isinstance(outcome, Refusal) else None
    pinned = None if line is not None else pinned_of(policy, outcome, user)
    if line is None:
        carry(e.job, option, chos, pinned)
    try:
        keep(conf, policy, user, option, chos, outcome, line, pinned)
    except Exception:  # noqa: BLE001 - an answer not kept is a miss next time, never a refusal now
        pass
    return line


def main():
    e = pbs.event()
    try:
        line = check(e, load_config())
    except Exception as err:  # noqa: BLE001 - fail closed with a reason, not a traceback
        line = f"envsched: the submit check failed: {one_line(type(err).__name__ + ': ' + str(err))}"
    if line is not None:
        e.reject(line)
    e.accept()


main()
