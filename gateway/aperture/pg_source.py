"""Aperture's PostgreSQL database, read-only, in bounded pages (see gateway.aperture.sourcesql).

One connection in one READ ONLY, REPEATABLE READ transaction for the whole
import (one snapshot; nothing can be written), every query bounded by a
timeout. Sizes are checked in SQL (`octet_length`), so a value over the read
bound never leaves the server. Error messages name the error's type only:
PostgreSQL's DETAIL lines can quote row data, and the DSN may hold a password.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from gateway.aperture.keystore import (
    CONNECT_TIMEOUT_SECONDS,
    QUERY_TIMEOUT_SECONDS,
    ApertureDbError,
    Raw,
    describe_source,
)
from gateway.aperture.sourcesql import POSTGRES, TRANSACTIONS

IN_LIST = 500


class PostgresSource:
    """One read-only connection to Aperture's PostgreSQL database."""

    row_key = POSTGRES.row_key

    def __init__(self, conn: Any, transaction: Any, description: str) -> None:
        self._conn = conn
        self._transaction = transaction
        self.description = description
        self.tables: frozenset[str] = frozenset()

    @classmethod
    async def open(cls, dsn: str) -> PostgresSource:
        import asyncpg  # only when needed

        description = describe_source(dsn)
        try:
            conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS)
        except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as exc:
            # asyncpg's messages name host, user and database, never the password.
            raise ApertureDbError(f"{description}: cannot connect: {type(exc).__name__}") from None
        transaction = conn.transaction(readonly=True, isolation="repeatable_read")
        source = cls(conn, transaction, description)
        try:
            await transaction.start()
            rows = await source._all(POSTGRES.tables, ())
            source.tables = frozenset(str(r[0]) for r in rows)
        except BaseException:
            await conn.close()
            raise
        return source

    async def _all(self, sql: str, params: Sequence[object]) -> list[Any]:
        import asyncpg

        try:
            return list(await self._conn.fetch(sql, *params, timeout=QUERY_TIMEOUT_SECONDS))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise ApertureDbError(
                f"{self.description}: query failed: {type(exc).__name__}"
            ) from None

    async def count_secrets(self) -> int:
        (row,) = await self._all(POSTGRES.count_secrets, ())
        return int(row[0])

    async def page(
        self, table: str, columns: Sequence[str], after: int | None, limit: int
    ) -> list[tuple[int, Raw]]:
        params: tuple[object, ...] = (limit,) if after is None else (after, limit)
        rows = await self._all(POSTGRES.page(table, columns, first=after is None), params)
        return [POSTGRES.decode(tuple(row), columns) for row in rows]

    async def transactions_for(self, key_ids: Sequence[bytes]) -> list[tuple[int, Raw]]:
        found: list[tuple[int, Raw]] = []
        for start in range(0, len(key_ids), IN_LIST):
            chunk = key_ids[start : start + IN_LIST]
            rows = await self._all(POSTGRES.transactions_for(len(chunk)), chunk)
            found += [POSTGRES.decode(tuple(row), TRANSACTIONS) for row in rows]
        return found

    async def present(self, key_ids: Sequence[bytes]) -> set[bytes]:
        out: set[bytes] = set()
        for start in range(0, len(key_ids), IN_LIST):
            chunk = key_ids[start : start + IN_LIST]
            out.update(bytes(r[0]) for r in await self._all(POSTGRES.present(len(chunk)), chunk))
        return out

    async def close(self) -> None:
        import asyncpg

        # Read only: nothing to keep; the connection is closed next either way.
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await self._transaction.rollback()
        await self._conn.close()
