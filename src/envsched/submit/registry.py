"""The schedulers `chos submit` knows: those whose package in envsched/schedulers/ names a DRMAA
scheduler (`SUBMIT = "module:Class"` in its __init__.py), imported when used."""
from __future__ import annotations

from typing import Callable, Iterator, Mapping

from .. import schedulers
from ..errors import UsageError
from ..names import show
from .scheduler import Scheduler


class _Schedulers(Mapping):
    """name -> Scheduler class, read from envsched.schedulers at each use."""

    def __getitem__(self, name: str) -> Callable[[], Scheduler]:
        cls = schedulers.submit_class(name) if isinstance(name, str) else None
        if cls is None:
            raise KeyError(name)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(schedulers.submit_names())

    def __len__(self) -> int:
        return len(schedulers.submit_names())


SCHEDULERS: Mapping[str, Callable[[], Scheduler]] = _Schedulers()


def get_scheduler(name: str) -> Scheduler:
    factory = SCHEDULERS.get(name)
    if factory is None:
        raise UsageError(f"submit: unknown scheduler {show(name)}; known: {', '.join(sorted(SCHEDULERS))}")
    return factory()
