"""Direct SQL on a store's database, for tests that check what the store wrote.

The store has no "is this token used?" method (nothing in the gateway needs
one); tests ask the database itself.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import asyncpg

from gateway.store.dialect import POSTGRES
from gateway.store.url import parse_store_url


async def fetch(url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one query (`?` placeholders) on the database `url` names; all rows as tuples."""
    location = parse_store_url(url)
    if location.kind == "postgres":
        conn = await asyncpg.connect(location.target)
        try:
            return [tuple(r) for r in await conn.fetch(POSTGRES.render(sql), *params)]
        finally:
            await conn.close()
    with sqlite3.connect(location.target) as conn:
        return conn.execute(sql, params).fetchall()


async def is_used(url: str, key_id: bytes) -> bool:
    rows = await fetch(url, "SELECT used_at FROM l402_tokens WHERE key_id = ?", key_id)
    return bool(rows) and rows[0][0] is not None
