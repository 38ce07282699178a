"""Torque: the set-user-ID job starter, prologue/epilogue and submit filter of plugins/torque/torque/,
configured from PBS_HOME as the running pbs_mom (or the mom_priv found on disk) shows it.
"""
ADAPTER = "envsched.schedulers.torque.adapter:TorqueAdapter"
SUBMIT = None
