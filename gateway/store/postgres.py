"""PostgreSQL TokenStore (asyncpg pool), for deployments that already run Postgres.

Same tables and semantics as the SQLite adapter. Row-level locking makes the
conditional UPDATE behind `reserve` atomic across any number of gateways: a
concurrent UPDATE waits for the row and re-checks the WHERE clause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from gateway.l402.records import TokenRecord
from gateway.store.base import (
    PRUNABLE_SQL,
    SCHEMA_VERSION,
    PruneCandidate,
    ReportRow,
    Reservation,
    ReserveResult,
    StoreError,
    check_day,
    first_report_day,
    merge_report,
    new_lease_id,
    parse_token_id,
    prune_candidates_sql,
    utc_day,
)
from gateway.store.schema import POSTGRES_SCHEMA

T = TypeVar("T")
_SCHEMA_LOCK = 0x1402_5C4E  # pg_advisory_xact_lock key: one migrator at a time
DELETE_PRUNABLE = "DELETE FROM l402_tokens WHERE key_id = ANY($1::bytea[])"
DELETE_PRUNABLE += f" AND {PRUNABLE_SQL}"

_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


def _rowcount(status: str) -> int:
    """asyncpg returns the command tag, e.g. "UPDATE 1" or "INSERT 0 1"."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _describe(exc: BaseException) -> str:
    # Only the server's primary message: DETAIL lines can echo a failing row.
    return f"{type(exc).__name__}: {exc}"


class PostgresTokenStore:
    """TokenStore on a PostgreSQL database (see module docstring)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._closed = False

    @classmethod
    async def open(
        cls, dsn: str, *, max_size: int = 10, timeout: float = 10.0
    ) -> PostgresTokenStore:
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=max_size, timeout=timeout, command_timeout=timeout
            )
        except _ERRORS as exc:
            # The DSN may hold a password: never echo it.
            raise StoreError(f"cannot connect to PostgreSQL: {_describe(exc)}") from exc
        store = cls(pool)
        try:
            await store._run("migrate", store._migrate)
        except BaseException:
            await pool.close()
            raise
        return store

    async def _migrate(self, conn: Any) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS l402_schema_version (version INTEGER NOT NULL)"
            )
            version = await conn.fetchval("SELECT max(version) FROM l402_schema_version")
            if version is None:
                for statement in POSTGRES_SCHEMA:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO l402_schema_version VALUES ($1)", SCHEMA_VERSION)
            elif version > SCHEMA_VERSION:
                raise StoreError(f"store schema v{version} is newer than this gateway's")

    async def _run(self, what: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        if self._closed:
            raise StoreError("store is closed")
        try:
            async with self._pool.acquire() as conn:
                return await fn(conn)
        except _ERRORS as exc:
            raise StoreError(f"{what} failed: {_describe(exc)}") from exc

    async def put_token(self, record: TokenRecord) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO l402_tokens (key_id, token_id, payment_hash, route, root_key,"
                " price_msat, single_use, created_at, valid_until)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                record.key_id,
                record.token_id,
                record.payment_hash,
                record.route,
                record.root_key,
                record.price_msat,
                record.single_use,
                record.created_at,
                record.valid_until,
            )

        await self._run("put_token", op)

    async def get_root_key(self, key_id: bytes) -> bytes | None:
        async def op(conn: Any) -> bytes | None:
            value = await conn.fetchval(
                "SELECT root_key FROM l402_tokens WHERE key_id = $1", key_id
            )
            return None if value is None else bytes(value)

        return await self._run("get_root_key", op)

    async def reserve(self, key_id: bytes, now: int, lease_seconds: int) -> Reservation:
        lease_id = new_lease_id()

        async def op(conn: Any) -> Reservation:
            status = await conn.execute(
                "UPDATE l402_tokens SET lease_until = $1, lease_id = $2 WHERE key_id = $3"
                " AND root_key IS NOT NULL AND used_at IS NULL"
                " AND (lease_until IS NULL OR lease_until <= $4)",
                now + lease_seconds,
                lease_id,
                key_id,
                now,
            )
            if _rowcount(status) == 1:
                return Reservation(ReserveResult.RESERVED, lease_id)
            row = await conn.fetchrow(
                "SELECT root_key IS NOT NULL AS live, used_at FROM l402_tokens WHERE key_id = $1",
                key_id,
            )
            if row is None or not row["live"]:
                return Reservation(ReserveResult.UNKNOWN)
            if row["used_at"] is not None:
                return Reservation(ReserveResult.ALREADY_USED)
            return Reservation(ReserveResult.IN_USE)

        return await self._run("reserve", op)

    async def commit(self, key_id: bytes, lease_id: bytes, now: int) -> bool:
        async def op(conn: Any) -> bool:
            status = await conn.execute(
                "UPDATE l402_tokens SET used_at = $1, lease_until = NULL, lease_id = NULL"
                " WHERE key_id = $2 AND lease_id = $3 AND used_at IS NULL",
                now,
                key_id,
                lease_id,
            )
            return _rowcount(status) == 1

        return await self._run("commit", op)

    async def release(self, key_id: bytes, lease_id: bytes) -> bool:
        async def op(conn: Any) -> bool:
            status = await conn.execute(
                "UPDATE l402_tokens SET lease_until = NULL, lease_id = NULL"
                " WHERE key_id = $1 AND lease_id = $2 AND used_at IS NULL",
                key_id,
                lease_id,
            )
            return _rowcount(status) == 1

        return await self._run("release", op)

    async def is_used(self, key_id: bytes) -> bool:
        async def op(conn: Any) -> bool:
            used_at = await conn.fetchval(
                "SELECT used_at FROM l402_tokens WHERE key_id = $1", key_id
            )
            return used_at is not None

        return await self._run("is_used", op)

    async def revoke(self, token_id_hex: str) -> bool:
        token_id = parse_token_id(token_id_hex)
        now = int(time.time())

        async def op(conn: Any) -> bool:
            status = await conn.execute(
                "UPDATE l402_tokens SET root_key = NULL, revoked_at = $1"
                " WHERE token_id = $2 AND root_key IS NOT NULL",
                now,
                token_id,
            )
            return _rowcount(status) > 0

        return await self._run("revoke", op)

    async def route_for_payment_hash(self, payment_hash: bytes) -> str | None:
        async def op(conn: Any) -> str | None:
            route = await conn.fetchval(
                "SELECT route FROM l402_tokens WHERE payment_hash = $1 LIMIT 1", payment_hash
            )
            return None if route is None else str(route)

        return await self._run("route_for_payment_hash", op)

    async def record_settlement(
        self,
        payment_hash: bytes,
        route: str,
        amt_paid_msat: int,
        settle_index: int,
        settled_at: int,
    ) -> bool:
        day = utc_day(settled_at)

        async def op(conn: Any) -> bool:
            async with conn.transaction():
                status = await conn.execute(
                    "INSERT INTO l402_settlements (payment_hash, route, amt_paid_msat,"
                    " settle_index, settled_at, day) VALUES ($1, $2, $3, $4, $5, $6)"
                    " ON CONFLICT (payment_hash) DO NOTHING",
                    payment_hash,
                    route,
                    amt_paid_msat,
                    settle_index,
                    settled_at,
                    day,
                )
                await conn.execute(
                    "INSERT INTO l402_settle_state (id, last_settle_index) VALUES (1, $1)"
                    " ON CONFLICT (id) DO UPDATE SET last_settle_index ="
                    " GREATEST(l402_settle_state.last_settle_index, EXCLUDED.last_settle_index)",
                    settle_index,
                )
            return _rowcount(status) == 1

        return await self._run("record_settlement", op)

    async def last_settle_index(self) -> int:
        async def op(conn: Any) -> int:
            value = await conn.fetchval("SELECT last_settle_index FROM l402_settle_state")
            return 0 if value is None else int(value)

        return await self._run("last_settle_index", op)

    async def first_token_created_at(self) -> int | None:
        async def op(conn: Any) -> int | None:
            value = await conn.fetchval("SELECT min(created_at) FROM l402_tokens")
            return None if value is None else int(value)

        return await self._run("first_token_created_at", op)

    async def add_paid_requests(self, route: str, day: str, count: int) -> None:
        check_day(day)
        if count == 0:
            return

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO l402_paid_requests (day, route, count) VALUES ($1, $2, $3)"
                " ON CONFLICT (day, route) DO UPDATE"
                " SET count = l402_paid_requests.count + EXCLUDED.count",
                day,
                route,
                count,
            )

        await self._run("add_paid_requests", op)

    async def revenue_report(
        self, days: int | None = None, *, now: int | None = None
    ) -> list[ReportRow]:
        first = first_report_day(days, now)

        async def op(conn: Any) -> list[ReportRow]:
            settled = await conn.fetch(
                "SELECT day, route, count(*), sum(amt_paid_msat) FROM l402_settlements"
                " WHERE day >= $1 GROUP BY day, route",
                first,
            )
            paid = await conn.fetch(
                "SELECT day, route, count FROM l402_paid_requests WHERE day >= $1", first
            )
            return merge_report(
                [(r[0], r[1], r[2], r[3]) for r in settled], [(r[0], r[1], r[2]) for r in paid]
            )

        return await self._run("revenue_report", op)

    async def prune_candidates(
        self, created_before: int, limit: int, *, after: tuple[int, bytes] | None = None
    ) -> list[PruneCandidate]:
        sql = prune_candidates_sql(after is not None, numbered=True)
        cursor = () if after is None else (after[0], after[0], after[1])
        params = (created_before, *cursor, limit)

        async def op(conn: Any) -> list[PruneCandidate]:
            rows = await conn.fetch(sql, *params)
            return [PruneCandidate(bytes(r[0]), bytes(r[1]), int(r[2])) for r in rows]

        return await self._run("prune_candidates", op)

    async def delete_tokens(self, key_ids: Sequence[bytes]) -> int:
        keys = list(key_ids)
        if not keys:
            return 0

        async def op(conn: Any) -> int:
            async with conn.transaction():
                # SHARE blocks settlement inserts until we commit, and the DELETE's
                # snapshot (taken after the lock) sees every settlement committed
                # before it: a settlement either wins or books after the delete.
                await conn.execute("LOCK TABLE l402_settlements IN SHARE MODE")
                status = await conn.execute(DELETE_PRUNABLE, keys)
            return _rowcount(status)

        return await self._run("delete_tokens", op)

    async def check_writable(self) -> None:
        now = int(time.time())

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO l402_store_health (id, checked_at) VALUES (1, $1)"
                " ON CONFLICT (id) DO UPDATE SET checked_at = EXCLUDED.checked_at",
                now,
            )

        await self._run("check_writable", op)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pool.close()
