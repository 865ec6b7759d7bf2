"""PostgreSQL driver (asyncpg pool), for deployments that already run Postgres.

Row-level locking makes the conditional UPDATE behind `reserve` atomic across
any number of gateways: a concurrent UPDATE waits for the row and re-checks
the WHERE clause. TRANSACTION ops run inside `conn.transaction()`; READ and
WRITE ops are single autocommit statements (no BEGIN/COMMIT round trips).

Every call fails fast with StoreError instead of hanging: the whole call
(pool acquire, any reconnect, every statement) runs under one deadline
(default 2 s), with `acquire(timeout=...)`, `command_timeout` and a connect
timeout as the inner bounds. A stopped or unreachable server therefore costs
a request at most the deadline, and the server answers 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from gateway.store.dialect import POSTGRES, Dialect
from gateway.store.locks import PostgresLeaderLock
from gateway.store.roles import LeaderLock
from gateway.store.steps import Execute, FetchOne, Kind, Op, Step
from gateway.store.types import StoreError

T = TypeVar("T")

DEFAULT_TIMEOUT = 2.0
OPEN_TIMEOUT = 10.0
MAX_POOL = 10
LEADER_LOCK_TIMEOUT = 5.0

_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _rowcount(status: str) -> int:
    """asyncpg returns the command tag, e.g. "UPDATE 1" or "INSERT 0 1"."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _describe(exc: BaseException) -> str:
    # Only the server's primary message: DETAIL lines can echo a failing row.
    return f"{type(exc).__name__}: {exc}"


def describe_dsn(dsn: str) -> str:
    """host:port/database, never the user or password."""
    parts = urlsplit(dsn)
    return f"postgresql {parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


async def _run_step(conn: Any, dialect: Dialect, step: Step, timeout: float) -> Any:
    sql = dialect.render(step.sql)
    if isinstance(step, Execute):
        return _rowcount(await conn.execute(sql, *step.params, timeout=timeout))
    if isinstance(step, FetchOne):
        row = await conn.fetchrow(sql, *step.params, timeout=timeout)
        return None if row is None else tuple(row)
    return [tuple(row) for row in await conn.fetch(sql, *step.params, timeout=timeout)]


async def _drive(conn: Any, dialect: Dialect, op: Op[T], timeout: float) -> T:
    """Each statement is bounded by `timeout` too (the pool's command_timeout is the
    store's deadline, too short for a migration's index build)."""
    steps = op.steps
    try:
        step = next(steps)
        while True:
            step = steps.send(await _run_step(conn, dialect, step, timeout))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        steps.close()


class PostgresDriver:
    """An asyncpg pool with deadlines (see module docstring)."""

    dialect: Dialect = POSTGRES

    def __init__(self, pool: Any, dsn: str, timeout: float) -> None:
        self._pool = pool
        self._dsn = dsn
        self.timeout = timeout
        self._closed = False

    @classmethod
    async def open(
        cls, dsn: str, *, timeout: float = DEFAULT_TIMEOUT, max_size: int = MAX_POOL
    ) -> PostgresDriver:
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                pool = await asyncpg.create_pool(
                    dsn,
                    min_size=1,
                    max_size=max_size,
                    timeout=max(timeout, 1.0),  # per new connection
                    command_timeout=timeout,
                )
        except TimeoutError:
            raise StoreError(f"cannot connect to PostgreSQL within {OPEN_TIMEOUT:g}s") from None
        except _ERRORS as exc:
            # The DSN may hold a password: never echo it.
            raise StoreError(f"cannot connect to PostgreSQL: {_describe(exc)}") from exc
        return cls(pool, dsn, timeout)

    @property
    def description(self) -> str:
        return describe_dsn(self._dsn)

    def leader_lock(self, name: str) -> LeaderLock:
        return PostgresLeaderLock(self._dsn, name, timeout=max(self.timeout, LEADER_LOCK_TIMEOUT))

    async def run(self, op: Op[T], *, timeout: float | None = None) -> T:
        if self._closed:
            op.steps.close()
            raise StoreError("store is closed")
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                async with self._pool.acquire(timeout=limit) as conn:
                    if op.kind is Kind.TRANSACTION:
                        async with conn.transaction():
                            return await _drive(conn, self.dialect, op, limit)
                    return await _drive(conn, self.dialect, op, limit)
        except TimeoutError:
            op.steps.close()
            raise StoreError(f"{op.name}: no answer from PostgreSQL within {limit:g}s") from None
        except _ERRORS as exc:
            raise StoreError(f"{op.name} failed: {_describe(exc)}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._pool.close(), OPEN_TIMEOUT)
        except (TimeoutError, *_ERRORS):
            self._pool.terminate()  # a hung server must not hang shutdown
