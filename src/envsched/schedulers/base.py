"""The fixed interface every scheduler adapter implements (psij-python's executor model).

A scheduler is one package, `envsched/schedulers/<name>/`, whose `__init__.py` names its adapter
class (`ADAPTER = "module:Class"`) and, where portable submission exists, its DRMAA scheduler
(`SUBMIT = "module:Class"`). The core (this package's other modules) never names a scheduler:

    read_site(options)                    what the scheduler itself says (its running cluster or its
                                          configuration files); flags in `options` win; never fails
                                          because no cluster answers: defaults and a warning instead
    render(policy, options, site)         the configuration text (`site-config render`)
    host_warnings(policy, options, site)  what looks wrong on this host (stderr of render/install)
    install_targets(policy, options, site, text)
                                          the files `site-config install` writes, and the sections it
                                          leaves to the admin (cluster settings changed through the
                                          scheduler's own commands)
    doctor(policy, options, site)         this node's problems, one Finding each (`envsched doctor`)
    present()                             whether this host looks like part of such a cluster
                                          (`envsched doctor` without --scheduler)
    host_tools(dest, policy, args)        wrappers of the scheduler's clients for views, if any

Scheduler commands are run through `self.run(argv)` (run_command below), so unit tests replace
one attribute to fake a cluster.
"""
from __future__ import annotations

import abc
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import UsageError
from ..policy.model import Policy

# Where the plugins are: the Makefiles install below PREFIX=/usr/local; the packages (make deb, the
# RPM spec) put the programs in /usr/libexec/envsched and the shared objects in the system's
# library directory. Which one applies follows where this envsched itself was installed.
CHECKOUT_PLUGIN_DIR = "/usr/local/libexec/envsched"
CHECKOUT_LIB_DIR = "/usr/local/lib/envsched"


def packaged() -> bool:
    """Whether this envsched is the packages' (its modules under /usr/lib*/python3*)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return here.startswith(("/usr/lib/python3", "/usr/lib64/python3"))


def default_plugin_dir() -> str:
    """The starters' and hooks' directory: the packages' when this envsched is packaged."""
    return "/usr/libexec/envsched" if packaged() else CHECKOUT_PLUGIN_DIR


def default_lib_dir() -> str:
    """The SPANK plugin's directory: /usr/lib/envsched (Debian), /usr/lib64/envsched (EL's
    %{_libdir}, where the RPM puts it) when packaged."""
    if not packaged():
        return CHECKOUT_LIB_DIR
    return "/usr/lib64/envsched" if os.path.exists("/usr/lib64/envsched/envsched_spank.so") else "/usr/lib/envsched"

NONE = "none"                     # --spool-dir/--munge-socket-dir/--tmpdir: no bind
COMMAND_TIMEOUT = 30              # seconds for one scheduler command (qconf, scontrol)


class SiteConfigError(UsageError):
    """A value that cannot be written into the scheduler's configuration (exit 64)."""


@dataclass(frozen=True)
class RenderOptions:
    """The command line of `site-config render|install` and `doctor`, scheduler-neutral; None = what
    the scheduler says (read_site), else the adapter's default.

    `policy_path` is the path the scheduler's hooks will pass to the resolver; `resolver` the
    envsched command they run. `binds` are extra host paths for every view, as the resolver's
    `prepare --bind` takes them (SRC[:DST[:ro|rw]]). The rest is per scheduler (unused ones
    are ignored by the others).
    """
    policy_path: str
    resolver: str
    binds: Tuple[str, ...] = ()
    debug: bool = False
    plugin: Optional[str] = None              # slurm: the SPANK plugin (.so); pam: the module
    spool_dir: Optional[str] = None           # slurm: SlurmdSpoolDir; uge: execd_spool_dir; torque/openpbs: PBS_HOME
    munge_socket_dir: Optional[str] = None    # slurm (and any munge-authenticated scheduler)
    host_tools: Optional[str] = None          # slurm, uge: wrappers of the host's clients
    plugin_dir: Optional[str] = None          # uge, torque, openpbs: where the shims are installed
    src: Optional[str] = None                 # directory holding the envsched package, if not installed
    unprivileged: bool = False                # uge: user-namespace starter, no set-user-ID program
    tmpdirs: Tuple[str, ...] = ()             # uge: the queues' tmpdir (--tmpdir), bound read-write; () = ask qconf
    queues: Tuple[str, ...] = ()              # uge: whose tmpdir to ask qconf for (--queue); () = every queue
    service: Optional[str] = None             # pam: the PAM service the line is for (--pam SERVICE)
    client_jsv: bool = True                   # uge: the client-side JSV in sge_request (--no-client-jsv: none)


@dataclass
class SiteFacts:
    """What read_site found: key -> value, key -> where it came from ("--spool-dir",
    "scontrol show config", "/etc/slurm/slurm.conf", "default", ...), warnings for the admin,
    and anything else an adapter keeps for its render/install/doctor (`extra`)."""
    values: Dict[str, str] = field(default_factory=dict)
    sources: Dict[str, str] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    def set(self, key: str, value: str, source: str) -> None:
        self.values[key] = value
        self.sources[key] = source

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        return self.values.get(key, default)

    def source(self, key: str) -> str:
        return self.sources.get(key, "default")


@dataclass(frozen=True)
class InstallTarget:
    """One file `site-config install` writes.

    kind "file": the whole file is `text`. kind "block": `text` goes into the file between two
    marker lines (the block is replaced where it is; created at the end of the file, or where the
    first `legacy` line was); lines outside the block for which `legacy(line)` is true (an older,
    hand-written envsched line) are removed. `mode` is the file's mode; files are root's.
    """
    path: str
    text: str
    mode: int
    what: str                                  # the section name or a few words, for messages
    kind: str = "file"                         # "file" | "block"
    legacy: Optional[Any] = None               # Callable[[str], bool] for kind "block"
    at_end: bool = False                       # block: always last in the file (PAM's session line)


@dataclass(frozen=True)
class ManualStep:
    """A section install does not apply (cluster-wide settings made with the scheduler's own
    commands): shown with the command that applies it."""
    section: str
    how: str


@dataclass(frozen=True)
class Finding:
    """One problem `envsched doctor` found, and how to fix it."""
    check: str                                 # short name: "plugin", "spool", "resolver", ...
    problem: str
    fix: str
    note: bool = False                         # worth knowing, not a problem (exit status unchanged)

    def line(self, scope: str) -> str:
        return f"{'note: ' if self.note else ''}{scope}: {self.check}: {self.problem} -- fix: {self.fix}"


def run_command(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT,
                env: Optional[Dict[str, str]] = None) -> Tuple[Optional[int], str]:
    """(exit status, stdout) of a scheduler command found on PATH; status None (and the reason)
    when there is no such command or it does not answer in time; on failure the text is the last
    line of its stderr (or stdout): where Slurm's and Grid Engine's clients say what went wrong."""
    exe = shutil.which(argv[0])
    if exe is None:
        return None, f"no {argv[0]} on PATH"
    try:
        p = subprocess.run([exe, *argv[1:]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, errors="replace", timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, f"{' '.join(argv)} did not answer within {timeout:g} s"
    except OSError as e:
        return None, f"{exe}: {e.strerror}"
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr.strip() or p.stdout.strip()).splitlines() if ln.strip()]
        return p.returncode, " ".join((lines[-1] if lines else f"exit status {p.returncode}").split())[:300]
    return 0, p.stdout


def read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


class SchedulerAdapter(abc.ABC):
    #: the name admins give (`--scheduler NAME`): the package's name
    name: str = ""
    #: for messages and --help
    title: str = ""
    #: the rendered document's sections (`--section NAME`); () for a one-piece document
    sections: Tuple[str, ...] = ()

    def run(self, argv: Sequence[str]) -> Tuple[Optional[int], str]:
        """Run a scheduler command (replaced by unit tests)."""
        return run_command(argv)

    # -------------------------------------------------------------------- configuration
    @abc.abstractmethod
    def read_site(self, options: RenderOptions) -> SiteFacts:
        """What the scheduler says about this site; flags in `options` win."""

    @abc.abstractmethod
    def render(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> str:
        """The scheduler's configuration for this policy (checked values only: SiteConfigError)."""

    def host_warnings(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> List[str]:
        """What looks wrong on this host (rendering may happen elsewhere: warnings, not errors)."""
        found = list(site.warnings)
        if not (os.path.isfile(options.resolver) and os.access(options.resolver, os.X_OK)):
            found.append(f"resolver {options.resolver} is not an executable file on this host")
        return found

    @abc.abstractmethod
    def install_targets(self, policy: Policy, options: RenderOptions, site: SiteFacts,
                        text: str) -> Tuple[List[InstallTarget], List[ManualStep]]:
        """The files install writes from the rendered `text`, and the sections it leaves to the admin."""

    # -------------------------------------------------------------------- this node
    def present(self) -> bool:
        """Whether this host looks like part of a cluster of this scheduler."""
        return False

    def doctor(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> List[Finding]:
        """This node's scheduler-specific problems (the common ones are checked by doctor.py)."""
        return []

    def installed(self, options: RenderOptions, site: SiteFacts) -> Dict[str, str]:
        """What the installed configuration names ({"policy", "resolver", "run_dir"} where found), so
        that doctor checks the paths the scheduler really uses."""
        return {}

    def host_tools(self, dest: str, policy: Policy, args: Any) -> Tuple[List[str], str, str]:
        """Write wrappers of the scheduler's clients under `dest` (`args`: the command line of
        `site-config host-tools`): (clients, where to configure it, when to run again)."""
        raise UsageError(f"site-config host-tools: no host tools for {self.title or self.name}")
