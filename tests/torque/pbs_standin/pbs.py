"""A stand-in for OpenPBS's `pbs` hook module: the part of its event API the envsched hooks use.

OpenPBS is not installable here, so the hooks in plugins/torque/openpbs/ are tested against this
module. Every behaviour below follows the OpenPBS source or manual pages; the source of each is
named next to it. What a hook may do and what PBS does with it:

  * `pbs.event()` returns the event the hook responds to (doc/man1/pbs_module.7B: "pbs.event
    Represents a PBS event"); `e.type` is one of the event constants below.
  * `e.accept()` / `e.reject(msg)` end the hook by raising SystemExit (src/modules/python/pbs/v1/
    _svr_types.py, class _event: accept() "raise SystemExit(str(ecode))" with ecode 0; reject(emsg,
    ecode=255) records emsg, then "raise SystemExit(str(ecode))"). pbs_module.7B: "SystemExit
    Raised when accepting or rejecting an action"; reject's docstring: the message "will be shown
    in the appropriate PBS daemon log, and the STDERR of the PBS command that caused this event".
  * A hook that ends without accept/reject accepts; "If a hook encounters an unhandled exception:
    PBS rejects the corresponding action, and an error message is printed to stderr"
    (pbs_module.7B, EXCEPTIONS).
  * Of an event's parameters only progname, argv and env can be assigned (_svr_types.py,
    _event.__setattr__: `if name == "progname" or name == "argv" or name == "env"`, any other
    raises BadAttributeValueError "event attribute '%s' is readonly"); they exist in
    execjob_launch events (src/include/mom_hook_func.h: mom_hook_input_t, "progname - used by
    execjob_launch hook as the pbs.event().progname value", likewise argv and env). Reading a
    parameter the event does not have raises EventIncompatibleError (_event.__getattr__).
  * `e.job.Resource_List["chos"]` reads a custom resource (pbs_module.7B, ATTRIBUTES AND
    RESOURCES: `pbs.event().job.Resource_List["< resource name>"]`); an unset resource reads as
    None here (the real module returns None for an unset resource of a known name).
  * `pbs.hook_config_filename`: "Contains path to hook's configuration file" (pbs_module.7B),
    the file imported with `qmgr -c "import hook NAME application/x-config default FILE"`.
  * `pbs.logmsg(level, msg)`, `pbs.LOG_DEBUG`, `pbs.LOG_WARNING`, `pbs.LOG_ERROR` (pbs_module.7B).

The test driver (driver.py) sets the event up with `_set_event(...)` before it runs a hook, and
reads `_result()` afterwards; those two are not part of the real API.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

# event types (src/include/hook.h: HOOK_EVENT_QUEUEJOB 0x01, EXECJOB_END 0x200, EXECJOB_LAUNCH 0x800,
# EXECJOB_EPILOGUE 0x100)
QUEUEJOB = 0x01
EXECJOB_EPILOGUE = 0x100
EXECJOB_END = 0x200
EXECJOB_LAUNCH = 0x800

LOG_DEBUG = 4
LOG_WARNING = 4
LOG_ERROR = 4
EVENT_DEBUG = 4

hook_config_filename: Optional[str] = None


class EventIncompatibleError(Exception):
    """Raised when referencing a non-existent attribute in pbs.event() (pbs_module.7B)."""


class BadAttributeValueError(Exception):
    """Raised when setting the attribute value of a pbs.* object to an invalid value."""


class pbs_env(dict):
    """pbs.env[]: "Dictionary of environment variables" (pbs_module.7B)."""


class pbs_resource(dict):
    """Resource_List: a dictionary keyed by resource name; an unset resource reads as None."""

    def __getitem__(self, key: str) -> Any:
        return dict.get(self, key)


class job:
    """pbs.job: the attributes the hooks read (pbs_job_attributes.7B: id, euser, Job_Owner,
    queue, Account_Name, Resource_List, Variable_List)."""

    def __init__(self, id: str, euser: Optional[str] = None, Job_Owner: Optional[str] = None,
                 queue: Optional[str] = None, Resource_List: Optional[Dict[str, str]] = None,
                 Variable_List: Optional[Dict[str, str]] = None, Account_Name: Optional[str] = None) -> None:
        self.id = id
        self.Account_Name = Account_Name        # qsub -A; None when the job names no account
        self.euser = euser
        self.Job_Owner = Job_Owner
        self.queue = queue
        self.Resource_List = pbs_resource(Resource_List or {})
        self.Variable_List = dict(Variable_List or {})


class _event:
    """pbs.event(); parameters live in _param as in _svr_types.py."""

    def __init__(self, type: int, requestor: str, job: job, param: Dict[str, Any]) -> None:
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "requestor", requestor)
        object.__setattr__(self, "requestor_host", "localhost")
        object.__setattr__(self, "hook_name", "")
        object.__setattr__(self, "job", job)
        object.__setattr__(self, "_param", dict(param))

    def accept(self, ecode: int = 0) -> None:
        _state["accepted"] = True
        raise SystemExit(str(ecode))

    def reject(self, emsg: str = "", ecode: int = 255) -> None:
        _state["rejected"] = True
        _state["reject_msg"] = emsg
        raise SystemExit(str(ecode))

    def __getattr__(self, key: str) -> Any:
        param = object.__getattribute__(self, "_param")
        if key in param:
            return param[key]
        raise EventIncompatibleError(key)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._param:
            if name in ("progname", "argv", "env"):
                self._param[name] = value
                return
            raise BadAttributeValueError(f"event attribute '{name}' is readonly")
        raise BadAttributeValueError(f"event attribute '{name}' is readonly")


_current: Optional[_event] = None
_state: Dict[str, Any] = {}
_log: List[str] = []


def event() -> _event:
    if _current is None:
        raise EventIncompatibleError("no event")
    return _current


def logmsg(level: int, msg: str) -> None:
    _log.append(str(msg))


def logjobmsg(jobid: str, msg: str) -> None:
    _log.append(f"{jobid}: {msg}")


# -- for the driver only ------------------------------------------------------------------
def _set_event(type: int, requestor: str, job_: job, config: Optional[str] = None,
               progname: Optional[str] = None, argv: Optional[List[str]] = None,
               env: Optional[Dict[str, str]] = None) -> None:
    global _current, hook_config_filename
    param: Dict[str, Any] = {}
    if type == EXECJOB_LAUNCH:
        param = {"progname": progname, "argv": list(argv or []), "env": pbs_env(env or {})}
    _current = _event(type, requestor, job_, param)
    hook_config_filename = config
    _state.clear()
    _log.clear()


def _result() -> Dict[str, Any]:
    assert _current is not None
    out: Dict[str, Any] = {"rejected": bool(_state.get("rejected")),
                           "reject_msg": _state.get("reject_msg"), "log": list(_log)}
    if _current.type == EXECJOB_LAUNCH:
        out.update(progname=_current._param["progname"], argv=list(_current._param["argv"]),
                   env=dict(_current._param["env"]))
    return out
