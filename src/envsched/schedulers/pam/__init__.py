"""PAM: the session module plugins/pam (pam_envsched.so) for sshd, su -l, login, ...: not a batch
scheduler, but configured, installed and checked the same way (`--scheduler pam` or `--pam SERVICE`).
"""
ADAPTER = "envsched.schedulers.pam.adapter:PamAdapter"
SUBMIT = None
