"""The work done once per store, not once per request: following settlements, pruning.

Both the proxy (gateway.server.app) and the embedded middleware (gateway.embed)
run it the same way: each job under the store's leader lock (gateway.jobs.leadership),
so N worker processes or replicas on one store run it once, and another takes
over when the holder dies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from gateway.jobs.leadership import run_while_leader
from gateway.jobs.pruning import DAY_SECONDS, TokenPruner
from gateway.jobs.sessions import SessionJanitor
from gateway.jobs.settlement import SettlementFollower
from gateway.lightning.backend import Backend
from gateway.observability.metrics import GatewayMetrics
from gateway.store.roles import Store

Job = tuple[str, Coroutine[Any, Any, None]]


def store_jobs(
    store: Store,
    lnd: Backend,
    metrics: GatewayMetrics,
    *,
    follow_settlements: bool,
    prune_after_days: int,
    clock: Callable[[], float],
    sessions: SessionJanitor | None = None,
) -> list[Job]:
    """The settlement follower (unless off), the hourly pruner (unless 0 days) and the
    Payment-scheme session janitor (when sessions are sold)."""
    jobs: list[Job] = []
    if follow_settlements:
        follower = SettlementFollower(lnd, store, metrics)
        lock = store.leader_lock("settlement")
        jobs.append(("settlement", run_while_leader(lock, "settlement", follower.run)))
    if prune_after_days > 0:
        pruner = TokenPruner(lnd, store, metrics, prune_after_days * DAY_SECONDS)
        lock = store.leader_lock("pruner")
        jobs.append(("pruner", run_while_leader(lock, "pruner", lambda: pruner.run(clock))))
    if sessions is not None:
        lock = store.leader_lock("sessions")
        jobs.append(("sessions", run_while_leader(lock, "sessions", sessions.run)))
    return jobs


@asynccontextmanager
async def running(jobs: list[Job]) -> AsyncIterator[tuple[str, ...]]:
    """Run the jobs until the block ends (then cancelled and awaited); yields their names."""
    tasks = [asyncio.create_task(work, name=f"l402-{name}") for name, work in jobs]
    try:
        yield tuple(name for name, _ in jobs)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
