"""The plan: what entering an environment does, as plain data.

A plan is an ordered list of operations of a few kinds, JSON-serialisable so a C shim or
another process can apply or inspect it (`envsched explain --json`). Building it is pure:
no file system access. The mount operations run in a new mount namespace staged as:

  /oldroot   the host's root (sources with root "host" are read from here)
  /image     the environment's image, when kind = "image" or "user-image" (root "image")
  /rw        with `writable`: a tmpfs holding the upper layer of an overlay of the tree or
             image, mounted at /image (root "image")
  /newroot   a tmpfs that becomes the view's "/" (targets are relative to it)

Operation kinds:
  node_prolog, node_epilog {argv, timeout}   root's commands once per job per node, run by pin.py
                                          before the view is built and after it is released
                                          (nodehooks.py); nothing for the view itself
  namespaces {pid, ipc, uts, hostname}   isolation namespaces made with the view and pinned beside it
                                          (pin.py): joiners enter them; "pid" gets an init of its own
  image_holder {run_dir}                 an image from the store: cloned from the node's one
                                          mount of it (holders.py), not mounted per view
  user_image {name, selector}            a user's own image, found in their store (the plan's
                                          source) as the user when the view is built
  writable  {kind}                        first, when the environment says writable = "tmpfs":
                                          env_dir sources come from a per-view overlay
  env_dir   {root, name}                  a top-level directory of the environment: bound
                                          read-only (read-write under `writable`), or
                                          re-created as a symlink if it is one
  bind      {root, source, target, required, recursive}
  remount   {target, ro, nosuid, nodev, recursive}   flags a bind only gets on a remount
  device    {source, target}              a character device of the host's (gpus, devices), bound at
                                          the same path: read-only, nosuid, not nodev (omitted where
                                          a shared path such as /dev already shows it)
  driver_file {source, target}            a GPU driver library or tool of the host's (devices.py),
                                          bound read-only, nosuid, nodev as a file under
                                          /.envsched/gpu/{lib,bin} on the view's own root
  login_env {dir, name}                   the login shells' snippet (loginenv.py) as dir/name,
                                          in the view only, where the tree has dir (planned
                                          when the view takes etc from the environment)
  pivot_root {}                           the view becomes "/", staging and host detached
  chdir     {candidates}                  first that exists in the view
  env       {action, name, value}         set | prepend | append | unset
  launcher  {argv}                        every task's payload runs as argv + the payload's argv, the
                                          launcher's program resolved in the view
"""
from __future__ import annotations

import json

from .names import LOCAL
from .policy.model import NAMESPACES, Mount
from .records import asdict, dataclass, field     # dataclasses, without their import cost (#13)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence

    from .identity import UserInfo
    from .policy.model import Environment, HostDevices, Policy

PLAN_VERSION = 1


@dataclass(frozen=True)
class Plan:
    environment: str
    kind: str                          # "local" | "tree" | "image" | "user-image"
    source: str                        # path of the tree or image ("" for local; the user's store
                                       # for a user image, whose file is found there as the user)
    ops: List[Dict[str, Any]] = field(default_factory=list)
    digest: str = ""                   # the version's identity (CHOS_DIGEST), "" if it has none

    @property
    def mount_ops(self) -> List[Dict[str, Any]]:
        """The part applied once per view (up to and including pivot_root)."""
        out = []
        for op in self.ops:
            out.append(op)
            if op["op"] == "pivot_root":
                break
        return out if self.kind != LOCAL else []

    @property
    def process_ops(self) -> List[Dict[str, Any]]:
        """The part applied by every process entering the view (chdir, env)."""
        return [op for op in self.ops if op["op"] in ("chdir", "env", "launcher")]

    @property
    def launcher(self) -> List[str]:
        """The argv every task's payload runs through ([] for none)."""
        return next((list(op["argv"]) for op in self.ops if op["op"] == "launcher"), [])

    @property
    def namespaces(self) -> Dict[str, Any]:
        """The isolation namespaces op ({} for none)."""
        return next((op for op in self.mount_ops if op["op"] == "namespaces"), {})

    def to_json(self) -> str:
        return json.dumps({"version": PLAN_VERSION, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        """What to_json wrote, or ValueError: the shape is checked, so that mount_ops, process_ops
        and the process operations a joiner replays work on what comes back."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("malformed plan: nested too deeply") from None
        if not isinstance(data, dict):
            raise ValueError("malformed plan: not a JSON object")
        version = data.pop("version", None)
        if type(version) is not int or version != PLAN_VERSION:
            raise ValueError(f"unsupported plan version {version!r}")
        try:
            plan = cls(**data)
        except TypeError as e:
            raise ValueError(f"malformed plan: {e}") from None
        if not all(isinstance(v, str) for v in (plan.environment, plan.kind, plan.source, plan.digest)):
            raise ValueError("malformed plan: environment, kind, source and digest must be strings")
        if not isinstance(plan.ops, list) or not all(_well_formed(op) for op in plan.ops):
            raise ValueError("malformed plan: ops must be a list of operations")
        return plan


def _well_formed(op: Any) -> bool:
    """An operation with its kind; the process operations (replayed by every joiner) in full."""
    if not isinstance(op, dict) or not isinstance(op.get("op"), str):
        return False
    if op["op"] == "chdir":
        c = op.get("candidates")
        return isinstance(c, list) and all(isinstance(p, str) for p in c)
    if op["op"] == "env":
        action, value = op.get("action"), op.get("value")
        return (action in ("set", "prepend", "append", "unset") and isinstance(op.get("name"), str)
                and (isinstance(value, str) or (action == "unset" and value is None)))
    if op["op"] == "launcher":
        argv = op.get("argv")
        return isinstance(argv, list) and bool(argv) and all(isinstance(a, str) and a for a in argv)
    if op["op"] == "namespaces":
        return all(isinstance(op.get(n), bool) for n in NAMESPACES) and isinstance(op.get("hostname"), str)
    return True


def with_identity(plan: Plan, source: str, digest: str, image_env: Sequence[str], workdir: str) -> Plan:
    """`plan` for the version found only while building (a user's own image, found as the user):
    its file as the source, the image's Env before every other env operation, CHOS_DIGEST after
    CHOS, its WorkingDir tried after the job's working directory (what build_plan would have made
    had it known them)."""
    ops: List[Dict[str, Any]] = []
    for op in plan.ops:
        if op["op"] == "chdir":
            c = list(op["candidates"])
            ops.append({"op": "chdir", "candidates": c[:1] + ([workdir] if workdir else []) + c[1:]})
            ops += [{"op": "env", "action": "set", "name": var, "value": value}
                    for var, _, value in (e.partition("=") for e in image_env)
                    if var not in ("CHOS", "CHOS_DIGEST")]
            continue
        if op["op"] == "env" and op["name"] == "CHOS_DIGEST":
            continue                                  # replaced below, after CHOS
        ops.append(op)
        if op["op"] == "env" and op["name"] == "CHOS":
            ops.append({"op": "env", "action": "set", "name": "CHOS_DIGEST", "value": digest} if digest else
                       {"op": "env", "action": "unset", "name": "CHOS_DIGEST", "value": None})
    return Plan(plan.environment, plan.kind, source, ops, digest)


def _bind(m: Mount, root: str = "host") -> List[Dict[str, Any]]:
    dev = m.target == "/dev" or m.target.startswith("/dev/")
    return [
        {"op": "bind", "root": root, "source": m.source, "target": m.target,
         "required": m.required, "recursive": True},
        {"op": "remount", "target": m.target, "ro": not m.writable, "nosuid": True,
         "nodev": not dev, "recursive": True, "required": m.required},
    ]


def _device_ops(found: HostDevices, shared: Sequence[Mount]) -> List[Dict[str, Any]]:
    """Device nodes not already shown by a shared path (the default /dev), then driver files."""
    def covered(node: str) -> bool:
        return any(m.source == m.target and (node == m.target or node.startswith(m.target + "/"))
                   for m in shared)
    ops = [{"op": "device", "source": n, "target": n} for n in found.nodes if not covered(n)]
    return ops + [{"op": "driver_file", "source": src, "target": tgt} for src, tgt in found.files]


def env_ops(env: Optional[Environment], name: str, digest: str = "",
            image_env: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """The image's own Env first (set), then the policy's operations, then CHOS (and
    CHOS_DIGEST when the version has an identity): the site has the last word."""
    ops: List[Dict[str, Any]] = []
    for entry in image_env:
        var, _, value = entry.partition("=")
        if var and var not in ("CHOS", "CHOS_DIGEST"):
            ops.append({"op": "env", "action": "set", "name": var, "value": value})
    found = env.host_devices if env is not None else None
    if found is not None:               # the driver's files first in the loader's and the shell's search
        from .devices import VIEW_BIN, VIEW_LIB
        if any(t.startswith(VIEW_LIB + "/") for _, t in found.files):
            ops.append({"op": "env", "action": "prepend", "name": "LD_LIBRARY_PATH", "value": VIEW_LIB})
        if any(t.startswith(VIEW_BIN + "/") for _, t in found.files):
            ops.append({"op": "env", "action": "prepend", "name": "PATH", "value": VIEW_BIN})
    if env is not None:
        for action in ("set", "prepend", "append"):
            for var, value in getattr(env.env, action).items():
                ops.append({"op": "env", "action": action, "name": var, "value": value})
        for var in env.env.unset:
            ops.append({"op": "env", "action": "unset", "name": var, "value": None})
    ops.append({"op": "env", "action": "set", "name": "CHOS", "value": name})
    if digest:
        ops.append({"op": "env", "action": "set", "name": "CHOS_DIGEST", "value": digest})
    else:                     # a version without identity: no CHOS_DIGEST the job brought along
        ops.append({"op": "env", "action": "unset", "name": "CHOS_DIGEST", "value": None})
    return ops


def build_plan(policy: Policy, name: str, env: Optional[Environment], user: UserInfo,
               cwd: str, extra_binds: Sequence[Mount] = (), digest: str = "",
               image_env: Sequence[str] = (), workdir: str = "", selector: Optional[str] = None) -> Plan:
    """The full plan for `env` (None = the host OS) for `user` starting in `cwd`.

    `extra_binds` are paths a scheduler shim needs in every view it makes (e.g. Slurm's spool
    directory holding the batch script); they come from the shim's root-owned configuration,
    never from the job. `digest`, `image_env` and `workdir` come from the chosen version
    (chosen.py): its identity, and an image's own Env and WorkingDir (tried after the job's
    working directory and before $HOME). `selector`: the version a user image was asked for."""
    candidates = [cwd] + ([workdir] if workdir and workdir.startswith("/") else []) + [user.home, "/"]
    tail = [{"op": "chdir", "candidates": candidates}] + env_ops(env, name, digest, image_env)
    if env is None:
        return Plan(LOCAL, LOCAL, "", tail)
    site = policy.site
    root = "image" if env.kind in ("image", "user-image") or env.writable else "host"
    ops: List[Dict[str, Any]] = []
    for kind, argv in (("prolog", env.node_prolog), ("epilog", env.node_epilog)):
        if argv:                              # run by pin.py around the job's view (nodehooks.py)
            ops.append({"op": f"node_{kind}", "argv": list(argv), "timeout": site.node_hook_timeout})
    if env.namespaces:                        # made with the view, pinned beside it (pin.py)
        ops.append({"op": "namespaces", **{n: n in env.namespaces for n in NAMESPACES},
                    "hostname": env.hostname})
    if env.kind == "image" and env.image and digest:   # from the store: mounted once per node (holders.py)
        ops.append({"op": "image_holder", "run_dir": site.run_dir})
    if env.kind == "user-image":              # found in the user's store, as the user (userimage.py)
        ops.append({"op": "user_image", "name": env.image, "selector": selector or ""})
    if env.writable:
        ops.append({"op": "writable", "kind": env.writable})
    for d in env.dirs:
        ops.append({"op": "env_dir", "root": root, "name": d})
    for m in site.shared:
        ops += _bind(m)
    for path in site.identity_files:
        ops += _bind(Mount(path, path, writable=False, required=False))
    for m in tuple(env.binds) + tuple(extra_binds):
        ops += _bind(m)
    if site.local_root:
        ops.append({"op": "bind", "root": "host", "source": "/", "target": site.local_root,
                    "required": True, "recursive": True})
        ops.append({"op": "remount", "target": site.local_root, "ro": True, "nosuid": True,
                    "nodev": True, "recursive": True, "required": True})
    if env.host_devices is not None:
        ops += _device_ops(env.host_devices, site.shared)
    if "etc" in env.dirs:       # the tree's /etc/profile: after every bind, so it stacks on what is there
        from .loginenv import PROFILE_DIR, SNIPPET_NAME     # (lazy: reading a plan never needs them)
        ops.append({"op": "login_env", "dir": PROFILE_DIR, "name": SNIPPET_NAME})
    ops.append({"op": "remount", "target": "/", "ro": True, "nosuid": True, "nodev": True,
                "recursive": False, "required": True})
    ops.append({"op": "pivot_root"})
    if env.launcher:
        tail.append({"op": "launcher", "argv": list(env.launcher)})
    return Plan(name, env.kind, env.path, ops + tail, digest)
