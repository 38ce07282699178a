"""`chos submit`: a batch job in an environment through DRMAA (envsched.submit)."""
from __future__ import annotations

import argparse
from typing import List

from ..exitcodes import ExitCode
from ..submit import get_scheduler, make_request, submit_request
from ..submit.preload import ensure_preloaded
from .common import say


def add_parser(sub: "argparse._SubParsersAction") -> None:
    s = sub.add_parser(
        "submit", help="submit a batch job that runs in an environment (DRMAA)",
        description="Submit SCRIPT (an executable file) with ARGS as a batch job running in environment "
                    "NAME. Waits for it by default and exits with its exit status (128+N if killed by "
                    "signal N, 75 if it never ran); the job id goes to stdout.")
    s.add_argument("--env", required=True, metavar="NAME", help="the environment to run the job in")
    s.add_argument("--scheduler", default="uge", metavar="NAME", help="batch system (default uge)")
    s.add_argument("--queue", "-q", metavar="Q", help="queue / partition")
    s.add_argument("--name", "-N", metavar="N", help="job name (default: the script's name)")
    s.add_argument("--output", "-o", metavar="PATH",
                   help="file for the job's stdout and stderr (default: the scheduler's)")
    s.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait for the job and exit with its status (default), or just submit it")
    s.add_argument("script")
    s.add_argument("args", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_submit)


def cmd_submit(args: argparse.Namespace) -> int:
    scheduler = get_scheduler(args.scheduler)                     # usage errors before anything else
    job_args: List[str] = list(args.args)       # verbatim (argparse took a `--` before the script)
    request = make_request(args.script, job_args, args.env, queue=args.queue, job_name=args.name,
                           output=args.output)
    if getattr(args, "may_reexec", False):
        ensure_preloaded(scheduler.preload())                    # may re-execute this command once
    submitted: List[str] = []

    def on_submitted(job_id: str) -> None:
        submitted.append(job_id)
        print(job_id, flush=True)

    try:
        result = submit_request(request, scheduler, wait=args.wait, on_submitted=on_submitted)
    except KeyboardInterrupt:
        if submitted:
            say(f"interrupted: job {submitted[0]} keeps running")
        return 130
    if not result.finished:
        return int(ExitCode.OK)
    line = result.describe()
    if result.aborted and scheduler.inspect_hint(result.job_id):
        line += f"; {scheduler.inspect_hint(result.job_id)}"
    say(line)
    return result.exit_code
