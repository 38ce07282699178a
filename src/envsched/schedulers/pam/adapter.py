"""PAM's adapter: the /etc/pam.d line of pam_envsched.so (plugins/pam; its arguments are parsed by
conf.c) for any service: sshd, su-l, login, ...

The line goes last in the service's session stack: the module moves the calling process into
the view, so session modules after it would run inside the view (docs/admin.md, section 15).
failure= follows the policy's site.on_error ("default" -> failure=default, else closed).
`site-config install --pam SERVICE` writes it as a block at the end of /etc/pam.d/SERVICE,
replacing any other pam_envsched.so line there.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Tuple

from ...policy.model import Policy
from ..base import Finding, InstallTarget, ManualStep, RenderOptions, SchedulerAdapter, SiteConfigError, SiteFacts, \
    read_text
from ..doctor import resolver_findings
from ..rendering import check_path, render_template

DEFAULT_PAM_MODULE = "pam_envsched.so"     # found in the system's PAM module directory
MODULE_DIRS = ("/lib/x86_64-linux-gnu/security", "/lib/aarch64-linux-gnu/security", "/usr/lib64/security",
               "/lib64/security", "/lib/security", "/usr/lib/security")
SERVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _is_module_line(line: str) -> bool:
    words = line.split("#", 1)[0].split()
    return len(words) >= 3 and os.path.basename(words[2]) == DEFAULT_PAM_MODULE


def service_lines(text: str) -> List[Tuple[int, List[str]]]:
    """(line number, words) of the session lines of a pam.d file."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if words and words[0].lstrip("-") == "session":
            out.append((n, words))
    return out


class PamAdapter(SchedulerAdapter):
    name = "pam"
    title = "PAM"
    pam_dir = "/etc/pam.d"                 # replaced by unit tests

    def read_site(self, options: RenderOptions) -> SiteFacts:
        return SiteFacts()

    def render(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> str:
        module = check_path("--plugin", options.plugin) if options.plugin else DEFAULT_PAM_MODULE
        service = options.service
        if service is not None and not SERVICE_RE.fullmatch(service):
            raise SiteConfigError(f"--pam: not a PAM service name: {service!r}")
        return render_template(
            "pam/session.conf.j2", module=module, service=service,
            policy=check_path("--policy", options.policy_path),
            resolver=check_path("--resolver", options.resolver),
            run_dir=check_path(f"{policy.source}: site.run_dir", policy.site.run_dir),
            failure="default" if policy.site.on_error == "default" else "closed",
            log_file=check_path(f"{policy.source}: site.log_file", policy.site.log_file)
            if policy.site.log_file else None,
            cache=policy.site.decision_cache, debug=options.debug)

    def install_targets(self, policy: Policy, options: RenderOptions, site: SiteFacts,
                        text: str) -> Tuple[List[InstallTarget], List[ManualStep]]:
        if not options.service:
            raise SiteConfigError("install --scheduler pam needs the service: --pam SERVICE (sshd, su-l, ...)")
        path = os.path.join(self.pam_dir, options.service)
        if not os.path.exists(path):
            raise SiteConfigError(f"{path} does not exist: no PAM service {options.service!r} here")
        return [InstallTarget(path, text, 0o644, "the last session line", kind="block", legacy=_is_module_line,
                              at_end=True)], []

    def module_path(self, module: str) -> Optional[str]:
        if module.startswith("/"):
            return module if os.path.exists(module) else None
        return next((os.path.join(d, module) for d in MODULE_DIRS if os.path.exists(os.path.join(d, module))), None)

    def _services(self) -> List[Tuple[str, List[Tuple[int, List[str]]]]]:
        out = []
        try:
            names = sorted(os.listdir(self.pam_dir))
        except OSError:
            return out
        for name in names:
            text = read_text(os.path.join(self.pam_dir, name))
            if text and DEFAULT_PAM_MODULE in text:
                out.append((name, service_lines(text)))
        return out

    def present(self) -> bool:
        return any(any(os.path.basename(w[2]) == DEFAULT_PAM_MODULE for _n, w in lines if len(w) >= 3)
                   for _name, lines in self._services())

    def installed(self, options: RenderOptions, site: SiteFacts) -> Dict[str, str]:
        for _name, lines in self._services():
            for _n, words in lines:
                if len(words) >= 3 and os.path.basename(words[2]) == DEFAULT_PAM_MODULE:
                    return {k: v for k, _, v in (w.partition("=") for w in words[3:]) if k in ("policy", "resolver",
                                                                                              "run_dir")}
        return {}

    def doctor(self, policy: Policy, options: RenderOptions, site: SiteFacts) -> List[Finding]:
        found: List[Finding] = []
        services = [(n, ls) for n, ls in self._services() if not options.service or n == options.service]
        if options.service and not services:
            found.append(Finding("pam", f"{self.pam_dir}/{options.service} has no pam_envsched.so line",
                                 f"envsched site-config install --pam {options.service}"))
        for name, lines in services:
            path = os.path.join(self.pam_dir, name)
            ours = [(n, w) for n, w in lines if len(w) >= 3 and os.path.basename(w[2]) == DEFAULT_PAM_MODULE]
            if not ours:
                continue
            n, words = ours[-1]
            if lines[-1][0] != n:
                found.append(Finding("pam", f"{path}:{n}: pam_envsched.so is not the last session line (line "
                                     f"{lines[-1][0]} comes after it and would run inside the view)",
                                     f"envsched site-config install --pam {name}"))
            if self.module_path(words[2]) is None:
                found.append(Finding("module", f"{path}:{n}: the module {words[2]} is not installed",
                                     "make -C plugins/pam install"))
            args = {k: v for k, _, v in (w.partition("=") for w in words[3:])}
            if args.get("resolver"):
                found += resolver_findings(args["resolver"], f"{path}:{n}")
            if args.get("run_dir", policy.site.run_dir) != policy.site.run_dir:
                found.append(Finding("run_dir", f"{path}:{n}: run_dir={args['run_dir']} but the policy's "
                                     f"site.run_dir is {policy.site.run_dir}",
                                     f"envsched site-config install --pam {name}"))
        return found
