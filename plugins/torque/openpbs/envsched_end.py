"""envsched's OpenPBS execjob_end hook: release the job's pin on this host.

Registered by `envsched site-config render --scheduler openpbs` (section `qmgr`):
    create hook envsched_end event=execjob_end
    import hook envsched_end application/x-python default envsched_end.py
    import hook envsched_end application/x-config default envsched.json

execjob_end hooks run as root on the execution hosts when the job ends (pbs_module.7B:
pbs.EXECJOB_END "The execjob_end event type"; pbs_hook_attributes.7B: user default pbsadmin,
root). It imports nothing of envsched: `pbs-prepare end JOBID` (joiner/pbs_prepare.c, beside the
joiner) releases run_dir/openpbs-<jobid> (envsched_launch.py made it) in C, and leaves a pin with
node hooks, isolation namespaces or image mounts to `envsched release`; the view disappears with
its last process. It always accepts: a failure is logged (mom log, admin log), and `envsched gc`
collects what is left.
"""
import json
import os

import pbs

PREPARE = "pbs-prepare"
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


def untrusted(path):
    """The first of `path` and the directories above it not root's alone (root runs it)."""
    parts = os.path.abspath(path).split("/")
    return next((d for d in ("/".join(parts[:i]) or "/" for i in range(1, len(parts) + 1))
                 if os.lstat(d).st_uid != 0 or os.lstat(d).st_mode & 0o022), None)


def main():
    e = pbs.event()
    try:
        with open(pbs.hook_config_filename) as f:
            conf = json.load(f)
        prepare = conf.get("prepare") or os.path.join(os.path.dirname(conf["joiner"]), PREPARE)
        if not prepare.startswith("/") or untrusted(prepare):
            raise ValueError(f"prepare {prepare}: {untrusted(prepare) if prepare.startswith('/') else prepare} "
                             "is not root's alone")
        status, _, err = run([prepare, "end", str(e.job.id)])
        if status != 0:
            raise RuntimeError(" ".join(err.decode("utf-8", "replace").split()) or f"exit {status}")
    except Exception as err:  # noqa: BLE001 - never fail the job's end; gc is the safety net
        pbs.logmsg(pbs.LOG_ERROR, f"envsched: {e.job.id}: releasing the job's view failed: {err!r}")
    e.accept()


main()
