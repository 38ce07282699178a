"""Slurm: the SPANK plugin (plugins/slurm-spank/), its plugstack.conf line, host tools.

Its configuration comes from Slurm itself: `scontrol show config` (or slurm.conf when no
controller answers): SlurmdSpoolDir, PlugStackConfig, the munge socket (AuthInfo socket=).
"""
ADAPTER = "envsched.schedulers.slurm.adapter:SlurmAdapter"
SUBMIT = None          # `chos submit --scheduler slurm`: not yet
