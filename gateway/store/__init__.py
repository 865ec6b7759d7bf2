"""Token store: root keys, single-use leases, revenue accounting, shared limits, leadership.

SQLite is the default (one file beside the gateway); PostgreSQL is for
operators who already run it. Both are one `SqlStore` (every operation and
statement written once, in `gateway.store.{tokens,imports,ledger,catalog,prune,
buckets,schema}`) over a driver (`sqlite.py`, `postgres.py`). Consumers type
against the small roles in `gateway.store.roles`.
"""

from __future__ import annotations

from pathlib import Path

from gateway.l402.records import TokenRecord
from gateway.store.roles import Store
from gateway.store.types import ReportRow, Reservation, ReserveResult, StoreError
from gateway.store.url import StoreLocation, parse_store_url

DEFAULT_TIMEOUT = 2.0  # seconds per store call; see docs in sqlite.py / postgres.py


async def open_store(
    url: str, base_dir: Path | None = None, *, timeout: float = DEFAULT_TIMEOUT
) -> Store:
    """Open (and create or migrate) the store a `store.url` names.

    Relative SQLite paths resolve against `base_dir` (the config file's dir).
    `timeout` bounds every call (StoreError after it). Raises StoreError when
    the database cannot be opened, ValueError on a bad URL.
    """
    from gateway.store.sqlstore import SqlStore

    location = parse_store_url(url, base_dir)
    if location.kind == "postgres":
        from gateway.store.postgres import PostgresDriver  # asyncpg only when needed

        return await SqlStore.open(await PostgresDriver.open(location.target, timeout=timeout))
    from gateway.store.sqlite import SqliteDriver

    return await SqlStore.open(await SqliteDriver.open(location.target, timeout=timeout))


__all__ = [
    "ReportRow",
    "Reservation",
    "ReserveResult",
    "Store",
    "StoreError",
    "StoreLocation",
    "TokenRecord",
    "open_store",
    "parse_store_url",
]
