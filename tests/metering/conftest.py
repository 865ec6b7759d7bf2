"""The store fixtures of tests/store (real SQLite and real PostgreSQL), for the meter's flow."""

from tests.store.conftest import open_stores, store

__all__ = ["open_stores", "store"]
