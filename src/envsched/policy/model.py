"""The site policy as typed, validated data (built only by policy.schema)."""
from __future__ import annotations

from ..records import dataclass, field     # dataclasses, without their import cost (#13)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

DEFAULT_DIRS: Tuple[str, ...] = ("bin", "etc", "lib", "lib32", "lib64", "libx32", "opt", "sbin", "usr")
DEFAULT_SHARED: Tuple[str, ...] = ("/proc", "/dev", "/sys", "/tmp", "/var/tmp", "/home")
DEFAULT_IDENTITY: Tuple[str, ...] = ("/etc/passwd", "/etc/group", "/etc/hosts",
                                     "/etc/resolv.conf", "/etc/nsswitch.conf")
DEFAULT_POLICY_PATH = "/etc/envsched/policy.toml"
DEFAULT_RUN_DIR = "/run/envsched"
DEFAULT_IMAGE_DIR = "/var/lib/envsched/images"      # the admins' image store (envsched image import)
DEFAULT_USER_STORE = ".local/share/envsched/images"  # a user's own images, relative to their home
DEFAULT_USER_MAX_SIZE = 20 * 1024 ** 3              # bytes: the largest image a user may import
WRITABLE = ("", "tmpfs")                            # "": read-only; "tmpfs": a per-job overlay in memory
GPUS = ("", "nvidia")                               # "": none; "nvidia": the node's NVIDIA GPUs and driver
NAMESPACES = ("pid", "ipc", "uts")                  # isolation namespaces a job may get (no "net": docs/admin.md)
DEFAULT_GPU_LIBRARIES = "/etc/envsched/nvliblist.conf"   # the site's list of driver libraries and tools


@dataclass(frozen=True)
class Mount:
    """A host path made visible in the view (a shared path or an extra bind)."""
    source: str
    target: str
    writable: bool = True
    required: bool = True


@dataclass(frozen=True)
class EnvOps:
    set: Dict[str, str] = field(default_factory=dict)
    prepend: Dict[str, str] = field(default_factory=dict)
    append: Dict[str, str] = field(default_factory=dict)
    unset: Tuple[str, ...] = ()


@dataclass(frozen=True)
class HostDevices:
    """What of the node's device nodes and GPU driver a view gets: found on the node when the
    version is chosen (devices.py), never written in the policy."""
    nodes: Tuple[str, ...] = ()              # character devices of root's, bound at the same path
    files: Tuple[Tuple[str, str], ...] = ()  # (host file, path in the view): driver libraries and tools
    gpu_missing: bool = False                # gpus asked for, and the node has none
    missing: Tuple[str, ...] = ()            # list entries and device patterns the node lacks (logged)
    problems: Tuple[str, ...] = ()           # host files refused (not root's, writable by others): refuse


@dataclass(frozen=True)
class Environment:
    name: str
    path: str                                # the tree or image file; for `image`, set at decision time
    kind: str = "tree"                       # "tree" | "image" | "user-image" (a user's own, never in the policy)
    description: str = ""
    enabled: bool = True
    dirs: Tuple[str, ...] = DEFAULT_DIRS
    binds: Tuple[Mount, ...] = ()
    env: EnvOps = field(default_factory=EnvOps)
    allow_users: Tuple[str, ...] = ()
    allow_groups: Tuple[str, ...] = ()
    allow_accounts: Tuple[str, ...] = ()
    allow_partitions: Tuple[str, ...] = ()
    deny_users: Tuple[str, ...] = ()
    deny_groups: Tuple[str, ...] = ()
    image: str = ""                          # image store reference "NAME" or "NAME@sha256:<64 hex>"
    writable: str = ""                       # "" read-only, "tmpfs": a per-job overlay in memory
    version: str = ""                        # the admins' label for this version ("" if none)
    gpus: str = ""                           # "" | "nvidia"
    gpus_required: bool = True               # no GPU on the node: refuse (true) or build without (false)
    devices: Tuple[str, ...] = ()            # /dev paths or globs bound into the view
    host_devices: Optional[HostDevices] = None   # set at decision time (chosen.py, devices.py)
    node_prolog: Tuple[str, ...] = ()        # root's command (argv) once per job per node before the first task
    node_epilog: Tuple[str, ...] = ()        # and after the last (nodehooks.py)
    namespaces: Tuple[str, ...] = ()         # isolation namespaces of the job, from NAMESPACES (pin.py)
    hostname: str = ""                       # the job's host name in its "uts" namespace ("": the node's)
    launcher: Tuple[str, ...] = ()           # argv every task's payload runs through, in the view


@dataclass(frozen=True)
class UserImages:
    """[user_images]: whether users may run images of their own (`chos image import`), who, where
    they live, how large they may be and what of the host they see."""
    enabled: bool = False
    allow_users: Tuple[str, ...] = ()        # empty with allow_groups empty: every user
    allow_groups: Tuple[str, ...] = ()
    deny_users: Tuple[str, ...] = ()
    deny_groups: Tuple[str, ...] = ()
    allow_partitions: Tuple[str, ...] = ()
    allow_accounts: Tuple[str, ...] = ()
    store: str = DEFAULT_USER_STORE          # relative to the home directory, or absolute with {user}
    max_size: int = DEFAULT_USER_MAX_SIZE
    dirs: Tuple[str, ...] = DEFAULT_DIRS
    binds: Tuple[Mount, ...] = ()
    env: EnvOps = field(default_factory=EnvOps)
    writable: str = ""


@dataclass(frozen=True)
class Defaults:
    partitions: Dict[str, str] = field(default_factory=dict)
    groups: Dict[str, str] = field(default_factory=dict)
    accounts: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Site:
    default: str = "local"
    on_error: str = "closed"                 # "closed" | "default"
    user_file: str = ".chos"
    shared: Tuple[Mount, ...] = tuple(Mount(p, p) for p in DEFAULT_SHARED)
    identity_files: Tuple[str, ...] = DEFAULT_IDENTITY
    local_root: str = "/local"               # host root, read-only, in every view ("" = none)
    allow_local: bool = True                 # may users ask for the host OS ("local")?
    run_dir: str = DEFAULT_RUN_DIR           # pins and staging live here
    log_file: str = ""                       # admin log (syslog is always written)
    user_file_timeout: float = 10.0          # seconds to read ~/.chos (hung NFS)
    image_dir: str = DEFAULT_IMAGE_DIR       # the admins' image store
    pin_at_submit: bool = True               # a job runs the version current when it was submitted
    image_hold: float = 600.0                # seconds a node keeps an image mounted after its last job
    view_hold: float = 600.0                 # seconds a node keeps a shared view after its last job
    decision_cache: bool = True              # shims may apply an earlier decision without the resolver
    node_hook_timeout: float = 300.0         # seconds a node_prolog / node_epilog may take
    gpu_libraries: str = DEFAULT_GPU_LIBRARIES   # the list of driver libraries and tools (devices.py)
    gpu_search_dirs: Tuple[str, ...] = ()    # searched before the loader's cache and the system bin dirs


@dataclass(frozen=True)
class Policy:
    source: str                              # file the policy came from (for messages)
    site: Site
    defaults: Defaults
    environments: Dict[str, Environment]
    user_images: UserImages = field(default_factory=UserImages)

    def names(self) -> List[str]:
        return sorted(self.environments)

    def get(self, name: str) -> Optional[Environment]:
        return self.environments.get(name)
