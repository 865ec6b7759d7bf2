"""Reads never queue behind writes, and every store call fails fast (real processes, real servers).

The bounds asserted here are on failure paths (how long a caller waits before
it gets StoreError), measured with time.monotonic; they are generous (3x the
deadline), not speed targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from asyncio.subprocess import PIPE, Process
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import pytest

from gateway.store import ReserveResult, Store, StoreError, open_store
from tests.support.postgres import find_bindir

from .factories import make_record
from .pgcontrol import ControlledPostgres

DEADLINE = 1.0
BOUND = 3 * DEADLINE

# Another process takes SQLite's write lock and holds it until told (a line on stdin).
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE l402_store_health SET checked_at = 0")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("released", flush=True)
"""


async def line(proc: Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), 30.0)).decode().strip()


@pytest.fixture
async def locker(tmp_path: Path) -> AsyncIterator[tuple[str, Process]]:
    """A SQLite store file and a second process holding its write lock."""
    url = f"sqlite://{tmp_path / 'tokens.db'}"
    setup = await open_store(url)
    await setup.check_writable()
    await setup.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOCKER, str(tmp_path / "tokens.db"), stdin=PIPE, stdout=PIPE
    )
    try:
        yield url, proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def release(proc: Process) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()
    assert await line(proc) == "released"


async def elapsed_failure(call: Awaitable[object]) -> float:
    """Seconds until `call` failed with StoreError."""
    start = time.monotonic()
    with pytest.raises(StoreError):
        await call
    return time.monotonic() - start


async def test_sqlite_reads_do_not_wait_for_another_process_holding_the_write_lock(
    locker: tuple[str, Process],
) -> None:
    url, proc = locker
    store = await open_store(url, timeout=DEADLINE)
    try:
        single = make_record(single_use=True)
        await store.put_token(single)
        assert await line(proc) == "locked"

        # A burst of writes waits for the lock on our writer thread ...
        start = time.monotonic()
        writes = asyncio.gather(
            *(store.reserve(single.key_id, 100, 30) for _ in range(8)), return_exceptions=True
        )
        await asyncio.sleep(0)  # let the writes reach the writer thread first
        # ... while reads answer at once, from the reader threads.
        assert await store.get_root_key(single.key_id) == single.root_key
        assert await store.list_tokens() != []
        assert time.monotonic() - start < DEADLINE / 2

        # The writes do not add up: each op whose deadline passed while it waited
        # for the writer thread fails without running.
        results = await writes
        assert all(isinstance(r, StoreError) for r in results), results
        assert time.monotonic() - start < BOUND
        assert await elapsed_failure(store.reserve(single.key_id, 100, 30)) < BOUND

        # A gateway (re)starting meanwhile opens the current schema without the write lock.
        other = await open_store(url, timeout=DEADLINE)
        assert await other.get_root_key(single.key_id) == single.root_key
        await other.close()

        await release(proc)
        reservation = await store.reserve(single.key_id, 100, 30)
        assert reservation.result is ReserveResult.RESERVED
        assert reservation.lease_id is not None
        assert await store.commit(single.key_id, reservation.lease_id, 101)
    finally:
        await store.close()


async def test_sqlite_health_check_fails_fast_while_locked(locker: tuple[str, Process]) -> None:
    url, proc = locker
    store: Store = await open_store(url, timeout=DEADLINE)
    try:
        assert await line(proc) == "locked"
        assert await elapsed_failure(store.check_writable()) < BOUND
        await release(proc)
        await store.check_writable()
    finally:
        await store.close()


@pytest.fixture
def private_postgres() -> Iterator[ControlledPostgres]:
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries missing: run scripts/ensure-system-deps.sh")
    server = ControlledPostgres()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(OSError, ValueError):
            server.resume()  # not running when the test stopped it
        server.stop()


@pytest.mark.postgres
async def test_postgres_hung_server_fails_fast_then_recovers(
    private_postgres: ControlledPostgres,
) -> None:
    store = await open_store(private_postgres.url(), timeout=DEADLINE)
    try:
        record = make_record()
        await store.put_token(record)
        private_postgres.pause()
        try:
            assert await elapsed_failure(store.get_root_key(record.key_id)) < BOUND
            assert await elapsed_failure(store.put_token(make_record())) < BOUND
        finally:
            private_postgres.resume()
        assert await store.get_root_key(record.key_id) == record.root_key
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_stopped_server_fails_fast_then_recovers(
    private_postgres: ControlledPostgres,
) -> None:
    store = await open_store(private_postgres.url(), timeout=DEADLINE)
    try:
        record = make_record()
        await store.put_token(record)
        private_postgres.stop_hard()
        assert await elapsed_failure(store.get_root_key(record.key_id)) < BOUND
        assert await elapsed_failure(store.check_writable()) < BOUND
        private_postgres.start_again()
        assert await store.get_root_key(record.key_id) == record.root_key
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_unreachable_at_open_is_a_prompt_store_error(
    private_postgres: ControlledPostgres,
) -> None:
    url = private_postgres.url()
    private_postgres.stop_hard()
    start = time.monotonic()
    with pytest.raises(StoreError, match="cannot connect") as info:
        await open_store(url, timeout=DEADLINE)
    assert time.monotonic() - start < BOUND
    assert "l402@" not in str(info.value)  # no DSN (which may hold a password) in the message
