"""SQLite TokenStore: the default, one file, safe for several gateway processes.

stdlib sqlite3 runs on one dedicated worker thread per store so the event loop
never blocks. WAL mode plus busy_timeout lets two processes share the file;
every write runs in a BEGIN IMMEDIATE transaction, so the conditional UPDATE
behind `reserve` is atomic across threads and processes alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

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
from gateway.store.schema import SQLITE_SCHEMA
from gateway.store.url import MEMORY

log = logging.getLogger(__name__)
T = TypeVar("T")
DELETE_PRUNABLE = "DELETE FROM l402_tokens WHERE key_id = ?"
DELETE_PRUNABLE += f" AND {PRUNABLE_SQL}"


@contextlib.contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock up front (waits busy_timeout)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _create_private_file(path: Path) -> None:
    """Root keys are secrets: the database file starts life as 0600 (WAL files copy it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("token store %s is readable by others (mode %o)", path, mode)
        return
    os.close(fd)


def _connect(target: str, busy_timeout_ms: int) -> sqlite3.Connection:
    if target != MEMORY:
        _create_private_file(Path(target))
    conn = sqlite3.connect(target, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if target != MEMORY:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot enable WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")  # a paid token must survive power loss
        with _write(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS l402_schema_version (version INTEGER NOT NULL)"
            )
            row = conn.execute("SELECT max(version) FROM l402_schema_version").fetchone()
            if row[0] is None:
                for statement in SQLITE_SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO l402_schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise StoreError(f"store schema v{row[0]} is newer than this gateway's")
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteTokenStore:
    """TokenStore on one SQLite file (see module docstring)."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, target: str):
        self._conn = conn
        self._executor = executor
        self.path = target
        self._closed = False

    @classmethod
    async def open(cls, target: str, *, busy_timeout_ms: int = 10_000) -> SqliteTokenStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="l402-sqlite")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, target, busy_timeout_ms)
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=False)
            raise StoreError(f"cannot open SQLite store {target}: {exc}") from exc
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor, target)

    async def _run(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError("store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, self._conn)
        except sqlite3.Error as exc:
            raise StoreError(f"{what} failed: {exc}") from exc

    async def put_token(self, record: TokenRecord) -> None:
        def op(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute(
                    "INSERT INTO l402_tokens (key_id, token_id, payment_hash, route, root_key,"
                    " price_msat, single_use, created_at, valid_until)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.key_id,
                        record.token_id,
                        record.payment_hash,
                        record.route,
                        record.root_key,
                        record.price_msat,
                        int(record.single_use),
                        record.created_at,
                        record.valid_until,
                    ),
                )

        await self._run("put_token", op)

    async def get_root_key(self, key_id: bytes) -> bytes | None:
        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT root_key FROM l402_tokens WHERE key_id = ?", (key_id,)
            ).fetchone()
            return None if row is None or row[0] is None else bytes(row[0])

        return await self._run("get_root_key", op)

    async def reserve(self, key_id: bytes, now: int, lease_seconds: int) -> Reservation:
        lease_id = new_lease_id()

        def op(conn: sqlite3.Connection) -> Reservation:
            with _write(conn):
                cur = conn.execute(
                    "UPDATE l402_tokens SET lease_until = ?, lease_id = ? WHERE key_id = ?"
                    " AND root_key IS NOT NULL AND used_at IS NULL"
                    " AND (lease_until IS NULL OR lease_until <= ?)",
                    (now + lease_seconds, lease_id, key_id, now),
                )
                if cur.rowcount == 1:
                    return Reservation(ReserveResult.RESERVED, lease_id)
                row = conn.execute(
                    "SELECT root_key IS NOT NULL, used_at FROM l402_tokens WHERE key_id = ?",
                    (key_id,),
                ).fetchone()
            if row is None or not row[0]:
                return Reservation(ReserveResult.UNKNOWN)
            if row[1] is not None:
                return Reservation(ReserveResult.ALREADY_USED)
            return Reservation(ReserveResult.IN_USE)

        return await self._run("reserve", op)

    async def commit(self, key_id: bytes, lease_id: bytes, now: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                cur = conn.execute(
                    "UPDATE l402_tokens SET used_at = ?, lease_until = NULL, lease_id = NULL"
                    " WHERE key_id = ? AND lease_id = ? AND used_at IS NULL",
                    (now, key_id, lease_id),
                )
            return cur.rowcount == 1

        return await self._run("commit", op)

    async def release(self, key_id: bytes, lease_id: bytes) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                cur = conn.execute(
                    "UPDATE l402_tokens SET lease_until = NULL, lease_id = NULL"
                    " WHERE key_id = ? AND lease_id = ? AND used_at IS NULL",
                    (key_id, lease_id),
                )
            return cur.rowcount == 1

        return await self._run("release", op)

    async def is_used(self, key_id: bytes) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT used_at FROM l402_tokens WHERE key_id = ?", (key_id,)
            ).fetchone()
            return row is not None and row[0] is not None

        return await self._run("is_used", op)

    async def revoke(self, token_id_hex: str) -> bool:
        token_id = parse_token_id(token_id_hex)
        now = int(time.time())

        def op(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                cur = conn.execute(
                    "UPDATE l402_tokens SET root_key = NULL, revoked_at = ?"
                    " WHERE token_id = ? AND root_key IS NOT NULL",
                    (now, token_id),
                )
            return cur.rowcount > 0

        return await self._run("revoke", op)

    async def route_for_payment_hash(self, payment_hash: bytes) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT route FROM l402_tokens WHERE payment_hash = ? LIMIT 1", (payment_hash,)
            ).fetchone()
            return None if row is None else str(row[0])

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

        def op(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                cur = conn.execute(
                    "INSERT INTO l402_settlements (payment_hash, route, amt_paid_msat,"
                    " settle_index, settled_at, day) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (payment_hash) DO NOTHING",
                    (payment_hash, route, amt_paid_msat, settle_index, settled_at, day),
                )
                conn.execute(
                    "INSERT INTO l402_settle_state (id, last_settle_index) VALUES (1, ?)"
                    " ON CONFLICT (id) DO UPDATE SET last_settle_index ="
                    " max(last_settle_index, excluded.last_settle_index)",
                    (settle_index,),
                )
            return cur.rowcount == 1

        return await self._run("record_settlement", op)

    async def last_settle_index(self) -> int:
        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT last_settle_index FROM l402_settle_state").fetchone()
            return 0 if row is None else int(row[0])

        return await self._run("last_settle_index", op)

    async def first_token_created_at(self) -> int | None:
        def op(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT min(created_at) FROM l402_tokens").fetchone()
            return None if row is None or row[0] is None else int(row[0])

        return await self._run("first_token_created_at", op)

    async def add_paid_requests(self, route: str, day: str, count: int) -> None:
        check_day(day)
        if count == 0:
            return

        def op(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute(
                    "INSERT INTO l402_paid_requests (day, route, count) VALUES (?, ?, ?)"
                    " ON CONFLICT (day, route) DO UPDATE SET count = count + excluded.count",
                    (day, route, count),
                )

        await self._run("add_paid_requests", op)

    async def revenue_report(
        self, days: int | None = None, *, now: int | None = None
    ) -> list[ReportRow]:
        first = first_report_day(days, now)

        def op(conn: sqlite3.Connection) -> list[ReportRow]:
            settled = conn.execute(
                "SELECT day, route, count(*), sum(amt_paid_msat) FROM l402_settlements"
                " WHERE day >= ? GROUP BY day, route",
                (first,),
            ).fetchall()
            paid = conn.execute(
                "SELECT day, route, count FROM l402_paid_requests WHERE day >= ?", (first,)
            ).fetchall()
            return merge_report(settled, paid)

        return await self._run("revenue_report", op)

    async def prune_candidates(
        self, created_before: int, limit: int, *, after: tuple[int, bytes] | None = None
    ) -> list[PruneCandidate]:
        sql = prune_candidates_sql(after is not None, numbered=False)
        cursor = () if after is None else (after[0], after[0], after[1])
        params = (created_before, *cursor, limit)

        def op(conn: sqlite3.Connection) -> list[PruneCandidate]:
            rows = conn.execute(sql, params).fetchall()
            return [PruneCandidate(bytes(k), bytes(h), int(c)) for k, h, c in rows]

        return await self._run("prune_candidates", op)

    async def delete_tokens(self, key_ids: Sequence[bytes]) -> int:
        keys = list(key_ids)
        if not keys:
            return 0

        def op(conn: sqlite3.Connection) -> int:
            with _write(conn):  # the write lock holds off record_settlement meanwhile
                cur = conn.executemany(DELETE_PRUNABLE, [(key,) for key in keys])
            return cur.rowcount  # executemany: the sum over all rows

        return await self._run("delete_tokens", op)

    async def check_writable(self) -> None:
        now = int(time.time())

        def op(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute(
                    "INSERT INTO l402_store_health (id, checked_at) VALUES (1, ?)"
                    " ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                    (now,),
                )

        await self._run("check_writable", op)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._conn.close)
        finally:
            self._executor.shutdown(wait=True)
