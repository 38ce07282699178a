#!/usr/bin/python3 -I
"""envsched Job Submission Verifier for (Son of / Univa) Grid Engine.

One long-running process speaks the JSV protocol (jsv(1)) on stdin/stdout for many submissions; the
envsched package is imported in-process (no fork per job). Per job it

  * reads the requested environment from the hard resource list (`-l chos=NAME`, PARAM l_hard), the
    job's CHOS variable (asks for the job environment with `SEND ENV` at START) and the submitting user
    (PARAM USER);
  * decides with identity-only semantics (like `envsched validate --identity-only`): on refusal
    `RESULT STATE REJECT envsched: environment 'x' (source) refused: ...; allowed for you: ...`, which
    qsub prints as `Unable to run job: envsched: ...`;
  * refuses interactive logins (CMDNAME NONE: qlogin, qsh, qrsh without a command) unless the
    decision is the host OS: Grid Engine starts them without the starter, so they would land on
    the host, not in the job's environment; the line names the qrsh -pty y workaround;
  * refuses a job whose exchange shows a value with a line break (a line that is no command, a
    PARAM or variable twice, CMDARGs missing, input behind a BEGIN): Grid Engine sends PARAM values
    unescaped, and writes the same values unescaped into the job's config on the execution host,
    where the shepherd obeys the extra lines (measured on 8.1.9: an argument holding
    "\njob_owner=root" ran the job as root);
  * on acceptance records the request for the execution side in ENVSCHED_REQUEST (overwriting a value
    the user set with -v), or deletes a user-set ENVSCHED_REQUEST when there is no -l chos; removes
    `chos` from l_hard (no queue offers it: the job would pend forever) and answers CORRECT, or ACCEPT
    when nothing changed;
  * pins at submit (site.pin_at_submit, the default): a job that named its environment itself
    (-l chos=NAME, or CHOS=NAME) carries NAME@sha256:<digest of NAME's version current now> instead,
    in the same variable (ENVSCHED_REQUEST, or the job's CHOS), so that the starter runs that version
    even if the admin stamps a new one while the job waits (`envsched validate --pin` decides what to
    carry; unchanged when the site does not pin or this host knows no version of NAME). A user who
    sets the pinned value with -v asks for that exact version, as -l chos=NAME@sha256:... would: the
    execution side checks it against the policy like any request.

Configuration (Grid Engine starts a JSV from its path alone, so the settings come from arguments in
the launcher `envsched site-config render --scheduler uge` writes, its `jsv` section, or from the
environment):

    --policy FILE   (or ENVSCHED_POLICY)    the site policy
    --src DIR       (or ENVSCHED_SRC)       directory holding the envsched package, put on sys.path
    --log FILE      (or ENVSCHED_JSV_LOG)   append the protocol exchange (debugging)
    --accept-request-var   with a client JSV (the cell's sge_request): a job arriving with
                           ENVSCHED_REQUEST and no -l chos (a JSV run already moved it there; or the
                           user's -v) is validated as that request and kept, on both sides, instead of
                           the variable being deleted

On the client side the JSV runs as the submitting user and reads ~/.chos like the resolver does; on the
server side (CONTEXT server, or another uid than the job's user) it never does: the execution side
decides for real.
"""
from __future__ import annotations

import os
import sys
import time

REQUEST_VAR = "ENVSCHED_REQUEST"
RESOURCE = "chos"


def parse_args(argv):
    opts = {"policy": os.environ.get("ENVSCHED_POLICY"), "src": os.environ.get("ENVSCHED_SRC"),
            "log": os.environ.get("ENVSCHED_JSV_LOG"), "accept_request_var": False}
    it = iter(argv)
    for a in it:
        key, eq, val = a.partition("=")
        name = key.lstrip("-").replace("-", "_")
        if name == "accept_request_var" and not eq:
            opts[name] = True
        elif name in ("policy", "src", "log"):
            opts[name] = val if eq else next(it, None)
            if opts[name] is None:
                sys.exit(f"envsched_jsv: {key} needs a value")
        else:
            sys.exit(f"envsched_jsv: unknown argument {a!r}")
    return opts


def one_line(text):
    return " ".join(str(text).split())


LINE_BREAK = ("a value of the job's (an argument, -N, -M, -o, -wd, ...) holds a line break: Grid Engine "
              "would write it unescaped into the job's configuration, as lines of their own; submit it "
              "without one")
COMMANDS = ("START", "PARAM", "ENV", "BEGIN", "QUIT", "SHOW")


class Jsv:
    def __init__(self, opts, out=sys.stdout):
        self.opts = opts
        self.out = out
        self.log = None
        if opts["log"]:
            try:
                self.log = open(opts["log"], "a", buffering=1, errors="backslashreplace")
            except OSError:
                pass    # logging is for debugging only
        self.policy = None
        self.policy_stamp = None
        self.params = {}
        self.envs = {}
        self.in_job = False     # between START and the BEGIN we answer
        self.broken = None      # why this job's exchange cannot be trusted (a line break in a value)
        self.outbox = None      # lines held back while a verification's answer may still be void

    # ------------------------------------------------------------ protocol
    def send(self, line):
        if self.outbox is not None:
            self.outbox.append(line)
            return
        self.out.write(line + "\n")
        self.out.flush()
        if self.log:
            self.log.write(f"{os.getpid()} <<< {line}\n")

    def handle(self, line, pending=lambda wait=0.0: False):
        """One protocol line. Grid Engine sends PARAM values (job arguments, -N, -M, -o, -wd, ...)
        unescaped, so a value with a line break arrives as several lines. Such a value would also
        reach the job's config on the execution host as lines of their own, which the shepherd
        obeys (job_owner=, prolog=, starter_method=, queue=): the job is refused when its exchange
        has a line that is no command, a PARAM or variable twice, fewer CMDARGs than CMDARGS, or
        more input behind a BEGIN (qmaster sends nothing after the real BEGIN until it has our
        answer, so a BEGIN with input behind it was inside a value). `pending(wait)` says whether
        more input is there."""
        if self.log:
            self.log.write(f"{os.getpid()} >>> {line}\n")
        cmd, _, rest = line.partition(" ")
        if cmd not in COMMANDS and not self.in_job:
            cmd = ""
        if cmd == "START":
            self.params, self.envs, self.in_job, self.broken = {}, {}, True, None
            self.send("SEND ENV")
            self.send("STARTED")
        elif cmd == "QUIT":
            return False
        elif not self.in_job:
            # after our answer and before the next START: only what followed a BEGIN that was inside
            # a value (see above) can be here; answering it would answer the next job
            if self.log:
                self.log.write(f"{os.getpid()} ignored outside a job: {line!r}\n")
        elif cmd == "PARAM":
            name, _, value = rest.partition(" ")
            if name in self.params:
                self.broken = LINE_BREAK
            self.params[name] = value
        elif cmd == "ENV":
            action, _, nv = rest.partition(" ")
            name, _, value = nv.partition(" ")
            if action == "ADD":
                if name in self.envs:
                    self.broken = LINE_BREAK
                self.envs[name] = value
        elif cmd == "BEGIN":
            if pending():
                self.broken = LINE_BREAK        # not the real BEGIN: that one is still to come
                return True
            t0 = time.perf_counter()
            self.outbox = []
            try:
                if self.broken is None and not self.cmdargs_complete():
                    self.broken = LINE_BREAK
                if self.broken is not None:
                    self.send(f"RESULT STATE REJECT envsched: {self.broken}")
                else:
                    self.verify()
            except Exception as e:  # noqa: BLE001 - fail closed, but keep serving
                self.outbox = [f"RESULT STATE REJECT envsched: internal error in the JSV: "
                               f"{one_line(type(e).__name__ + ': ' + str(e))}"]
            answer, self.outbox = self.outbox, None
            if pending(0.001):
                self.broken = LINE_BREAK        # this BEGIN was inside a value after all
                return True
            for out in answer:
                self.send(out)
            if self.log:
                self.log.write(f"{os.getpid()} verify took {1000 * (time.perf_counter() - t0):.2f} ms\n")
            self.params, self.envs, self.in_job = {}, {}, False
        elif cmd == "SHOW":
            for k, v in self.params.items():
                self.send(f"LOG INFO param {k}={v}")
        else:
            self.broken = LINE_BREAK            # no command: the rest of a value
        return True

    def cmdargs_complete(self):
        def number(text):                   # ASCII digits only ("²".isdigit() is true), at most 9
            return int(text) if 0 < len(text) <= 9 and all("0" <= c <= "9" for c in text) else None
        count = number(self.params.get("CMDARGS", "0"))
        if count is None:
            return False
        indexes = [k[6:] for k in self.params if k.startswith("CMDARG") and k != "CMDARGS"]
        return all(f"CMDARG{i}" in self.params for i in range(count)) and \
            all(number(i) is not None and number(i) < count for i in indexes)

    def run(self, fd=0):
        """Serve protocol lines from fd until QUIT or end of input (read unbuffered by Python, so
        that what is pending behind a line can be told)."""
        import select
        buf = [b""]

        def pending(wait=0.0):
            return bool(buf[0]) or bool(select.select([fd], [], [], wait)[0])

        while True:
            nl = buf[0].find(b"\n")
            if nl < 0:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return
                buf[0] += chunk
                continue
            line, buf[0] = buf[0][:nl], buf[0][nl + 1:]
            if not self.handle(line.decode("utf-8", "surrogateescape"), pending):
                return

    # ------------------------------------------------------------ decision
    def load(self):
        from envsched.policy import load_policy
        path = self.opts["policy"]
        try:
            st = os.stat(path) if path else None
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size) if st else None
        except OSError:
            stamp = None
        if self.policy is None or stamp != self.policy_stamp:
            self.policy = load_policy(path)
            self.policy_stamp = stamp
        return self.policy

    @staticmethod
    def split_list(value):
        """`a=1,chos=deb13,b` -> [(name, value-or-None), ...]"""
        items = []
        for part in value.split(",") if value else []:
            if part:
                n, eq, v = part.partition("=")
                items.append((n, v if eq else None))
        return items

    @staticmethod
    def join_list(items):
        return ",".join(n if v is None else f"{n}={v}" for n, v in items)

    def login_refusal(self, name, policy):
        """qlogin, qsh and qrsh without a command: Grid Engine starts them without the queue's
        starter_method (queue_conf(5)), so they would run on the host OS, not in `name`."""
        what = {"qlogin": "qlogin", "qsh": "qsh", "qrsh": "qrsh without a command"}.get(
            self.params.get("CLIENT", ""), "an interactive login (qlogin, qsh, qrsh without a command)")
        hint = f"use `qrsh -pty y -l {RESOURCE}={name} /bin/sh -l` (or your shell) instead"
        if policy.site.allow_local:
            hint += f", or -l {RESOURCE}=local for the host OS"
        return (f"{what} cannot start in environment '{name}': Grid Engine runs interactive logins "
                f"without the job starter; {hint}")

    def verify(self):
        from envsched.errors import EnvschedError
        from envsched.identity import lookup_user
        from envsched.resolve import Refusal, resolve
        from envsched.service import JobContext, request_for

        hard = self.split_list(self.params.get("l_hard", ""))
        soft = self.split_list(self.params.get("l_soft", ""))
        wanted = [v for n, v in hard if n.lower() == RESOURCE]
        if any(n.lower() == RESOURCE for n, _ in soft):
            self.send(f"RESULT STATE REJECT envsched: request the environment as a hard resource "
                      f"(-l {RESOURCE}=NAME), not with -soft")
            return
        if len(set(wanted)) > 1:
            self.send(f"RESULT STATE REJECT envsched: more than one environment requested "
                      f"({', '.join(str(w) for w in wanted)})")
            return
        option = wanted[0] if wanted else None
        if option is not None and not option:
            self.send(f"RESULT STATE REJECT envsched: -l {RESOURCE} needs an environment name")
            return
        user_name = self.params.get("USER")
        if not user_name:
            self.send("RESULT STATE REJECT envsched: the job has no USER")
            return
        server = self.params.get("CONTEXT") != "client"
        kept_var = None
        if option is None and REQUEST_VAR in self.envs and self.opts["accept_request_var"]:
            # the variable a JSV run before us recorded (the client JSV for the server; an earlier
            # run of the client JSV itself, which SGE 8.1.9's libdrmaa repeats at every runJob),
            # or the user's own -v: either way it is the request, checked like -l chos
            kept_var = option = self.envs[REQUEST_VAR]
        chos_var = self.envs.get("CHOS") or None
        try:
            policy = self.load()
            user = lookup_user(user_name)
            ctx = JobContext(user=user, option=option, chos_var=chos_var,
                             read_user_file=not server and os.geteuid() == user.uid)
            outcome = resolve(policy, request_for(policy, ctx), identity_only=True)
        except EnvschedError as e:
            self.send(f"RESULT STATE REJECT envsched: {one_line(e.message)}")
            return
        if isinstance(outcome, Refusal):
            self.send(f"RESULT STATE REJECT envsched: {one_line(outcome.message())}")
            return
        if self.params.get("CMDNAME") == "NONE" and outcome.environment is not None:
            self.send(f"RESULT STATE REJECT envsched: {self.login_refusal(outcome.name, policy)}")
            return
        changed = False
        pinned = self.pinned(policy, outcome, user)
        if option is not None and kept_var is None:
            option = carried(option, pinned)
            if self.envs.get(REQUEST_VAR) != option:
                self.send(f"ENV {'MOD' if REQUEST_VAR in self.envs else 'ADD'} {REQUEST_VAR} {option}")
                changed = True
            rest = [(n, v) for n, v in hard if n.lower() != RESOURCE]
            # an empty value deletes the parameter (jsv_del_param sends `PARAM name`)
            self.send(f"PARAM l_hard {self.join_list(rest)}".rstrip())
            changed = True
        elif kept_var is not None and carried(kept_var, pinned) != kept_var:
            self.send(f"ENV MOD {REQUEST_VAR} {carried(kept_var, pinned)}")
            changed = True
        elif option is None and REQUEST_VAR in self.envs:
            self.send(f"ENV DEL {REQUEST_VAR}")
            changed = True
        if option is None and chos_var is not None and carried(chos_var, pinned) != chos_var:
            self.send(f"ENV MOD CHOS {carried(chos_var, pinned)}")
            changed = True
        if outcome.warning and not server:
            self.send(f"LOG WARNING envsched: warning: {one_line(outcome.warning)}")
        self.send("RESULT STATE CORRECT" if changed else "RESULT STATE ACCEPT")


    @staticmethod
    def pinned(policy, outcome, user):
        """The request the job carries when the site pins at submit (envsched validate --pin), or
        None: no version known here, or none to pin; the execution side then decides as unpinned."""
        from envsched.cli.envsched import pinned_request
        from envsched.errors import EnvschedError
        try:
            return pinned_request(policy, outcome, user)
        except (EnvschedError, OSError):
            return None


PIN_SELECTOR = "@sha256:"


def carried(request, pinned):
    """`pinned` when it is `request` with a version added (NAME -> NAME@sha256:<hex>), else `request`:
    a decision that is not the job's own request (a fallback to the site default, ...) is never
    carried."""
    if not request or not pinned or "@" in request or not pinned.startswith(request + PIN_SELECTOR):
        return request
    digest = pinned[len(request) + len(PIN_SELECTOR):]
    return pinned if digest and all(c in "0123456789abcdef" for c in digest) else request


def main(argv=None):
    # job environments may hold bytes that are not UTF-8: pass them through, never crash on them
    sys.stdout.reconfigure(errors="surrogateescape")
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts["src"]:
        sys.path.insert(0, opts["src"])
    jsv = Jsv(opts)
    try:
        import envsched.service  # noqa: F401 - import once, before the first job
        import envsched.policy  # noqa: F401
        import envsched.cli.envsched  # noqa: F401 - pinned_request (site.pin_at_submit)
    except Exception as e:  # noqa: BLE001 - every job is then rejected with the reason
        if jsv.log:
            jsv.log.write(f"import failed: {e!r}\n")
    jsv.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
