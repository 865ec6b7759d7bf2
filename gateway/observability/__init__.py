"""Logs, log budgets and redaction, and the Prometheus metrics."""
