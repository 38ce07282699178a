"""Run one hook file the way pbs_python does, against the stand-in `pbs` module (pbs.py here).

    python3 -I driver.py < spec.json > result.json

spec: {"hook": PATH, "type": "queuejob"|"execjob_launch"|"execjob_end", "requestor": USER,
       "job": {id, euser, Job_Owner, queue, Resource_List, Variable_List}, "config": PATH,
       "progname": ..., "argv": [...], "env": {...}}

OpenPBS runs a hook as a Python script with the `pbs` module importable (hooks are imported
with `qmgr -c "import hook NAME application/x-python default FILE"`, qmgr(8B), and run by
pbs_python, doc/man1/pbs_python.1B); the hook ends by returning or by SystemExit from
accept()/reject(); any other exception rejects (pbs_module.7B, EXCEPTIONS). One process per
hook run, like the mom's pbs_python (the server runs queuejob hooks inside pbs_server instead).
"""
from __future__ import annotations

import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pbs  # noqa: E402  - the stand-in

TYPES = {"queuejob": pbs.QUEUEJOB, "execjob_launch": pbs.EXECJOB_LAUNCH, "execjob_end": pbs.EXECJOB_END,
         "execjob_epilogue": pbs.EXECJOB_EPILOGUE}


def main() -> int:
    spec = json.load(sys.stdin)
    pbs._set_event(TYPES[spec["type"]], spec.get("requestor", ""), pbs.job(**spec["job"]),
                   config=spec.get("config"), progname=spec.get("progname"), argv=spec.get("argv"),
                   env=spec.get("env"))
    with open(spec["hook"]) as f:
        code = compile(f.read(), spec["hook"], "exec")
    error = None
    try:
        exec(code, {"__name__": "__main__"})        # noqa: S102 - what pbs_python does with a hook
    except SystemExit:
        pass
    except BaseException:                          # noqa: BLE001 - PBS rejects on any exception
        error = traceback.format_exc()
    result = pbs._result()
    if error is not None:
        result.update(rejected=True, reject_msg=None, exception=error)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
