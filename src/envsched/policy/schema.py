"""Validate the raw TOML data of a site policy and build the typed Policy.

Two passes, as reframe does: first the shape (unknown keys and wrong types are errors),
then the meaning (names, absolute paths, references to environments). Every problem is one
`PolicyError` line: `file[:line]: key.path: problem: value`.
"""
from __future__ import annotations

from ..errors import PolicyError
from ..names import LOCAL, NAME_RULE, is_digest, is_valid_name, show
from .model import (
    DEFAULT_DIRS,
    DEFAULT_GPU_LIBRARIES,
    GPUS,
    NAMESPACES,
    DEFAULT_IDENTITY,
    DEFAULT_IMAGE_DIR,
    DEFAULT_RUN_DIR,
    DEFAULT_USER_MAX_SIZE,
    DEFAULT_USER_STORE,
    WRITABLE,
    DEFAULT_SHARED,
    Defaults,
    Environment,
    EnvOps,
    Mount,
    Policy,
    Site,
    UserImages,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

KeyPath = "Tuple[object, ...]"      # (a type, for annotations)
INFINITY = float("inf")

SITE_KEYS = {"default", "on_error", "user_file", "shared", "identity_files", "local_root",
             "allow_local", "run_dir", "log_file", "user_file_timeout", "image_dir", "pin_at_submit", "image_hold",
             "view_hold", "decision_cache",
             "gpu_libraries", "gpu_search_dirs", "node_hook_timeout"}
DEFAULTS_KEYS = {"groups", "partitions", "queues", "accounts"}
ENV_KEYS = {"path", "kind", "description", "enabled", "dirs", "binds", "env", "allow_users",
            "allow_groups", "allow_accounts", "allow_partitions", "deny_users", "deny_groups",
            "image", "writable", "version", "gpus", "gpus_required", "devices", "node_prolog", "node_epilog",
            "namespaces", "hostname", "launcher"}
USER_IMAGES_KEYS = {"enabled", "allow_users", "allow_groups", "deny_users", "deny_groups", "allow_partitions",
                    "allow_accounts", "store", "max_size", "dirs", "binds", "env", "writable"}
ENV_OPS_KEYS = {"set", "prepend", "append", "unset"}
MOUNT_KEYS = {"path", "source", "target", "mode", "required"}
TOP_KEYS = {"site", "defaults", "environments", "user_images"}
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
KINDS = ("tree", "image")
ON_ERROR = ("closed", "default")
MODES = ("ro", "rw")
MAX_TIMEOUT = 86400.0       # seconds: site.user_file_timeout
VAR_RE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


class _Checker:
    """Carries the file name and raw text so every error can name file, line and key."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.text = text

    def fail(self, path: KeyPath, problem: str, value: Any = None) -> PolicyError:
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path)
        key = key.replace(".[", "[")
        from .locate import line_of             # (lazy: only a policy with a problem needs it)
        line = line_of(self.text, path) if self.text else None
        where = f"{self.source}:{line}" if line else self.source
        tail = f": {show(value, 60)}" if value is not None else ""
        return PolicyError(f"{where}: {key}: {problem}{tail}")

    # -- shape ---------------------------------------------------------------------------
    def table(self, data: Any, path: KeyPath, allowed: set) -> Mapping[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(path, "must be a table", data)
        for key in data:
            if key not in allowed:
                raise self.fail(path + (key,), "unknown key (allowed: %s)" % ", ".join(sorted(allowed)))
        return data

    def string(self, data: Any, path: KeyPath) -> str:
        if not isinstance(data, str):
            raise self.fail(path, "must be a string", data)
        if "\0" in data or "\n" in data:
            raise self.fail(path, "must not contain NUL or newline", data)
        return data

    def boolean(self, data: Any, path: KeyPath) -> bool:
        if not isinstance(data, bool):
            raise self.fail(path, "must be true or false", data)
        return data

    def number(self, data: Any, path: KeyPath, maximum: float) -> float:
        if (isinstance(data, bool) or not isinstance(data, (int, float))
                or (isinstance(data, float) and not -INFINITY < data < INFINITY) or data <= 0):
            raise self.fail(path, "must be a positive number", data)
        if data > maximum:                      # (a timeout past select()'s range would raise there)
            raise self.fail(path, f"must be at most {maximum:g}", data)
        return float(data)

    def strings(self, data: Any, path: KeyPath, item: Optional[Callable[[Any, KeyPath], str]] = None
                ) -> Tuple[str, ...]:
        if not isinstance(data, list):
            raise self.fail(path, "must be a list of strings", data)
        check = item or self.string
        out = tuple(check(v, path + (i,)) for i, v in enumerate(data))
        seen = set()
        for i, v in enumerate(out):
            if v in seen:
                raise self.fail(path + (i,), "duplicate entry", v)
            seen.add(v)
        return out

    def mapping(self, data: Any, path: KeyPath, value: Callable[[Any, KeyPath], str]) -> Dict[str, str]:
        if not isinstance(data, dict):
            raise self.fail(path, "must be a table of strings", data)
        return {k: value(v, path + (k,)) for k, v in data.items()}

    # -- meaning -------------------------------------------------------------------------
    def abspath(self, data: Any, path: KeyPath) -> str:
        value = self.string(data, path)
        if not value.startswith("/"):
            raise self.fail(path, "not an absolute path", value)
        parts = value.split("/")
        if ".." in parts or "." in parts[1:]:
            raise self.fail(path, "must not contain '.' or '..' components", value)
        return "/" + "/".join(p for p in parts if p)      # collapses '//' (normpath keeps a leading one)

    def env_name(self, data: Any, path: KeyPath, allow_local: bool = True) -> str:
        value = self.string(data, path)
        if not is_valid_name(value):
            raise self.fail(path, f"not a valid environment name ({NAME_RULE})", value)
        if value == LOCAL and not allow_local:
            raise self.fail(path, "'local' is reserved for the host OS", value)
        return value

    def dirname(self, data: Any, path: KeyPath) -> str:
        value = self.string(data, path)
        if not value or "/" in value or value in (".", "..") or not is_valid_name(value):
            raise self.fail(path, "must be a top-level directory name like 'usr'", value)
        return value

    def varname(self, data: Any, path: KeyPath) -> str:
        value = self.string(data, path)
        if not value or value[0].isdigit() or not set(value) <= VAR_RE_CHARS:
            raise self.fail(path, "not a valid environment variable name", value)
        return value

    def device(self, data: Any, path: KeyPath) -> str:
        value = self.abspath(data, path)
        if not value.startswith("/dev/"):
            raise self.fail(path, "must be a device path under /dev (globs allowed: /dev/infiniband/uverbs*)", value)
        return value

    def one_of(self, data: Any, path: KeyPath, choices: Sequence[str]) -> str:
        value = self.string(data, path)
        if value not in choices:
            raise self.fail(path, "must be one of " + ", ".join(choices), value)
        return value


def _mount(c: _Checker, data: Any, path: KeyPath, source_key: str, default_mode: str) -> Mount:
    """A shared path ("/home" or {path=..., mode=..., required=...}) or an extra bind."""
    if isinstance(data, str):
        p = c.abspath(data, path)
        if p == "/":
            raise c.fail(path, "cannot replace the view's root", data)
        return Mount(p, p, writable=(default_mode == "rw"))
    table = c.table(data, path, MOUNT_KEYS - ({"path"} if source_key == "source" else {"source"}))
    if source_key not in table:
        raise c.fail(path + (source_key,), "missing")
    source = c.abspath(table[source_key], path + (source_key,))
    target = c.abspath(table.get("target", source), path + ("target",))
    if target == "/":
        raise c.fail(path + ("target",), "cannot replace the view's root", target)
    mode = c.one_of(table.get("mode", default_mode), path + ("mode",), MODES)
    required = c.boolean(table.get("required", True), path + ("required",))
    return Mount(source, target, writable=(mode == "rw"), required=required)


def _env_ops(c: _Checker, data: Any, path: KeyPath) -> EnvOps:
    t = c.table(data, path, ENV_OPS_KEYS)
    ops = {}
    for key in ("set", "prepend", "append"):
        raw = t.get(key, {})
        if not isinstance(raw, dict):
            raise c.fail(path + (key,), "must be a table of NAME = \"value\"", raw)
        ops[key] = {c.varname(k, path + (key, k)): c.string(v, path + (key, k)) for k, v in raw.items()}
    unset = c.strings(t.get("unset", []), path + ("unset",), c.varname)
    ours = ("CHOS", "CHOS_DIGEST")
    for var in [k for d in ops.values() for k in d if k in ours] + [k for k in unset if k in ours]:
        raise c.fail(path, f"{var} is set by envsched itself and cannot be changed here")
    return EnvOps(set=ops["set"], prepend=ops["prepend"], append=ops["append"], unset=unset)


def _environment(c: _Checker, name: str, data: Any) -> Environment:
    path: KeyPath = ("environments", name)
    if not is_valid_name(name):
        raise c.fail(path, f"not a valid environment name ({NAME_RULE})", name)
    if name == LOCAL:
        raise c.fail(path, "'local' is reserved for the host OS and cannot be defined")
    t = c.table(data, path, ENV_KEYS)
    image = _image_ref(c, t["image"], path + ("image",)) if "image" in t else ""
    if image and "path" in t:
        raise c.fail(path + ("image",), "give either path (a tree or image file) or image (from the image store), "
                     "not both")
    if not image and "path" not in t:
        raise c.fail(path + ("path",), "missing (the environment's tree or image file; or image = \"NAME\" "
                     "from the image store)")
    root = c.abspath(t["path"], path + ("path",)) if not image else ""
    if root == "/":
        raise c.fail(path + ("path",), "the host root is the 'local' environment", root)
    kind = c.one_of(t.get("kind", "image" if image else "tree"), path + ("kind",), KINDS)
    if image and kind != "image":
        raise c.fail(path + ("kind",), "an environment from the image store is an image", kind)
    version = c.string(t.get("version", ""), path + ("version",))
    if version and not is_valid_name(version):
        raise c.fail(path + ("version",), f"not a valid version label ({NAME_RULE})", version)
    dirs = c.strings(t.get("dirs", list(DEFAULT_DIRS)), path + ("dirs",), c.dirname)
    binds = tuple(_mount(c, b, path + ("binds", i), "source", "ro")
                  for i, b in enumerate(_list(c, t.get("binds", []), path + ("binds",))))
    names = lambda key: c.strings(t.get(key, []), path + (key,))  # noqa: E731
    namespaces = _namespaces(c, t.get("namespaces", []), path + ("namespaces",))
    return Environment(
        name=name, path=root, kind=kind, image=image, version=version,
        writable=c.one_of(t.get("writable", ""), path + ("writable",), WRITABLE),
        description=c.string(t.get("description", ""), path + ("description",)),
        enabled=c.boolean(t.get("enabled", True), path + ("enabled",)),
        dirs=dirs, binds=binds,
        env=_env_ops(c, t.get("env", {}), path + ("env",)),
        allow_users=names("allow_users"), allow_groups=names("allow_groups"),
        allow_accounts=names("allow_accounts"), allow_partitions=names("allow_partitions"),
        deny_users=names("deny_users"), deny_groups=names("deny_groups"),
        gpus=c.one_of(t.get("gpus", ""), path + ("gpus",), GPUS),
        gpus_required=c.boolean(t.get("gpus_required", True), path + ("gpus_required",)),
        devices=c.strings(t.get("devices", []), path + ("devices",), c.device),
        node_prolog=_hook(c, t.get("node_prolog", []), path + ("node_prolog",)),
        node_epilog=_hook(c, t.get("node_epilog", []), path + ("node_epilog",)),
        namespaces=namespaces,
        hostname=_hostname(c, t, namespaces, path),
        launcher=_launcher(c, t.get("launcher", []), path + ("launcher",)),
    )


def _namespaces(c: _Checker, data: Any, path: KeyPath) -> Tuple[str, ...]:
    """Isolation namespaces a job of the environment gets besides its view: a subset of NAMESPACES.
    No network namespace: a batch job's MPI, its file systems and the scheduler's own traffic
    need the node's network (docs/admin.md, "Isolation namespaces")."""
    names = c.strings(data, path)
    for i, name in enumerate(names):
        if name == "net":
            raise c.fail(path + (i,), "no network namespace for batch jobs: MPI, parallel file systems and the "
                         "scheduler's own traffic need the node's network", name)
        if name not in NAMESPACES:
            raise c.fail(path + (i,), f"must be one of {', '.join(NAMESPACES)}", name)
        if name in names[:i]:
            raise c.fail(path + (i,), "given twice", name)
    return tuple(n for n in NAMESPACES if n in names)


def _hostname(c: _Checker, t: Mapping[str, Any], namespaces: Tuple[str, ...], path: KeyPath) -> str:
    """The job's host name in its own UTS namespace ("": the node's own name)."""
    if "hostname" not in t:
        return ""
    value = c.string(t["hostname"], path + ("hostname",))
    if "uts" not in namespaces:
        raise c.fail(path + ("hostname",), "needs \"uts\" in namespaces (the host name is the node's otherwise)", value)
    labels = value.split(".")
    if not value or len(value) > 64 or not all(
            label and len(label) <= 63 and not label.startswith("-") and not label.endswith("-")
            and all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in label) for label in labels):
        raise c.fail(path + ("hostname",), "not a host name (letters, digits, '-' and '.', at most 64)", value)
    return value


def _launcher(c: _Checker, data: Any, path: KeyPath) -> Tuple[str, ...]:
    """A launcher every task's payload runs through: [] (none) or an argv whose program is an
    absolute path in the view (e.g. McKernel's mcexec); the payload's argv follows it."""
    if not isinstance(data, list):
        raise c.fail(path, "must be a list: the program (an absolute path in the environment) and its arguments",
                     data)
    argv = tuple(c.string(v, path + (i,)) for i, v in enumerate(data))
    if argv:
        c.abspath(argv[0], path + (0,))
    for i, arg in enumerate(argv):
        if not arg or "\n" in arg or "\0" in arg:
            raise c.fail(path + (i,), "an argument may be neither empty nor hold a newline", arg)
    return argv


def _hook(c: _Checker, data: Any, path: KeyPath) -> Tuple[str, ...]:
    """A node hook: [] (none) or an argv whose program is an absolute path (run as root)."""
    if not isinstance(data, list):
        raise c.fail(path, "must be a list: the program (an absolute path) and its arguments", data)
    argv = tuple(c.string(v, path + (i,)) for i, v in enumerate(data))
    if argv:
        c.abspath(argv[0], path + (0,))
    return argv


def _image_ref(c: _Checker, data: Any, path: KeyPath) -> str:
    """An image store reference: NAME (its current version) or NAME@sha256:<64 hex> (that one)."""
    value = c.string(data, path)
    name, at, digest = value.partition("@")
    if not is_valid_name(name) or (at and not is_digest(digest, full=True)):
        raise c.fail(path, f"must be NAME or NAME@sha256:<64 hex digits> (NAME: {NAME_RULE})", value)
    return value


def _size(c: _Checker, data: Any, path: KeyPath) -> int:
    """Bytes: a positive integer, or a string like "20G" (K, M, G, T: powers of 1024)."""
    if isinstance(data, int) and not isinstance(data, bool) and data > 0:
        return data
    if isinstance(data, str):
        text = data.strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in SIZE_UNITS else ""
        digits = text[:-1] if unit else text
        if digits.isdigit() and int(digits) > 0:
            return int(digits) * SIZE_UNITS[unit]
    raise c.fail(path, "must be a size in bytes or like \"20G\" (K, M, G, T)", data)


def _user_images(c: _Checker, data: Any) -> UserImages:
    p: KeyPath = ("user_images",)
    t = c.table(data, p, USER_IMAGES_KEYS)
    names = lambda key: c.strings(t.get(key, []), p + (key,))  # noqa: E731
    store = c.string(t.get("store", DEFAULT_USER_STORE), p + ("store",))
    if store.startswith("/"):
        if "{user}" not in store:
            raise c.fail(p + ("store",), "an absolute store must contain {user} (one store per user)", store)
        c.abspath(store.replace("{user}", "u"), p + ("store",))
    elif not store or ".." in store.split("/") or store.startswith("~"):
        raise c.fail(p + ("store",), "must be a path relative to the home directory, or absolute with {user}",
                     store)
    return UserImages(
        enabled=c.boolean(t.get("enabled", False), p + ("enabled",)),
        allow_users=names("allow_users"), allow_groups=names("allow_groups"),
        deny_users=names("deny_users"), deny_groups=names("deny_groups"),
        allow_partitions=names("allow_partitions"), allow_accounts=names("allow_accounts"),
        store=store, max_size=_size(c, t.get("max_size", DEFAULT_USER_MAX_SIZE), p + ("max_size",)),
        dirs=c.strings(t.get("dirs", list(DEFAULT_DIRS)), p + ("dirs",), c.dirname),
        binds=tuple(_mount(c, b, p + ("binds", i), "source", "ro")
                    for i, b in enumerate(_list(c, t.get("binds", []), p + ("binds",)))),
        env=_env_ops(c, t.get("env", {}), p + ("env",)),
        writable=c.one_of(t.get("writable", ""), p + ("writable",), WRITABLE),
    )


def _list(c: _Checker, data: Any, path: KeyPath) -> List[Any]:
    if not isinstance(data, list):
        raise c.fail(path, "must be a list", data)
    return data


def _site(c: _Checker, data: Any) -> Site:
    t = c.table(data, ("site",), SITE_KEYS)
    p: KeyPath = ("site",)
    user_file = c.string(t.get("user_file", ".chos"), p + ("user_file",))
    if not user_file or "/" in user_file or user_file in (".", ".."):
        raise c.fail(p + ("user_file",), "must be a file name in the home directory", user_file)
    shared = tuple(_mount(c, s, p + ("shared", i), "path", "rw")
                   for i, s in enumerate(_list(c, t.get("shared", list(DEFAULT_SHARED)), p + ("shared",))))
    identity = c.strings(t.get("identity_files", list(DEFAULT_IDENTITY)), p + ("identity_files",), c.abspath)
    local_root = c.string(t.get("local_root", "/local"), p + ("local_root",))
    if local_root:
        local_root = c.abspath(local_root, p + ("local_root",))
    return Site(
        default=c.env_name(t.get("default", LOCAL), p + ("default",)),
        on_error=c.one_of(t.get("on_error", "closed"), p + ("on_error",), ON_ERROR),
        user_file=user_file, shared=shared, identity_files=identity, local_root=local_root,
        allow_local=c.boolean(t.get("allow_local", True), p + ("allow_local",)),
        run_dir=c.abspath(t.get("run_dir", DEFAULT_RUN_DIR), p + ("run_dir",)),
        log_file=(c.abspath(t["log_file"], p + ("log_file",))
                  if c.string(t.get("log_file", ""), p + ("log_file",)) else ""),
        user_file_timeout=c.number(t.get("user_file_timeout", 10), p + ("user_file_timeout",), MAX_TIMEOUT),
        image_dir=c.abspath(t.get("image_dir", DEFAULT_IMAGE_DIR), p + ("image_dir",)),
        pin_at_submit=c.boolean(t.get("pin_at_submit", True), p + ("pin_at_submit",)),
        gpu_libraries=c.abspath(t.get("gpu_libraries", DEFAULT_GPU_LIBRARIES), p + ("gpu_libraries",)),
        gpu_search_dirs=c.strings(t.get("gpu_search_dirs", []), p + ("gpu_search_dirs",), c.abspath),
        node_hook_timeout=c.number(t.get("node_hook_timeout", 300), p + ("node_hook_timeout",), MAX_TIMEOUT),
        image_hold=(0.0 if t.get("image_hold", 600) == 0
                    else c.number(t.get("image_hold", 600), p + ("image_hold",), MAX_TIMEOUT)),
        view_hold=(0.0 if t.get("view_hold", 600) == 0
                   else c.number(t.get("view_hold", 600), p + ("view_hold",), MAX_TIMEOUT)),
        decision_cache=c.boolean(t.get("decision_cache", True), p + ("decision_cache",)),
    )


def _defaults(c: _Checker, data: Any, known: Callable[[str, KeyPath], None]) -> Defaults:
    t = c.table(data, ("defaults",), DEFAULTS_KEYS)

    def m(key: str) -> Dict[str, str]:
        table = c.mapping(t.get(key, {}), ("defaults", key), c.env_name)
        for k, v in table.items():
            known(v, ("defaults", key, k))
        return table

    partitions = dict(m("partitions"))
    for queue, env in m("queues").items():      # a queue is Grid Engine's / Torque's partition
        if queue in partitions:
            raise c.fail(("defaults", "queues", queue), "also listed under defaults.partitions")
        partitions[queue] = env
    return Defaults(partitions=partitions, groups=m("groups"), accounts=m("accounts"))


def build_policy(data: Mapping[str, Any], source: str, text: str = "") -> Policy:
    """Shape and meaning checks on parsed TOML; returns the Policy or raises PolicyError."""
    c = _Checker(source, text)
    c.table(dict(data), (), TOP_KEYS) if data else None
    site = _site(c, data.get("site", {}))
    envs_raw = data.get("environments", {})
    if not isinstance(envs_raw, dict):
        raise c.fail(("environments",), "must be a table of environments", envs_raw)
    environments = {name: _environment(c, name, v) for name, v in envs_raw.items()}
    known = _reference_checker(c, site, environments)
    known(site.default, ("site", "default"))
    defaults = _defaults(c, data.get("defaults", {}), known)
    _check_site_mounts(c, site)
    user_images = _user_images(c, data.get("user_images", {}))
    return Policy(source=source, site=site, defaults=defaults, environments=environments,
                  user_images=user_images)


def _reference_checker(c: _Checker, site: Site, environments: Mapping[str, Environment]
                       ) -> Callable[[str, KeyPath], None]:
    def known(name: str, path: KeyPath) -> None:
        if name == LOCAL:
            if not site.allow_local:
                raise c.fail(path, "'local' is used but site.allow_local is false", name)
            return
        if name not in environments:
            raise c.fail(path, "no such environment (defined: %s)" % (", ".join(sorted(environments)) or "none"), name)
    return known


def _check_site_mounts(c: _Checker, site: Site) -> None:
    targets = [m.target for m in site.shared]
    seen = set()
    for i, t in enumerate(targets):
        if t in seen:
            raise c.fail(("site", "shared", i), "duplicate target", t)
        seen.add(t)
    if site.local_root and site.local_root in targets:
        raise c.fail(("site", "local_root"), "also listed in site.shared", site.local_root)
