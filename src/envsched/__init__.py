"""envsched: run every batch job in the Linux userland it was certified on."""

__version__ = "0.1.0"
