"""OpenPBS: the queuejob, execjob_launch and execjob_end hooks and the set-user-ID joiner of
plugins/torque/openpbs/, configured from PBS_HOME in /etc/pbs.conf.
"""
ADAPTER = "envsched.schedulers.openpbs.adapter:OpenpbsAdapter"
SUBMIT = None
