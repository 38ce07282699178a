"""One adapter per scheduler, psij-python style: a small generic core and one package per scheduler.

    schedulers/
      base.py        the fixed interface (SchedulerAdapter), RenderOptions, SiteFacts, targets, findings
      rendering.py   value checks, templates, sections (scheduler-neutral)
      install.py     `site-config install`: diff, backup, atomic root-owned writes
      doctor.py      `envsched doctor`: the checks every node needs, then the adapter's
      trust.py       the C shims' trust rules in Python (es_run.c, es_trust.c)
      hosttools.py   wrappers that run host binaries from inside a view (loader, libraries)
      <name>/        one scheduler: __init__.py names its adapter (ADAPTER = "module:Class") and,
                     where `chos submit` supports it, its DRMAA scheduler (SUBMIT = "module:Class")

A scheduler is known by its folder: adding LSF or Flux means adding `schedulers/lsf/` with an
`__init__.py` and an adapter implementing base.SchedulerAdapter (templates may live in its own
`templates/` folder). Listing the names reads the directory only; an adapter is imported when used.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

if TYPE_CHECKING:                        # imported when used: every `envsched` run lists the names
    from ..policy.model import Policy
    from .base import RenderOptions, SchedulerAdapter

__all__ = ["names", "get", "adapters", "render", "section", "submit_class", "submit_names", "SchedulerAdapter",
           "RenderOptions", "SiteFacts", "SiteConfigError", "InstallTarget", "ManualStep", "Finding", "NONE"]

_adapters: Dict[str, "SchedulerAdapter"] = {}
_FROM_BASE = ("SchedulerAdapter", "RenderOptions", "SiteFacts", "SiteConfigError", "InstallTarget", "ManualStep",
              "Finding", "NONE")


def __getattr__(name: str) -> Any:
    if name in _FROM_BASE:
        from . import base
        return getattr(base, name)
    if name == "section":
        from .rendering import section
        return section
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def names() -> Sequence[str]:
    """Every scheduler, from the folders of this package (nothing is imported)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg and not m.name.startswith("_"))


def _load(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def get(name: str) -> "SchedulerAdapter":
    """The adapter of scheduler `name` (one instance per process)."""
    from ..errors import UsageError
    from .base import SiteConfigError
    if name not in _adapters:
        if name not in names():
            raise SiteConfigError(f"no renderer for scheduler {name!r} (have: {', '.join(names())})")
        package = importlib.import_module(f"{__name__}.{name}")
        adapter = _load(package.ADAPTER)()
        if adapter.name != name:
            raise UsageError(f"internal error: schedulers/{name} declares an adapter named {adapter.name!r}")
        _adapters[name] = adapter
    return _adapters[name]


def adapters() -> List["SchedulerAdapter"]:
    return [get(n) for n in names()]


def submit_class(name: str) -> Optional[type]:
    """The DRMAA scheduler class (envsched.submit.Scheduler) of `name`, None where there is none."""
    if name not in names():
        return None
    spec = getattr(importlib.import_module(f"{__name__}.{name}"), "SUBMIT", None)
    return _load(spec) if spec else None


def submit_names() -> List[str]:
    return [n for n in names() if getattr(importlib.import_module(f"{__name__}.{n}"), "SUBMIT", None)]


def render(name: str, policy: "Policy", options: "RenderOptions") -> str:
    """What `site-config render --scheduler NAME` prints (the scheduler asked as read_site does)."""
    adapter = get(name)
    return adapter.render(policy, options, adapter.read_site(options))
