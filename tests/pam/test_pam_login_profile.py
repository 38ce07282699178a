"""An ssh login (a login shell: sshd starts the user's shell as "-sh" when no command is given) into a
real Debian tree through pam_envsched: the policy's `env.prepend PATH` survives the tree's
/etc/profile, which resets PATH. The PAM module puts the environment's operations into the PAM
environment, sshd copies it over its own PATH, and the login shell's /etc/profile would then
replace PATH; the view's /etc/profile.d/zz-envsched.sh (src/envsched/loginenv.py) puts it back."""
from __future__ import annotations

import os
import subprocess

import pytest

from pamlib import PAM_USER as TEST_USER, module_args, wait_no_pins

pytestmark = pytest.mark.pam

PROFILE_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"   # bookworm's, for a user


@pytest.fixture
def policy(site_dir, real_tree):
    return site_dir.policy(name="pam-login-profile.toml", body=f"""
[environments.deb12real]
path = "{real_tree}"

[environments.deb12real.env]
prepend = {{ PATH = "/opt/site/bin" }}
set = {{ SITE_FLAG = "on" }}
""")


def test_ssh_login_shell_keeps_policy_prepend(sshd, site_dir, policy, pam_user, pam_home):
    sshd.service.write(module_args(policy, site_dir.run_dir))
    f = pam_home / ".chos"
    f.write_text("deb12real\n")
    os.chown(f, pam_user.pw_uid, pam_user.pw_gid)
    # no command: sshd runs the user's shell (/bin/sh) as a login shell reading stdin
    r = subprocess.run(
        ["ssh", "-T", "-i", str(sshd.root / "client_key"), "-p", str(sshd.port), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={os.devnull}", "-o", "LogLevel=ERROR",
         "-F", os.devnull, f"{TEST_USER}@127.0.0.1"],
        input='echo "ARGV0=$0"; grep PRETTY_NAME /etc/os-release; echo "P=$PATH"; echo "F=$SITE_FLAG"\n',
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert wait_no_pins(site_dir.run_dir) == []                    # the session is over
    assert r.returncode == 0, r.stderr + sshd.log()[-3000:]
    out = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert out["ARGV0"] == "-sh"                                    # a login shell
    assert out["PRETTY_NAME"] == '"Debian GNU/Linux 12 (bookworm)"'
    assert out["P"] == f"/opt/site/bin:{PROFILE_PATH}", out["P"]    # /etc/profile ran, the prepend survived
    assert out["F"] == "on"
