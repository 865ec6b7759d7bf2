"""One holder at a time across gateway processes: the settlement follower, the pruner.

A gateway may run as N worker processes (or replicas sharing PostgreSQL).
Work that should run once (following LND's settlements, pruning) runs only
in the process holding a named leader lock; when that process dies, the
operating system (SQLite: an flock on a side file) or the database
(PostgreSQL: a session advisory lock) releases the lock and another process
takes over on its next poll.

Leadership is an efficiency guarantee, not a safety one: both jobs stay
correct when two processes run them at once for a moment (the ledger books a
payment hash once; the delete re-checks every row). So a holder that cannot
confirm its lock stops its task at once rather than risk running twice for
long, and a process that is unsure simply tries again later.

The locks come from the store (`gateway.store.roles.Leadership.leader_lock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.store.roles import LeaderLock

log = logging.getLogger("gateway.leadership")

POLL_INTERVAL = 5.0  # a follower tries to become leader this often
CHECK_INTERVAL = 5.0  # a leader confirms it still holds the lock this often


async def run_while_leader(
    lock: LeaderLock,
    name: str,
    coro_factory: Callable[[], Coroutine[Any, Any, object]],
    *,
    poll_interval: float = POLL_INTERVAL,
    check_interval: float = CHECK_INTERVAL,
    on_change: Callable[[bool], None] | None = None,
) -> None:
    """Wait to become leader, run `coro_factory()` while leading, stop it if leadership is lost.

    Runs until cancelled: a task that ends or fails gives the lock up and the
    process contends again after `poll_interval` (another process may take
    over meanwhile). Cancelling stops the task and releases the lock.
    `on_change(True/False)` reports becoming and ceasing to be leader.
    """
    while True:
        try:
            acquired = await lock.try_acquire()
        except Exception as exc:  # the store is down: not leader, try again later
            log.warning("leader election failed", extra={"task": name, "error": str(exc)})
            acquired = False
        if acquired:
            try:
                await _lead(lock, name, coro_factory, check_interval, on_change)
            finally:
                await _release(lock, name)
        await asyncio.sleep(poll_interval)


async def _lead(
    lock: LeaderLock,
    name: str,
    coro_factory: Callable[[], Coroutine[Any, Any, object]],
    check_interval: float,
    on_change: Callable[[bool], None] | None,
) -> None:
    log.info("became leader", extra={"task": name})
    if on_change is not None:
        on_change(True)
    task = asyncio.create_task(coro_factory(), name=f"leader:{name}")
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=check_interval)
            if done:
                if not task.cancelled() and task.exception() is not None:
                    log.error(
                        "leader task failed; giving up leadership",
                        exc_info=task.exception(),
                        extra={"task": name},
                    )
                return
            if not await _confirmed(lock, name):
                log.warning("leadership lost; stopping the task", extra={"task": name})
                return
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if on_change is not None:
            on_change(False)


async def _confirmed(lock: LeaderLock, name: str) -> bool:
    try:
        return await lock.still_held()
    except Exception as exc:
        log.warning("cannot confirm leadership", extra={"task": name, "error": str(exc)})
        return False


async def _release(lock: LeaderLock, name: str) -> None:
    try:
        await asyncio.shield(lock.release())
    except Exception as exc:  # the lock dies with its connection or file anyway
        log.warning("could not release leadership", extra={"task": name, "error": str(exc)})
