"""The fixed set of methods a scheduler fills for portable (DRMAA) submission, psij-python style.

A scheduler package (envsched/schedulers/<name>/submit.py) subclasses Scheduler and names it in its
__init__.py (SUBMIT); submit/registry.py finds them there. Everything
else (session, job template, waiting, reporting) is generic (submit/core.py).
"""
from __future__ import annotations

import abc
from typing import Dict, List, Optional, Tuple

from .model import SubmitRequest


class Scheduler(abc.ABC):
    #: the name users give (`chos submit --scheduler NAME`)
    name: str = ""

    @abc.abstractmethod
    def library_defaults(self) -> Dict[str, str]:
        """Environment variables the DRMAA library reads, with the values used when unset
        (DRMAA_LIBRARY_PATH is read by the Python package at import time)."""

    @abc.abstractmethod
    def preload(self) -> Tuple[str, ...]:
        """Shared libraries that must be in LD_PRELOAD when the process starts, or loading the
        DRMAA library fails; () if none."""

    @abc.abstractmethod
    def native_specification(self, request: SubmitRequest) -> List[str]:
        """The scheduler's own options for the request, as separate words (no quoting needed:
        make_request allows no blanks in any value used here)."""

    @abc.abstractmethod
    def refusal(self, message: str) -> Optional[str]:
        """The site policy's one-line refusal (without the leading `envsched: `) if a DRMAA submission
        error `message` is one, else None."""

    def inspect_hint(self, job_id: str) -> str:
        """Where the user can read why a job ended without running."""
        return ""
