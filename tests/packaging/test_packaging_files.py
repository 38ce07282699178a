"""The packaging files agree with each other and with the plugins' Makefiles (fast, no build).

The set-user-ID programs are those the plugins' `make install` installs with mode 4755 (what
docs/admin.md sections 12 to 14 require), in the Debian rules, in the RPM spec and in the lintian
overrides that explain them; the RPM subpackages mirror the Debian packages; and no maintainer
script starts or enables anything.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Set

REPO = Path(__file__).resolve().parents[2]
DEBIAN = REPO / "packaging" / "debian"
SPEC = REPO / "packaging" / "rpm" / "envsched.spec"
PACKAGES = {"envsched", "envsched-slurm", "envsched-gridengine", "envsched-torque", "envsched-openpbs",
            "libpam-envsched"}
SETUID = {"uge-starter", "torque-starter", "pbs-join"}
# the other overrides, each explained in its file: the Slurm plugin's static launcher stub
OTHER_OVERRIDES = {"shared-library-lacks-prerequisites [usr/lib/envsched/envsched-launch]"}


def makefile_setuid() -> Set[str]:
    out = set()
    for mk in (REPO / "plugins").rglob("Makefile"):
        for line in mk.read_text().splitlines():
            m = re.search(r"\binstall\b.*-m 4755 (\S+) (\S+)", line)
            if m:
                src, dest = m.groups()
                out.add(Path(src).name if dest.endswith("/") else Path(dest).name)
    return out


def test_debian_packages():
    control = (DEBIAN / "control").read_text()
    assert set(re.findall(r"^Package: (\S+)$", control, re.M)) == PACKAGES


def test_rpm_subpackages_mirror_the_debian_ones():
    spec = SPEC.read_text()
    subs = {f"envsched-{s}" for s in re.findall(r"^%package (\S+)$", spec, re.M)}
    assert subs | {"envsched"} == {p.replace("libpam-envsched", "envsched-pam") for p in PACKAGES}
    assert set(re.findall(r"^%files(?: (\S+))?$", spec, re.M)) == {""} | {s[len("envsched-"):] for s in subs}


def test_setuid_programs_everywhere_the_same():
    assert makefile_setuid() == SETUID
    rules = (DEBIAN / "rules").read_text()
    chmod = re.search(r"chmod 4755 ((?:[^\n]*\\\n)*[^\n]*)", rules).group(1)
    assert {Path(p).name for p in chmod.replace("\\\n", " ").split()} == SETUID
    spec = SPEC.read_text()
    assert {Path(p).name for p in re.findall(r"^%attr\(4755,root,root\) (\S+)$", spec, re.M)} == SETUID
    overridden = set()
    for f in DEBIAN.glob("*.lintian-overrides"):
        overridden |= set(re.findall(r"^elevated-privileges 4755 root/root \[usr/libexec/envsched/(\S+)\]$",
                                     f.read_text(), re.M))
        assert all(line.startswith("#") or line.startswith("elevated-privileges") or line in OTHER_OVERRIDES
                   or not line for line in f.read_text().splitlines()), f"{f.name}: an override without its reason"
    assert overridden == SETUID


def test_no_maintainer_script_starts_or_enables_anything():
    scripts = [f for f in DEBIAN.iterdir() if re.search(r"\.(pre|post)(inst|rm)$", f.name)]
    assert scripts, "the purge scripts are expected"
    for f in scripts:
        text = f.read_text()
        for word in ("systemctl", "deb-systemd", "invoke-rc.d", "update-rc.d", "service ", "pam-auth-update"):
            assert word not in text, f"{f.name}: {word}"
        assert "#DEBHELPER#" in text
    assert not re.search(r"^%(pre|post|preun|postun)\b", SPEC.read_text(), re.M)


def test_every_template_is_package_data():
    """`site-config render` needs its templates in every installed copy (a wheel, the packages), not
    only in an editable install: each .j2 under src/envsched must match setup.cfg's package_data,
    split as setuptools splits it (by newlines, else by commas: never by spaces)."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    value = cfg["options.package_data"]["envsched"].strip()
    patterns = [p.strip() for p in (value.splitlines() if "\n" in value else value.split(",")) if p.strip()]
    package = REPO / "src" / "envsched"
    matched = {f for pattern in patterns for f in package.glob(pattern)}
    templates = set(package.rglob("*.j2"))
    assert templates and templates <= matched, sorted(str(t.relative_to(package)) for t in templates - matched)
