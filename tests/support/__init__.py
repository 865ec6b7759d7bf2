"""Helpers shared by the test suites (real external servers started per test)."""
