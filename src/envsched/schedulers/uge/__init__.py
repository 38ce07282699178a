"""Grid Engine (Univa/Altair UGE, Son of Grid Engine): the JSV, prolog, starters and epilog of
plugins/uge/, configured from what `qconf` says (the queues' tmpdir, execd_spool_dir), and
portable submission through DRMAA (`chos submit`).
"""
ADAPTER = "envsched.schedulers.uge.adapter:UgeAdapter"
SUBMIT = "envsched.schedulers.uge.submit:UgeScheduler"
