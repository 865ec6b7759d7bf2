"""Paid-request counts per route and day, batched in memory and flushed to the store.

Writing to the store on every paid request would put I/O on the hot path; a
lost batch (crash) only loses report counts, never credentials or revenue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator

from gateway.store.ledger import utc_day
from gateway.store.roles import UsageLedger
from gateway.store.types import StoreError

log = logging.getLogger("gateway.usage")
FLUSH_SECONDS = 10.0


class UsageCounter:
    def __init__(self) -> None:
        self._pending: Counter[tuple[str, str]] = Counter()

    _day: tuple[int, str] = (-1, "")  # (the last hour asked about, its UTC day)

    def add(self, route: str, now: float | None = None) -> None:
        seconds = int(now if now is not None else time.time())
        hour = seconds // 3600  # UTC days start on the hour: one date computation an hour
        if hour != self._day[0]:
            self._day = (hour, utc_day(seconds))
        self._pending[(route, self._day[1])] += 1

    async def flush(self, store: UsageLedger) -> None:
        pending, self._pending = self._pending, Counter()
        for (route, day), count in pending.items():
            try:
                await store.add_paid_requests(route, day, count)
            except StoreError:
                self._pending[(route, day)] += count  # keep it for the next flush
                log.warning(
                    "could not flush paid-request counts of route %s", route, extra={"route": route}
                )


async def run_flusher(counter: UsageCounter, store: UsageLedger) -> AsyncIterator[None]:
    """cleanup_ctx body: flush periodically, and once more on shutdown."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await counter.flush(store)

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await counter.flush(store)
