"""SQLite driver: the default store, one file, safe for several gateway processes.

Threads and connections:
- one writer thread with the writer connection runs every WRITE and
  TRANSACTION op (a TRANSACTION starts with BEGIN IMMEDIATE, so the write lock
  is taken up front and the conditional UPDATE behind `reserve` is atomic
  across threads and processes alike);
- a small pool of reader threads, each with its own read-only connection,
  runs READ ops. In WAL mode readers never wait for a writer, ours or another
  process's, so a verification's root-key lookup is not queued behind a
  write (an in-memory database has one connection, so it reads on the writer).

Group commit: the writer thread takes every write op queued when it looks
(up to MAX_BATCH) and runs them in ONE `BEGIN IMMEDIATE ... COMMIT`, each in
its own SAVEPOINT, so one op failing rolls back only itself. Under a burst of
challenges (a token row each) that is one fsync and one copy of each touched
page in the WAL for the whole burst instead of one per token: the commit is
where a challenge's CPU went (bench/README.md). Every op still completes only
after the COMMIT that made it durable (`synchronous = FULL`).

Deadlines (every op, default 2 s): an op whose deadline passed while it
waited in its thread's queue is not started; `busy_timeout` is set to what is
left of the deadline, so a write lock held elsewhere fails the op in time; a
progress handler interrupts a statement that runs past it; and the caller's
await gives up shortly after, in case the thread is stuck anyway. Each op is
one executor hop: its generator is driven to completion on the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.store.dialect import SQLITE, Dialect
from gateway.store.locks import FileLeaderLock, ProcessLeaderLock
from gateway.store.roles import LeaderLock
from gateway.store.steps import Execute, FetchOne, Kind, Op, Step, drive
from gateway.store.types import StoreError
from gateway.store.url import MEMORY

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT = 2.0
DEFAULT_READERS = 2
GRACE = 0.5  # the caller waits this much longer than the thread's own deadline
PROGRESS_EVERY = 1000  # VM instructions between deadline checks (a key lookup needs ~50)
BUSY_STEP_MS = 50
MAX_BATCH = 64  # write ops committed together at most


class _Session:
    """A connection plus the deadline of the op it is running (for the progress handler)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.deadline = math.inf
        self.busy_ms = -1
        conn.set_progress_handler(self._past_deadline, PROGRESS_EVERY)

    def _past_deadline(self) -> int:
        return 1 if time.monotonic() > self.deadline else 0

    def wait_at_most(self, seconds: float) -> None:
        """busy_timeout = what is left of the deadline, in BUSY_STEP_MS steps.

        Set only when the step changes: a PRAGMA per op costs a statement
        compile and would churn the connection's statement cache.
        """
        ms = int(seconds * 1000) // BUSY_STEP_MS * BUSY_STEP_MS
        if ms < BUSY_STEP_MS:  # the last step: exactly what is left, never more
            ms = max(1, int(seconds * 1000))
        if ms != self.busy_ms:
            self.conn.execute(f"PRAGMA busy_timeout = {ms}")
            self.busy_ms = ms


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


def _connect(target: str, busy_timeout: float, *, writer: bool) -> sqlite3.Connection:
    if writer and target != MEMORY:
        _create_private_file(Path(target))
    # check_same_thread=False only so close() can run after the threads are gone.
    conn = sqlite3.connect(
        target, isolation_level=None, timeout=busy_timeout, check_same_thread=False
    )
    try:
        if writer and target != MEMORY:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot enable WAL mode (got {mode})")
        if writer:
            conn.execute("PRAGMA synchronous = FULL")  # a paid token must survive power loss
        else:
            conn.execute("PRAGMA query_only = 1")
    except BaseException:
        conn.close()
        raise
    return conn


def _run_step(conn: sqlite3.Connection, step: Step) -> Any:
    cursor = conn.execute(step.sql, tuple(step.params))
    if isinstance(step, Execute):
        return cursor.rowcount
    rows = cursor.fetchall()  # drains the statement (RETURNING, and no open read snapshot)
    cursor.close()
    if isinstance(step, FetchOne):
        return rows[0] if rows else None
    return rows


class SqliteDriver:
    """Connections, threads and deadlines for one SQLite file (see module docstring)."""

    dialect: Dialect = SQLITE

    def __init__(self, target: str, timeout: float, readers: int) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.target = target
        self.timeout = timeout
        self._writer = _Writer(self)
        memory = target == MEMORY
        self._readers = (
            None
            if memory or readers < 1
            else ThreadPoolExecutor(readers, thread_name_prefix="l402-sqlite-r")
        )
        self._writer_session: _Session | None = None
        self._local = threading.local()
        self._sessions: list[_Session] = []
        self._sessions_lock = threading.Lock()
        self._closed = False

    @classmethod
    async def open(
        cls, target: str, *, timeout: float = DEFAULT_TIMEOUT, readers: int = DEFAULT_READERS
    ) -> SqliteDriver:
        driver = cls(target, timeout, readers)
        try:
            conn = await asyncio.wrap_future(
                driver._writer.call(lambda: _connect(target, timeout, writer=True))
            )
        except (sqlite3.Error, OSError) as exc:
            await driver.close()
            raise StoreError(f"cannot open SQLite store {target}: {exc}") from exc
        except BaseException:
            await driver.close()
            raise
        driver._writer_session = _Session(conn)
        with driver._sessions_lock:
            driver._sessions.append(driver._writer_session)
        return driver

    @property
    def description(self) -> str:
        return f"sqlite {self.target}"

    def leader_lock(self, name: str) -> LeaderLock:
        if self.target == MEMORY:
            return ProcessLeaderLock(self, name)
        return FileLeaderLock(Path(self.target), name)

    def _reader_session(self) -> _Session:
        session: _Session | None = getattr(self._local, "session", None)
        if session is None:
            session = _Session(_connect(self.target, self.timeout, writer=False))
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _get_writer_session(self) -> _Session:
        assert self._writer_session is not None
        return self._writer_session

    async def run(self, op: Op[T], *, timeout: float | None = None) -> T:
        if self._closed:
            op.steps.close()
            raise StoreError("store is closed")
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        if op.writes or self._readers is None:
            future: asyncio.Future[T] = asyncio.wrap_future(self._writer.submit(op, deadline))
        else:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(
                self._readers, self._execute, op, deadline, self._reader_session
            )
        try:
            async with asyncio.timeout(limit + GRACE):
                return await future
        except TimeoutError:
            raise StoreError(f"{op.name}: no answer from SQLite within {limit:g}s") from None

    def _execute(self, op: Op[T], deadline: float, get_session: Callable[[], _Session]) -> T:
        """On the op's thread: start only within the deadline, and finish by it."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            op.steps.close()
            raise StoreError(f"{op.name}: not started, queued past the store's deadline")
        try:
            session = get_session()
            conn = session.conn
            session.wait_at_most(remaining)
            session.deadline = deadline
            try:
                if op.kind is Kind.TRANSACTION:
                    conn.execute("BEGIN IMMEDIATE")
                result = drive(op, lambda step: _run_step(conn, step))
                if conn.in_transaction:
                    conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            finally:
                session.deadline = math.inf
        except sqlite3.Error as exc:
            raise StoreError(f"{op.name} failed: {_describe(exc, deadline)}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._writer.stop()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            with contextlib.suppress(sqlite3.Error):
                session.conn.close()


_STOP = object()


class _Writer:
    """The writer thread: ops in arrival order, those queued together committed together."""

    def __init__(self, driver: SqliteDriver) -> None:
        self._driver = driver
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="l402-sqlite-w", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], T]) -> Future[T]:
        """Run a plain function on the writer thread (opening the connection)."""
        future: Future[T] = Future()
        self._queue.put((fn, future))
        return future

    def submit(self, op: Op[T], deadline: float) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((op, deadline, future))
        return future

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if len(item) == 2:  # call(): not an op
                fn, future = item
                _settle(future, fn)
                continue
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    extra = self._queue.get_nowait()
                except queue.Empty:
                    break
                if extra is _STOP or len(extra) == 2:
                    self._queue.put(extra)  # handled after this batch (_STOP comes last)
                    break
                batch.append(extra)
            self._run(batch)

    def _run(self, batch: list[tuple[Op[Any], float, Future[Any]]]) -> None:
        driver = self._driver
        if len(batch) == 1:
            op, deadline, future = batch[0]
            _settle(future, lambda: driver._execute(op, deadline, driver._get_writer_session))
            return
        now = time.monotonic()
        live = []
        for op, deadline, future in batch:
            if not future.set_running_or_notify_cancel():  # the caller gave up: not run
                op.steps.close()
            elif deadline <= now:
                op.steps.close()
                future.set_exception(
                    StoreError(f"{op.name}: not started, queued past the store's deadline")
                )
            else:
                live.append((op, deadline, future))
        if live:
            _commit_together(driver._get_writer_session(), live)


def _settle(future: Future[T], fn: Callable[[], T]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except BaseException as exc:
        future.set_exception(exc)


def _commit_together(session: _Session, batch: list[tuple[Op[Any], float, Future[Any]]]) -> None:
    """One transaction, a savepoint per op; results are released only after the COMMIT.

    The futures are already running (set_running_or_notify_cancel was called)."""
    conn = session.conn
    latest = max(deadline for _, deadline, _ in batch)
    outcomes: list[tuple[bool, Any]] = []
    try:
        session.wait_at_most(max(latest - time.monotonic(), 0.001))
        session.deadline = latest
        conn.execute("BEGIN IMMEDIATE")
        for index, (op, deadline, _) in enumerate(batch):
            session.deadline = deadline
            conn.execute(f"SAVEPOINT op{index}")
            try:
                result = drive(op, lambda step: _run_step(conn, step))
            except sqlite3.Error as exc:
                conn.execute(f"ROLLBACK TO op{index}")
                failure = StoreError(f"{op.name} failed: {_describe(exc, deadline)}")
                outcomes.append((False, failure))
            except BaseException as exc:  # a bug in the op: fail it, not the batch
                conn.execute(f"ROLLBACK TO op{index}")
                outcomes.append((False, exc))
            else:
                outcomes.append((True, result))
            conn.execute(f"RELEASE op{index}")
        session.deadline = latest
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        error = StoreError(f"batched write failed: {_describe(exc, latest)}")
        for op, _, future in batch:
            op.steps.close()
            future.set_exception(error)
        return
    finally:
        session.deadline = math.inf
    for (_, _, future), (ok, value) in zip(batch, outcomes, strict=True):
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _describe(exc: sqlite3.Error, deadline: float) -> str:
    text = str(exc)
    if time.monotonic() < deadline:
        return text
    if "locked" in text:
        return f"{text} (another connection held the write lock past the deadline)"
    if "interrupted" in text:
        return f"{text} (ran past the store's deadline)"
    return text
