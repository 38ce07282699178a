"""`envsched metrics`: Prometheus metrics from the admin log and the pins (envsched.metrics).

envsched.metrics is imported by the command alone: every resolver run (a job's prepare, srun's
validate) builds this parser, and must not pay for the module."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from ..errors import PolicyError
from ..exitcodes import ExitCode
from .common import policy_from, say
from .jobargs import require_root


def add_parser(sub: "argparse._SubParsersAction") -> None:
    s = sub.add_parser(
        "metrics", help="root: Prometheus metrics from the admin log and the pins (node_exporter textfile)",
        description="Count what is new in the admin log (site.log_file) since the last run into running "
                    "counters kept in a state file under run_dir, count the views pinned now, and "
                    "print them in the Prometheus text format. Run it from cron or a systemd timer.")
    s.add_argument("--output", metavar="FILE",
                   help="write to FILE atomically (a temporary file beside it, renamed; mode 0644), e.g. "
                   "/var/lib/prometheus/node-exporter/envsched.prom (default: stdout)")
    s.set_defaults(func=cmd_metrics)


def _emit(text: str, output: Optional[str]) -> None:
    from .. import metrics
    if output:
        metrics.write_atomic(output, text, 0o644)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def cmd_metrics(args: argparse.Namespace) -> int:
    require_root("envsched metrics")
    from .. import metrics
    try:
        policy = policy_from(args)
        run = metrics.collect(policy.site.log_file, policy.site.run_dir, policy.names(), output=args.output)
    except PolicyError as e:
        # an invalid policy or an untrusted run_dir: the dashboard sees envsched_policy_valid 0,
        # cron the message and the exit code
        _emit(metrics.exposition(None, None, False, policy_valid=False), args.output)
        say(e.message)
        return ExitCode.POLICY_INVALID
    for warning in run.warnings:
        say("warning: " + warning)
    if not args.output:
        _emit(run.text, None)
    return ExitCode.OK
