"""Housekeeping of metered balances and freebie counters, once per store (leader-locked).

Every minute: delete reservations that expired over an hour ago (a crashed
worker's; `sweep_holds`), freebie counters of periods that are over
(`sweep_allowances`), each in bounded batches, and refresh the
`l402_meter_balance_outstanding_units{route, unit}` gauge: what buyers have
paid for and not used yet, summed per route in the store (so it is right
whichever process or replica served the requests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from gateway.observability.metrics import GatewayMetrics
from gateway.store.types import StoreError

log = logging.getLogger("gateway.meter")

INTERVAL = 60.0
SWEEP_BATCH = 1000  # what one store sweep call deletes at most
MAX_BATCHES = 20  # per pass: a backlog is worked off over several minutes


class MeterStore(Protocol):
    async def sweep_holds(self, now: int) -> int: ...

    async def sweep_allowances(self, now: int) -> int: ...

    async def outstanding_units(self) -> list[tuple[str, str, int]]: ...


class MeterKeeper:
    def __init__(
        self, store: MeterStore, metrics: GatewayMetrics, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock

    async def once(self) -> tuple[int, int]:
        """One pass: (reservations swept, allowances swept); the gauge refreshed."""
        now = int(self._clock())
        holds = allowances = 0
        for _ in range(MAX_BATCHES):
            swept = await self._store.sweep_holds(now)
            holds += swept
            if swept < SWEEP_BATCH:
                break
        for _ in range(MAX_BATCHES):
            swept = await self._store.sweep_allowances(now)
            allowances += swept
            if swept < SWEEP_BATCH:
                break
        gauge = self._metrics.meter_balance_outstanding
        for scope, unit, units in await self._store.outstanding_units():
            gauge.labels(route=scope, unit=unit).set(units)
        return holds, allowances

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except StoreError as exc:
                log.warning("meter housekeeping failed; retried", extra={"error": str(exc)})
            await asyncio.sleep(INTERVAL)
