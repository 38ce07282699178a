"""Univa / Son of Grid Engine: `-l chos=NAME` (checked by envsched's JSV at submission)."""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from ...submit.model import SubmitRequest
from ...submit.scheduler import Scheduler

#: the complex the JSV reads (plugins/uge/envsched_jsv.py) and removes after recording it
RESOURCE = "chos"
#: the JSV's refusals start so (RESULT STATE REJECT envsched: ...); DRMAA may prefix "code 17: "
REFUSAL_RE = re.compile(r"(?:^|:\s)envsched: (.*)\Z", re.S)


class UgeScheduler(Scheduler):
    name = "uge"
    # Measured (SGE 8.1.9): libdrmaa applies the cell's sge_request again at every runJob of a process,
    # new sessions included, so the k-th job runs the client JSV k times: each further job of a process
    # takes ~160 ms longer to submit than the one before (measured: 0.24 s for the 1st, 2.06 s for the
    # 12th), so n jobs cost ~0.08 n^2 s. Otherwise harmless: from the second run on the JSV finds no
    # -l chos but the ENVSCHED_REQUEST its first run recorded, and with --accept-request-var (the
    # rendered site's) keeps it, checked like -l chos; so every job keeps its request.

    def library_defaults(self) -> Dict[str, str]:
        return {"SGE_ROOT": "/var/lib/gridengine", "SGE_CELL": "default",
                "DRMAA_LIBRARY_PATH": "/usr/lib/gridengine-drmaa/lib/libdrmaa.so.1.0"}

    def preload(self) -> Tuple[str, ...]:
        # Debian's libdrmaa links libjemalloc, whose initial-exec TLS does not fit into the static
        # TLS block once the process runs: "cannot allocate memory in static TLS block"
        return ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",)

    def native_specification(self, request: SubmitRequest) -> List[str]:
        words = ["-l", f"{RESOURCE}={request.env_name}", "-N", request.job_name]
        if request.queue:
            words += ["-q", request.queue]
        return words

    def refusal(self, message: str) -> Optional[str]:
        # without the JSV's "envsched: " prefix: the command adds it back when it prints the line
        m = REFUSAL_RE.search(message.strip())
        if not m or m.group(1).startswith("internal error"):    # the JSV failed: not the policy's word
            return None
        return " ".join(m.group(1).split())

    def inspect_hint(self, job_id: str) -> str:
        return f"if it was started, qacct -j {job_id} shows why"    # a job deleted while pending has no record
