"""envsched's OpenPBS execjob_end hook: release the job's pin on this host.

Registered by `envsched site-config render --scheduler openpbs` (section `qmgr`):
    create hook envsched_end event=execjob_end
    import hook envsched_end application/x-python default envsched_end.py
    import hook envsched_end application/x-config default envsched.json

execjob_end hooks run as root on the execution hosts when the job ends (pbs_module.7B:
pbs.EXECJOB_END "The execjob_end event type"; pbs_hook_attributes.7B: user default pbsadmin,
root). It releases run_dir/openpbs-<jobid> (envsched_launch.py made it); the view disappears
with its last process. It always accepts: a failure is logged (mom log, admin log), and
`envsched gc` collects what is left.
"""
import json
import os
import re
import sys

import pbs

KEY_PREFIX = "openpbs-"


def pin_key(job_id):
    return (KEY_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "_", str(job_id)))[:64]


def untrusted_src(src):
    """The first of `src` and the directories above it not root's alone (root imports code from it)."""
    parts = os.path.abspath(src).split("/")
    return next((d for d in ("/".join(parts[:i]) or "/" for i in range(1, len(parts) + 1))
                 if os.lstat(d).st_uid != 0 or os.lstat(d).st_mode & 0o022), None)


def main():
    e = pbs.event()
    try:
        with open(pbs.hook_config_filename) as f:
            conf = json.load(f)
        if conf.get("src") and untrusted_src(conf["src"]):
            raise ValueError(f"src {conf['src']}: {untrusted_src(conf['src'])} is not root's alone")
        if conf.get("src") and conf["src"] not in sys.path:
            sys.path.insert(0, conf["src"])
        from envsched import audit
        from envsched.pin import PinStore
        from envsched.policy import load_policy
        policy = load_policy(conf["policy"])
        audit.configure(policy.site.log_file)
        key = pin_key(e.job.id)
        if PinStore(policy.site.run_dir).release(key):
            audit.log("released", job=str(e.job.id), key=key)
    except Exception as err:  # noqa: BLE001 - never fail the job's end; gc is the safety net
        pbs.logmsg(pbs.LOG_ERROR, f"envsched: {e.job.id}: releasing the job's view failed: {err!r}")
    e.accept()


main()
