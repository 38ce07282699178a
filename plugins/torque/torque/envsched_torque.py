#!/usr/bin/python3 -I
"""envsched's Torque shims that may run Python (at most once per job per node; never per task).

    prologue       mom_priv/prologue (root, Mother Superior, before the job) and
                   mom_priv/prologue.parallel (root, each sister node). Its arguments come from
                   pbs_mom: jobid, user, group, jobname, resource list, queue, account (6.x: the
                   script path). It always writes the job's record (jobrecord.py: uid, user,
                   queue, account), the only place the set-user-ID starter takes the job's owner,
                   queue and account from (a TM task's environment is the user's to write).
                   Torque does not pass the job's `-v` variables to the prologue, so it cannot see
                   CHOS: the submit filter stamps the job's request into the script
                   (`#ENVSCHED chos=VALUE`; 6.x gives the script's path as argv[8], older:
                   mom_priv/jobs/<jobid>.SC). With a stamp the prologue prepares the job's view
                   early (`envsched prepare`, key torque-<jobid>) with exactly the inputs the
                   starter will compute, so the starter joins it without Python. A tree that is
                   broken on this node, a refused request, or a record that cannot be written
                   aborts the job (exit 1) with one line on the job's stderr. Without a stamp
                   (no filter, or a sister node) the starter decides. Any other failure exits 0:
                   the starter fails closed.
    epilogue       mom_priv/epilogue and epilogue.parallel (root, after the job, also after
                   qdel): `envsched release --key torque-<jobid> --with-steps --quiet` and the
                   job's record removed. Always exits 0.
    submit-filter  torque.cfg SUBMITFILTER (as the user, in qsub): qsub's arguments, the script on
                   stdin; refuses an unknown or disallowed environment with one line (exit 1),
                   else prints the script with the stamp. The rendered filter runs the C filter
                   first (`torque-pelog submit-filter`, plugins/torque/torque/qsubfilter.c), which
                   gives the answer this mode kept in ~/.cache/envsched/submit while every input
                   of it is unchanged, and hands everything else over to this mode.

Pinned at submit (site.pin_at_submit, the default): when the job named its environment (CHOS=NAME)
the filter adds a second stamp, `#ENVSCHED pin=NAME@sha256:<digest of NAME's version current now>`
(`envsched validate --pin`), and the prologue prepares the job's view for that exact version, stored
under the inputs the starter computes from the job's CHOS (NAME): the starter joins it, so the job
runs the version it was submitted against even if the admin stamped a new one while it was queued.
The filter cannot change the job's CHOS itself (qsub's -v wins over the script's #PBS -v), so the
pin is carried by the script only, like the request: a sister node (prologue.parallel, no script)
and a job submitted without the filter decide when they start (unpinned). A user who writes the
stamp in the script (without the filter) asks for that exact version, as CHOS=NAME@sha256:...
would: the prologue takes it only as NAME plus a version, and the resolver checks it like any request.
"""
from __future__ import annotations

import contextlib
import io
import os
import pwd
import re
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

KEY_PREFIX = "torque-"
STAMP = "#ENVSCHED chos="
PIN_STAMP = "#ENVSCHED pin="
PIN_SELECTOR = "@sha256:"
JOBID_RE = re.compile(r"[0-9][A-Za-z0-9._-]{0,55}\Z")


@dataclass
class Options:
    mode: str
    policy: str
    src: Optional[str] = None
    binds: List[str] = field(default_factory=list)
    rest: List[str] = field(default_factory=list)


def parse_args(argv: Sequence[str]) -> Options:
    rest = list(argv)
    if not rest or rest[0] not in ("prologue", "epilogue", "submit-filter"):
        sys.exit("usage: envsched_torque.py prologue|epilogue|submit-filter --policy FILE [--src DIR] "
                 "[--bind PATH]... [--] ARGS...")
    mode, policy, src, binds = rest.pop(0), "", None, []
    while rest and rest[0].startswith("--"):
        arg = rest.pop(0)
        if arg == "--":
            break
        if arg not in ("--policy", "--src", "--bind") or not rest:
            sys.exit(f"envsched_torque.py: unknown option or missing value: {arg}")
        value = rest.pop(0)
        if arg == "--policy":
            policy = value
        elif arg == "--src":
            src = value
        else:
            binds.append(value)
    if not policy:
        sys.exit("envsched_torque.py: --policy FILE is required")
    return Options(mode, policy, src, binds, rest)


def untrusted_dir(path: str) -> Optional[str]:
    """The first of `path` and the directories above it that is not root's alone, or None."""
    p = os.path.abspath(path)
    while True:
        st = os.lstat(p)
        if st.st_uid != 0 or st.st_mode & 0o022:
            return p
        if p == "/":
            return None
        p = os.path.dirname(p)


def inputs(uid: int, chos: str, queue: str, account: str) -> str:
    """The raw request as the starter writes it (plugins/torque/torque/job.c: es_tjob_identify)."""
    return f"uid={uid}\tchos={chos}\tqueue={queue}\taccount={account}"


def run_resolver(argv: List[str]) -> Tuple[int, str]:
    """`envsched ARGV` in this process; its exit code and its last `envsched: ` line."""
    code, line, _out = run_resolver_out(argv)
    return code, line


def run_resolver_out(argv: List[str]) -> Tuple[int, str, str]:
    """run_resolver, and what the command printed on stdout."""
    from envsched.cli.envsched import main
    sink, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(sink):
        try:
            code = main(argv)
        except SystemExit as e:             # argparse
            code = int(e.code or 0) if not isinstance(e.code, str) else 64
    lines = [ln for ln in sink.getvalue().splitlines() if ln.startswith("envsched: ")]
    return code, lines[-1] if lines else f"envsched: the environment could not be prepared (exit {code})", \
        out.getvalue()


# ------------------------------------------------------------------------------ prologue
def read_stamps(path: str) -> Tuple[Optional[str], Optional[str]]:
    """The request the submit filter stamped into the script, or None (no filter ran), and the
    pinned request it stamped with it (None: none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None, None
    with os.fdopen(fd, "rb") as f:
        head = f.read(65536).decode("utf-8", "replace")
    chos = pin = None
    for line in head.split("\n")[:50]:
        if line.startswith(STAMP) and chos is None:
            chos = line[len(STAMP):].strip()
        elif line.startswith(PIN_STAMP) and pin is None:
            pin = line[len(PIN_STAMP):].strip()
    return chos, pin


def read_stamp(path: str) -> Optional[str]:
    return read_stamps(path)[0]


def carried(request: str, pinned: Optional[str]) -> str:
    """`pinned` when it is `request` with a version added (NAME -> NAME@sha256:<hex>), else `request`:
    a decision that is not the job's own request is never carried, and a stamp that is no pin of
    the job's own request is no request."""
    if not request or not pinned or "@" in request or not pinned.startswith(request + PIN_SELECTOR):
        return request
    digest = pinned[len(request) + len(PIN_SELECTOR):]
    return pinned if digest and all(c in "0123456789abcdef" for c in digest) else request


def write_record(opts: Options, key: str, uid: int, user: str, queue: str, account: str) -> Optional[str]:
    """The job's record for the starter (None), or the user's line saying why it cannot be."""
    from envsched import jobrecord
    from envsched.errors import EnvschedError, one_line
    from envsched.policy.load import load_policy
    try:
        run_dir = load_policy(opts.policy).site.run_dir
        jobrecord.write(run_dir, key, jobrecord.JobRecord(uid, user, queue, account))
    except (EnvschedError, OSError) as e:
        return one_line(f"envsched: the job's record cannot be written: {e}")
    return None


def prologue(opts: Options) -> int:
    # argv: jobid user group jobname resource_list queue account [script path (6.x)]
    args = opts.rest
    if len(args) < 6 or not JOBID_RE.match(args[0]):
        return 0
    jobid, user, queue = args[0], args[1], args[5]
    account = args[6] if len(args) > 6 else ""
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return 0                            # the starter refuses: no record
    key = KEY_PREFIX + jobid
    problem = write_record(opts, key, uid, user, queue, account)
    if problem:
        print(problem, file=sys.stderr)     # the job's error file
        return 1                            # 1: Torque aborts the job
    script = args[7] if len(args) > 7 else os.path.join(os.getcwd(), "jobs", f"{jobid}.SC")
    chos, pin = read_stamps(script)
    if chos is None:
        return 0                            # no filter, or a sister: the starter decides, with the job's CHOS
    # pinned at submit: the view of the version the job was submitted against, under the inputs the
    # starter computes from the job's CHOS (NAME), so that the starter joins it
    request = carried(chos, pin)
    # the owner: our parent, the pbs_mom child that runs the prologue and then execs the job
    argv = ["--policy", opts.policy, "prepare", "--format", "shim", "--reuse", "--record-local", "--gc",
            "--key", key, "--fallback-key", key + ".v", "--user", str(uid), "--job", jobid,
            "--owner-pid", str(os.getppid()), f"--chos-var={request}",
            f"--inputs={inputs(uid, chos, queue, account)}"]
    if queue:
        argv.append(f"--partition={queue}")
    if account:
        argv.append(f"--account={account}")
    for b in opts.binds:
        argv += ["--bind", b]
    code, line = run_resolver(argv)
    if code in (69, 77):                    # broken tree on this node, refused: the job cannot run
        print(line, file=sys.stderr)        # the job's error file
        return 1                            # 1: Torque aborts the job
    return 0


def epilogue(opts: Options) -> int:
    # argv: jobid user group jobname session_id resource_list resources_used queue account exit_code [script]
    if opts.rest and JOBID_RE.match(opts.rest[0]):
        key = KEY_PREFIX + opts.rest[0]
        run_resolver(["--policy", opts.policy, "release", "--key", key, "--with-steps", "--quiet"])
        from envsched import jobrecord
        from envsched.policy.load import load_policy
        jobrecord.remove(load_policy(opts.policy).site.run_dir, key)
    return 0


# ------------------------------------------------------------------------------ submit filter
def v_assignments(value: str) -> Dict[str, str]:
    """`-v A=1,B=2,C` as qsub parses it (a name without '=' takes the submitter's value)."""
    out: Dict[str, str] = {}
    for item in value.split(","):
        name, eq, val = item.partition("=")
        name = name.strip()
        if name:
            out[name] = val if eq else os.environ.get(name, "")
    return out


def requested_chos(qsub_args: Sequence[str], script: str) -> Optional[str]:
    """CHOS as the job will see it: `#PBS -v` in the script, overridden by qsub's own -v/-V."""
    chos: Optional[str] = None
    for line in script.splitlines():
        if line.startswith("#PBS"):
            words = line[4:].split()
            for i, w in enumerate(words[:-1]):
                if w == "-v":
                    chos = v_assignments(words[i + 1]).get("CHOS", chos)
        elif line.strip() and not line.startswith("#"):
            break                           # qsub stops reading directives at the first command
    args = list(qsub_args)
    for i, a in enumerate(args):
        if a == "-V" and "CHOS" in os.environ:
            chos = os.environ["CHOS"]
        elif a == "-v" and i + 1 < len(args):
            chos = v_assignments(args[i + 1]).get("CHOS", chos)
        elif a.startswith("-v") and len(a) > 2:
            chos = v_assignments(a[2:]).get("CHOS", chos)
    return chos


def stamped(script: str, chos: str, pin: str = "") -> str:
    """The script with the stamp as its second line (after a #! line) or first, and the pin stamp
    after it when there is one; lines are split at "\n" only, as the kernel and the shell do (not
    at "\x85" or "\u2028"). Stamps already in the script (the user's) are removed."""
    lines = [ln + "\n" for ln in script.split("\n")]
    lines[-1] = lines[-1][:-1]                  # the last piece has no "\n" of its own
    if not lines[-1]:
        lines.pop()
    at = 1 if lines and lines[0].startswith("#!") else 0
    if at and not lines[0].endswith("\n"):
        lines[0] += "\n"                         # "#!/bin/sh" alone: the stamp goes on a line of its own
    lines = [ln for ln in lines if not ln.startswith(STAMP) and not ln.startswith(PIN_STAMP)]
    lines.insert(at, f"{STAMP}{chos}\n")
    if pin:
        lines.insert(at + 1, f"{PIN_STAMP}{pin}\n")
    return "".join(lines)


def submit_filter(opts: Options) -> int:
    script = sys.stdin.read()
    chos = requested_chos(opts.rest, script)
    # --submit-cache: the answer kept in ~/.cache/envsched/submit (submitcache.py) for the C filter
    # (torque-pelog submit-filter, qsubfilter.c) to give again while nothing it read changed
    argv = ["--policy", opts.policy, "validate", "--identity-only", "--pin", "--submit-cache", "--user",
            str(os.getuid()), f"--chos-var={chos or ''}"]
    code, line, out = run_resolver_out(argv)
    if code != 0:
        print(line, file=sys.stderr)
        return 1
    pinned = carried(chos or "", out.split("\n", 1)[0].strip())
    sys.stdout.write(stamped(script, chos or "", pinned if pinned != (chos or "") else ""))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.src:
        untrusted = untrusted_dir(opts.src)
        if untrusted:                       # root would import code from it
            print(f"envsched: --src {opts.src}: {untrusted} must be root's and not writable by group or others",
                  file=sys.stderr)
            return {"submit-filter": 78, "prologue": 1}.get(opts.mode, 0)    # prologue: 1 aborts the job
        sys.path.insert(0, opts.src)
    if opts.mode == "submit-filter":
        return submit_filter(opts)
    try:
        return prologue(opts) if opts.mode == "prologue" else epilogue(opts)
    except Exception as e:  # noqa: BLE001 - never requeue or abort on our own bug: the starter fails closed
        import syslog
        syslog.openlog("envsched-torque", syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_ERR, f"{opts.mode} {opts.rest[:1]}: internal error: {e!r}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
