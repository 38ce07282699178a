"""Grid Engine runs script jobs as login shells (`login_shells` holds sh: Debian's default, and the
queue's shell is /bin/sh in posix_compliant mode), so in a real tree the job's shell reads the
tree's /etc/profile, which resets PATH. The policy's `env.prepend PATH` must survive it: the view's
/etc/profile.d/zz-envsched.sh (src/envsched/loginenv.py) puts it back after the profile.

The mini trees of uge_site have no /etc/profile; these tests add an environment on the real
debootstrap tree (the `real_tree` fixture) to the site's policy for their duration."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.uge

PROFILE_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"   # bookworm's, for a user
JOB = '#!/bin/sh\necho "P=$PATH"; echo "F=$SITE_FLAG"; echo "Q=$(command -v qstat || echo none)"\n'


@pytest.fixture
def real_env(uge_site, real_tree):
    """`deb12real` in the site's policy (the JSV and the prolog read the policy again when it changes)."""
    before = uge_site.policy.read_text()
    uge_site.policy.write_text(before + f"""
[environments.deb12real]
path = "{real_tree}"

[environments.deb12real.env]
prepend = {{ PATH = "/opt/site/bin" }}
set = {{ SITE_FLAG = "on" }}
""")
    try:
        yield "deb12real"
    finally:
        uge_site.policy.write_text(before)


def _run(uge_site, uge_user, env_name):
    c = uge_site.cluster
    job = c.qsub(JOB, "-l", f"chos={env_name}", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, out, uge_site.admin_log.read_text()[-2000:])
    return dict(line.split("=", 1) for line in out.splitlines() if line[:2] in ("P=", "F=", "Q="))


def test_login_shell_job_keeps_policy_prepend(uge_site, uge_user, real_env):
    got = _run(uge_site, uge_user, real_env)
    path = got["P"].split(":")
    tools = str(uge_site.cluster.dir / "uge-tools" / "bin")
    # /etc/profile ran (its PATH ends the list), and the site's prepend comes right before it;
    # the starter's host tools may come first (see the next test)
    assert path[-5:] == PROFILE_PATH.split(":"), got
    assert path[:-5] in (["/opt/site/bin"], [tools, "/opt/site/bin"]), got
    assert got["F"] == "on"


def test_login_shell_job_keeps_host_tools_first(uge_site, uge_user, real_env):
    """The host's Grid Engine clients (`render --host-tools`), first in PATH in every view, are still
    there after /etc/profile (issue 16: `qstat: not found` in login-shell jobs)."""
    got = _run(uge_site, uge_user, real_env)
    tools = str(uge_site.cluster.dir / "uge-tools" / "bin")
    assert got["P"] == f"{tools}:/opt/site/bin:{PROFILE_PATH}", got
    assert got["Q"] == f"{tools}/qstat", got
