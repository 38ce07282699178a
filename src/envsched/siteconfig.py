"""Compatibility names for `envsched site-config render`, which lives in envsched/schedulers/ (one
package per scheduler, see envsched/schedulers/__init__.py). Tests and callers that import
`envsched.siteconfig` keep working: render, section, RenderOptions, SiteConfigError, schedulers,
host_warnings.
"""
from __future__ import annotations

from typing import List, Sequence

from . import schedulers as _schedulers
from .policy.model import Policy
from .schedulers.base import NONE, RenderOptions, SiteConfigError
from .schedulers.rendering import (CHECKOUT_TEMPLATES, PACKAGE_TEMPLATES, check_bind, check_path, default_resolver,
                                plugstack_safe, render_template, section)

__all__ = ["render", "section", "schedulers", "host_warnings", "RenderOptions", "SiteConfigError", "NONE",
           "CHECKOUT_TEMPLATES", "PACKAGE_TEMPLATES", "check_bind", "check_path", "default_resolver",
           "plugstack_safe", "render_template"]


def schedulers() -> Sequence[str]:
    return _schedulers.names()


def render(scheduler: str, policy: Policy, options: RenderOptions) -> str:
    return _schedulers.render(scheduler, policy, options)


def host_warnings(scheduler: str, options: RenderOptions, policy: Policy = None) -> List[str]:
    adapter = _schedulers.get(scheduler)
    return adapter.host_warnings(policy, options, adapter.read_site(options))
