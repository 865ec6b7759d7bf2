"""One leader across processes (settlement follower, pruner), on real SQLite and PostgreSQL.

Real processes contend for the lock; the holder is killed with SIGKILL (no
cleanup of its own) and another takes over within a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from asyncio.subprocess import PIPE, Process
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from gateway.jobs.leadership import run_while_leader
from gateway.store import Store, open_store
from gateway.store.locks import FileLeaderLock, advisory_key
from gateway.store.roles import LeaderLock
from tests.support.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[2]
TAKEOVER_BOUND = 10.0  # seconds from SIGKILL to the new leader's first line (polls every 0.1 s)

CONTENDER = """
import asyncio, os, sys
from gateway.jobs.leadership import run_while_leader
from gateway.store import open_store

class Announcing:
    '''The store's lock, saying once that this process tried and lost.'''
    def __init__(self, lock):
        self.lock, self.said = lock, False
        self.name = lock.name
    async def try_acquire(self):
        got = await self.lock.try_acquire()
        if not got and not self.said:
            self.said = True
            print("FOLLOWER", flush=True)
        return got
    async def still_held(self):
        return await self.lock.still_held()
    async def release(self):
        await self.lock.release()

async def main():
    store = await open_store(sys.argv[1])
    async def lead():
        print("LEADER", flush=True)
        await asyncio.Event().wait()
    lock = Announcing(store.leader_lock("settlement"))
    await run_while_leader(lock, "settlement", lead, poll_interval=0.1, check_interval=0.1)

asyncio.run(main())
"""


async def first_line(proc: Process, timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().strip()


@pytest.fixture
async def contenders(store_url: str) -> AsyncIterator[Callable[[], Awaitable[Process]]]:
    await (await open_store(store_url)).close()  # schema first, so the processes only contend
    procs: list[Process] = []

    async def spawn() -> Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CONTENDER, store_url, stdout=PIPE, cwd=REPO
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_one_process_leads_and_another_takes_over_after_kill_9(
    contenders: Callable[[], Awaitable[Process]],
) -> None:
    first, second = await contenders(), await contenders()
    lines = await asyncio.gather(first_line(first), first_line(second))
    assert sorted(lines) == ["FOLLOWER", "LEADER"]
    leader, follower = (first, second) if lines[0] == "LEADER" else (second, first)

    os.kill(leader.pid, signal.SIGKILL)
    killed = time.monotonic()
    assert await first_line(follower, TAKEOVER_BOUND) == "LEADER"
    assert time.monotonic() - killed < TAKEOVER_BOUND
    await leader.wait()
    assert leader.returncode == -signal.SIGKILL

    third = await contenders()  # a newcomer waits behind the new leader
    assert await first_line(third) == "FOLLOWER"


class Recorder:
    """on_change events and task starts, for waiting on them without sleeping."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[str] = asyncio.Queue()
        self.starts = 0

    def on_change(self, leading: bool) -> None:
        self.events.put_nowait("lead" if leading else "stop")

    async def next(self) -> str:
        return await asyncio.wait_for(self.events.get(), 30.0)


async def _forever(recorder: Recorder) -> None:
    recorder.starts += 1
    await asyncio.Event().wait()


def lead(
    lock: LeaderLock, recorder: Recorder, factory: Callable[[], Awaitable[None]] | None = None
) -> asyncio.Task[None]:
    async def task() -> None:
        await (factory() if factory is not None else _forever(recorder))

    return asyncio.create_task(
        run_while_leader(
            lock,
            lock.name,
            task,
            poll_interval=0.05,
            check_interval=0.05,
            on_change=recorder.on_change,
        )
    )


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_cancelling_the_leader_releases_the_lock(store: Store) -> None:
    recorder = Recorder()
    runner = lead(store.leader_lock("pruner"), recorder)
    assert await recorder.next() == "lead"
    other = store.leader_lock("pruner")
    assert await other.try_acquire() is False
    independent = store.leader_lock("settlement")
    assert await independent.try_acquire() is True  # names are independent
    await independent.release()
    await stop(runner)
    assert await recorder.next() == "stop"
    assert await other.try_acquire() is True
    await other.release()


async def test_a_failed_task_gives_up_leadership_and_contends_again(store: Store) -> None:
    recorder = Recorder()
    attempts = 0

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("boom")
        await asyncio.Event().wait()

    runner = lead(store.leader_lock("pruner"), recorder, flaky)
    try:
        assert [await recorder.next() for _ in range(3)] == ["lead", "stop", "lead"]
        assert attempts == 2
    finally:
        await stop(runner)


async def test_a_replaced_lock_file_is_lost_leadership(tmp_path: Path) -> None:
    lock = FileLeaderLock(tmp_path / "tokens.db", "settlement")
    assert await lock.try_acquire()
    assert await lock.still_held()
    lock.path.unlink()  # someone removed it: a new process would lock a new file
    assert await lock.still_held() is False
    assert await lock.try_acquire()  # on the new file
    await lock.release()
    with pytest.raises(ValueError, match="names"):
        FileLeaderLock(tmp_path / "tokens.db", "../escape")


@pytest.mark.postgres
async def test_a_dropped_postgres_session_stops_the_task_then_leads_again(
    postgres_server: PostgresServer,
) -> None:
    name = postgres_server.create_database()
    store_url = postgres_server.url(name)
    store = await open_store(store_url)
    recorder = Recorder()
    runner = lead(store.leader_lock("settlement"), recorder)
    admin = await asyncpg.connect(store_url)
    try:
        assert await recorder.next() == "lead"
        key = advisory_key("settlement")
        pid = await admin.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = $1 AND objid = $2",
            (key >> 32) & 0xFFFFFFFF,
            key & 0xFFFFFFFF,
        )
        assert pid is not None
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        assert await recorder.next() == "stop"  # the task was stopped ...
        assert await recorder.next() == "lead"  # ... and leads again on a new session
        assert recorder.starts == 2
    finally:
        await admin.close()
        await stop(runner)
        await store.close()
        postgres_server.drop_database(name)
