"""Request-path and header rules shared by every transport (no I/O)."""
