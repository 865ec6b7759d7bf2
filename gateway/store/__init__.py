"""Token store: root keys, single-use reservations and revenue accounting.

SQLite is the default (one file beside the gateway); PostgreSQL is for
operators who already run it. Both implement `TokenStore`.
"""

from __future__ import annotations

from pathlib import Path

from gateway.l402.records import TokenRecord
from gateway.store.base import ReportRow, Reservation, ReserveResult, StoreError, TokenStore
from gateway.store.url import StoreLocation, parse_store_url


async def open_store(url: str, base_dir: Path | None = None) -> TokenStore:
    """Open (and create or migrate) the store a `store.url` names.

    Relative SQLite paths resolve against `base_dir` (the config file's dir).
    Raises StoreError when the database cannot be opened, ValueError on a bad URL.
    """
    location = parse_store_url(url, base_dir)
    if location.kind == "postgres":
        from gateway.store.postgres import PostgresTokenStore  # asyncpg only when needed

        return await PostgresTokenStore.open(location.target)
    from gateway.store.sqlite import SqliteTokenStore

    return await SqliteTokenStore.open(location.target)


__all__ = [
    "ReportRow",
    "Reservation",
    "ReserveResult",
    "StoreError",
    "StoreLocation",
    "TokenRecord",
    "TokenStore",
    "open_store",
    "parse_store_url",
]
