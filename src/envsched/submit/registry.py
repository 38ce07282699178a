"""The schedulers `chos submit` knows (slurm and torque to come: one module each)."""
from __future__ import annotations

from typing import Callable, Dict

from ..errors import UsageError
from ..names import show
from .scheduler import Scheduler
from .uge import UgeScheduler

SCHEDULERS: Dict[str, Callable[[], Scheduler]] = {
    UgeScheduler.name: UgeScheduler,
}


def get_scheduler(name: str) -> Scheduler:
    factory = SCHEDULERS.get(name)
    if factory is None:
        raise UsageError(f"submit: unknown scheduler {show(name)}; known: {', '.join(sorted(SCHEDULERS))}")
    return factory()
