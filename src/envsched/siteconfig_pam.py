"""`envsched site-config render --scheduler pam`: the /etc/pam.d line of pam_envsched.so
(plugins/pam; its arguments are parsed by conf.c) for any service: sshd, su-l, login, ...

The line goes last in the service's session stack: the module moves the calling process into
the view, so session modules after it would run inside the view (docs/admin.md, section 15).
failure= follows the policy's site.on_error ("default" -> failure=default, else closed).
"""
from __future__ import annotations

import re

from .policy.model import Policy
from .siteconfig import RenderOptions, SiteConfigError, check_path, render_template

DEFAULT_PAM_MODULE = "pam_envsched.so"     # found in the system's PAM module directory


def render_pam(policy: Policy, options: RenderOptions) -> str:
    module = check_path("--plugin", options.plugin) if options.plugin else DEFAULT_PAM_MODULE
    service = options.service
    if service is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", service):
        raise SiteConfigError(f"--pam: not a PAM service name: {service!r}")
    return render_template(
        "pam/session.conf.j2", module=module, service=service,
        policy=check_path("--policy", options.policy_path),
        resolver=check_path("--resolver", options.resolver),
        run_dir=check_path(f"{policy.source}: site.run_dir", policy.site.run_dir),
        failure="default" if policy.site.on_error == "default" else "closed",
        debug=options.debug)
