"""The site policy as typed, validated data (built only by policy.schema)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

DEFAULT_DIRS: Tuple[str, ...] = ("bin", "etc", "lib", "lib32", "lib64", "libx32", "opt", "sbin", "usr")
DEFAULT_SHARED: Tuple[str, ...] = ("/proc", "/dev", "/sys", "/tmp", "/var/tmp", "/home")
DEFAULT_IDENTITY: Tuple[str, ...] = ("/etc/passwd", "/etc/group", "/etc/hosts",
                                     "/etc/resolv.conf", "/etc/nsswitch.conf")
DEFAULT_POLICY_PATH = "/etc/envsched/policy.toml"
DEFAULT_RUN_DIR = "/run/envsched"


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
class Environment:
    name: str
    path: str
    kind: str = "tree"                       # "tree" | "image"
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


@dataclass(frozen=True)
class Policy:
    source: str                              # file the policy came from (for messages)
    site: Site
    defaults: Defaults
    environments: Dict[str, Environment]

    def names(self) -> List[str]:
        return sorted(self.environments)

    def get(self, name: str) -> Optional[Environment]:
        return self.environments.get(name)
