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

Configuration: hooks get no arguments, so the settings come from the hook's configuration
file (JSON), whose path PBS puts in pbs.hook_config_filename (pbs_module.7B):
    {"policy": "/etc/envsched/policy.toml", "src": null, ...}
`src` (optional) is put first on sys.path to import envsched from a directory of root's.
"""
import json
import os
import sys

import pbs

RESOURCE = "chos"


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


def pin(job, policy, outcome, user, option, chos):
    """Make the job carry the pinned request (site.pin_at_submit) where its request came from."""
    from envsched.cli.envsched import pinned_request
    from envsched.errors import EnvschedError
    try:
        pinned = pinned_request(policy, outcome, user)
    except (EnvschedError, OSError):
        return                      # no version known here: the launch hook decides, unpinned
    if option is not None:
        if carried(option, pinned) != option:
            job.Resource_List[RESOURCE] = carried(option, pinned)
    elif chos is not None and carried(chos, pinned) != chos:
        job.Variable_List["CHOS"] = carried(chos, pinned)


def check(e, conf):
    """None if the request is fine, else the one line for the user; a fine request is pinned."""
    if conf.get("src") and conf["src"] not in sys.path:
        sys.path.insert(0, conf["src"])
    from envsched.errors import EnvschedError
    from envsched.identity import lookup_user
    from envsched.policy import load_policy
    from envsched.resolve import Refusal, resolve
    from envsched.service import JobContext, request_for

    option, chos = request_of(e.job)
    if option is not None and not option:
        return f"envsched: -l {RESOURCE} needs an environment name"
    user_name = e.requestor
    if not user_name:
        return "envsched: the job has no submitting user"
    try:
        policy = load_policy(conf["policy"])
        user = lookup_user(user_name)
        ctx = JobContext(user=user, option=option, chos_var=chos, read_user_file=False)
        outcome = resolve(policy, request_for(policy, ctx), identity_only=True)
    except EnvschedError as err:
        return f"envsched: {one_line(err.message)}"
    if isinstance(outcome, Refusal):
        return f"envsched: {one_line(outcome.message())}"
    pin(e.job, policy, outcome, user, option, chos)
    return None


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
