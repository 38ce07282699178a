"""Command-line front ends: `envsched` (admins, shims) and `chos` (users)."""
