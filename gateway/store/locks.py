"""Leader locks (gateway.jobs.leadership.LeaderLock) for each store backend.

- SQLite: `flock` on a side file next to the database (`<db>.<name>.leader`).
  The kernel drops it when the holding process dies, however it dies. flock
  locks belong to an open file description, so two stores in one process
  contend like two processes do.
- PostgreSQL: a session advisory lock held on a dedicated connection (not a
  pooled one). The server drops it when that session ends: the process died,
  or its connection broke (TCP keepalives make the server notice a vanished
  host within about half a minute). `still_held` asks the server; a broken
  connection means the lock is gone and the next `try_acquire` reconnects.
  Needs a direct connection or session pooling (a transaction-pooling proxy
  would move the session under the lock).
- `:memory:` SQLite: one process only; a per-process registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def check_name(name: str) -> str:
    if not name or not set(name) <= _NAME_OK or len(name) > 64:
        raise ValueError(f"leader lock names are [a-z0-9_-]{{1,64}}, got {name!r}")
    return name


class FileLeaderLock:
    """flock on a side file next to the SQLite database."""

    def __init__(self, database: Path, name: str) -> None:
        self._name = check_name(name)
        self.path = database.with_name(f"{database.name}.{name}.leader")
        self._fd: int | None = None

    @property
    def name(self) -> str:
        return self._name

    async def try_acquire(self) -> bool:
        if self._fd is not None:
            return await self.still_held()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    async def still_held(self) -> bool:
        """Held while our descriptor is locked and still names the file at `path`
        (a deleted or replaced lock file would let another process lock a new one)."""
        if self._fd is None:
            return False
        try:
            same = os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            await self.release()
        return same

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock


class ProcessLeaderLock:
    """For an in-memory store, which only one process can see."""

    _held: ClassVar[set[tuple[int, str]]] = set()

    def __init__(self, owner: object, name: str) -> None:
        self._key = (id(owner), check_name(name))
        self._mine = False

    @property
    def name(self) -> str:
        return self._key[1]

    async def try_acquire(self) -> bool:
        if not self._mine and self._key not in self._held:
            self._held.add(self._key)
            self._mine = True
        return self._mine

    async def still_held(self) -> bool:
        return self._mine

    async def release(self) -> None:
        if self._mine:
            self._held.discard(self._key)
            self._mine = False


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for the name (not shared with migrations)."""
    digest = hashlib.sha256(b"l402-gateway leader " + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLeaderLock:
    """Session advisory lock on a dedicated connection (see module docstring)."""

    KEEPALIVES: ClassVar[dict[str, str]] = {
        "tcp_keepalives_idle": "10",
        "tcp_keepalives_interval": "5",
        "tcp_keepalives_count": "3",
    }

    def __init__(self, dsn: str, name: str, *, timeout: float) -> None:
        self._dsn = dsn
        self._name = check_name(name)
        self._key = advisory_key(name)
        self._timeout = timeout
        self._conn: Any = None
        self._held = False

    @property
    def name(self) -> str:
        return self._name

    async def _connection(self) -> Any:
        import asyncpg

        if self._conn is None or self._conn.is_closed():
            self._held = False
            self._conn = await asyncpg.connect(
                self._dsn, timeout=self._timeout, server_settings=self.KEEPALIVES
            )
        return self._conn

    async def try_acquire(self) -> bool:
        if self._held:
            return await self.still_held()
        try:
            async with asyncio.timeout(self._timeout):
                conn = await self._connection()
                self._held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key))
        except BaseException:
            await self._drop()
            raise
        return self._held

    async def still_held(self) -> bool:
        if not self._held or self._conn is None or self._conn.is_closed():
            await self._drop()
            return False
        try:
            async with asyncio.timeout(self._timeout):
                held = await self._conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND granted AND objsubid = 1"
                    " AND classid = $1 AND objid = $2)",
                    (self._key >> 32) & 0xFFFFFFFF,
                    self._key & 0xFFFFFFFF,
                )
        except Exception:
            held = False
        if not held:
            await self._drop()
        return bool(held)

    async def release(self) -> None:
        """Closing the session drops the lock: one step, nothing left half-released."""
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self._timeout)
            if not conn.is_closed():
                conn.terminate()
