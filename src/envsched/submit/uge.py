"""Compatibility: Grid Engine's DRMAA scheduler lives in envsched/schedulers/uge/submit.py."""
from ..schedulers.uge.submit import REFUSAL_RE, RESOURCE, UgeScheduler

__all__ = ["UgeScheduler", "RESOURCE", "REFUSAL_RE"]
