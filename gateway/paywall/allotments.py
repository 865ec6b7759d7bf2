"""Metered balances without a store write per request: each process draws on an allotment.

Two store transactions per paid request (reserve, settle) cost about twice
the CPU of the rest of the request (bench/meter_bench.py). So a process
reserves a *chunk* of a balance in the store (one reservation, `roll_units`),
holds and settles its requests against that chunk in memory, and settles the
chunk with the store in one transaction that also reserves the next one:

- a request holds min(estimate, what is free) of its process's allotment; when
  too little is free, the process rolls its allotment (debit what its requests
  spent, keep what those in flight hold, reserve up to CHUNK_REQUESTS times the
  estimate more) and decides with what it got; no request runs its own store
  transaction;
- an answer settles locally (what it used, up to what the allotment has free
  beside the requests in flight); what it used beyond that is debited at the
  next roll from units no other reservation holds, else it is a shortfall;
- an allotment idle for IDLE_SECONDS is settled and given back, and an active
  one rolls every LIFETIME_SECONDS (keeping its store reservation alive);
  shutdown settles them all.

The store stays the one authority: allotments are ordinary reservations, so
whatever processes and replicas do, the sum debited never exceeds the sum
credited. What changes is visibility: the store's balance lags a process's
answers by at most LIFETIME_SECONDS (IDLE_SECONDS once idle), and units in
another process's allotment are invisible to this one until it is given back;
a request that finds too little while other reservations hold units waits
(up to WAIT_FOR_OTHERS_SECONDS) for them to come back before it is refused.
If a process dies, its chunk's reservation expires after ALLOTMENT_TTL and
what its requests spent since its last roll is not debited (served unpaid,
bounded by one chunk per balance).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.store.roles import Balances
from gateway.store.types import Hold, HoldStatus, Settlement, SettleStatus, StoreError

log = logging.getLogger("gateway.meter")

CHUNK_REQUESTS = 32  # a roll reserves this many estimates (or what is left)
IDLE_SECONDS = 0.25
LIFETIME_SECONDS = 2.0
TICK_SECONDS = 0.1
ALLOTMENT_TTL = 120  # store seconds: a dead process's chunk comes back after this
WAIT_FOR_OTHERS_SECONDS = LIFETIME_SECONDS + 1.0
RETRY_SECONDS = 0.1

# (scope, unit, units debited at a roll beyond what requests spent, shortfall): for metrics.
RollReport = Callable[[str, str, int, int], None]


@dataclass(eq=False)
class _Allotment:
    balance_id: bytes
    unit: str
    scope: str
    hold_id: bytes | None = None  # the store reservation backing it
    granted: int = 0  # what that reservation holds
    spent: int = 0  # settled locally, not yet debited in the store
    over: int = 0  # used beyond what was free, to try at the next roll
    held: int = 0  # local holds of requests in flight
    holds: dict[bytes, int] = field(default_factory=dict)
    outside: int = 0  # what the store had available beyond it, at the last roll
    touched: float = 0.0
    rolled: float = 0.0
    rolling: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def free(self) -> int:
        return max(0, self.granted - self.spent - self.held)


class Allotments:
    """The per-process ledger in front of the store's `Balances` (see the module docstring)."""

    def __init__(
        self,
        balances: Balances,
        clock: Callable[[], float],
        report: RollReport | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._balances = balances
        self._clock = clock
        self._report = report
        self._monotonic = monotonic
        self._allotments: dict[bytes, _Allotment] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._allotments)

    def _now(self) -> int:
        return int(self._clock())

    async def reserve(
        self, balance_id: bytes, estimate: int, *, unit: str, scope: str, minimum: int
    ) -> Hold:
        """Hold min(estimate, free) if at least `minimum` is free (see module docstring)."""
        waited_since = None
        while True:
            found = self._allotments.get(balance_id)
            if found is not None and (found.unit != unit or found.scope != scope):
                return Hold(HoldStatus.MISMATCH)
            if found is not None and not found.rolling.locked() and found.free >= estimate:
                return self._hold(found, estimate)
            allotment = found or self._allotments.setdefault(
                balance_id, _Allotment(balance_id, unit, scope)
            )
            if allotment.rolling.locked():  # another request is rolling it: wait, then look
                async with allotment.rolling:
                    pass
                continue
            # A chunk grows while it is used up quickly (fewer rolls), within the store's
            # share rule (at most half of what is left beyond the requests in flight).
            want = max(estimate * CHUNK_REQUESTS, 2 * allotment.granted) - allotment.free
            status, others = await self._roll(allotment, want, needed=estimate - allotment.free)
            if status in (HoldStatus.UNKNOWN, HoldStatus.MISMATCH):
                self._forget(allotment)
                return Hold(status)
            amount = min(estimate, allotment.free)
            if amount >= max(minimum, 1):
                return self._hold(allotment, amount)
            # Too little: units held elsewhere (another process's allotment) may come back.
            now = self._monotonic()
            waited_since = waited_since if waited_since is not None else now
            if others <= 0 or now - waited_since >= WAIT_FOR_OTHERS_SECONDS:
                return Hold(HoldStatus.INSUFFICIENT, available=allotment.free + allotment.outside)
            await asyncio.sleep(RETRY_SECONDS)

    def hold_now(self, balance_id: bytes, estimate: int, unit: str, scope: str) -> Hold | None:
        """`reserve`'s usual case without an await: the whole estimate from an allotment
        that has it free and is not rolling; None when `reserve` must decide (a roll, a
        wait, a refusal, a mismatch)."""
        found = self._allotments.get(balance_id)
        if (
            found is None
            or found.free < estimate
            or found.unit != unit
            or found.scope != scope
            or found.rolling.locked()
        ):
            return None
        return self._hold(found, estimate)

    def _hold(self, allotment: _Allotment, amount: int) -> Hold:
        hold_id = next(self._ids).to_bytes(8, "big")
        allotment.holds[hold_id] = amount
        allotment.held += amount
        allotment.touched = self._monotonic()
        return Hold(HoldStatus.RESERVED, hold_id, amount, allotment.free + allotment.outside)

    def settle(self, balance_id: bytes, hold_id: bytes, actual: int) -> Settlement:
        """Debit what the answer used from the allotment (beyond it: at the next roll)."""
        allotment = self._allotments.get(balance_id)
        amount = allotment.holds.pop(hold_id, None) if allotment is not None else None
        if allotment is None or amount is None:
            return Settlement(SettleStatus.UNKNOWN)
        allotment.held -= amount
        room = max(0, allotment.granted - allotment.spent - allotment.held)
        debit = min(actual, room)
        allotment.spent += debit
        allotment.over += actual - debit
        allotment.touched = self._monotonic()
        left = allotment.free + allotment.outside
        return Settlement(SettleStatus.SETTLED, debit, 0, left, left)

    def release(self, balance_id: bytes, hold_id: bytes) -> bool:
        allotment = self._allotments.get(balance_id)
        amount = allotment.holds.pop(hold_id, None) if allotment is not None else None
        if allotment is None or amount is None:
            return False
        allotment.held -= amount
        allotment.touched = self._monotonic()
        return True

    async def _roll(
        self, allotment: _Allotment, want: int, needed: int = 0
    ) -> tuple[HoldStatus, int]:
        """Settle the allotment's reservation and hold the next: (status, others' holds).

        Of what is left beyond the requests in flight, a roll takes `want` but at most
        half (so another process finds the other half), and never less than `needed`."""
        async with allotment.rolling:
            spent, over, keep = allotment.spent, allotment.over, allotment.held
            roll = await self._balances.roll_units(
                allotment.balance_id,
                allotment.hold_id,
                debit=spent + over,
                keep=keep,
                want=max(0, want),
                minimum=0,
                unit=allotment.unit,
                scope=allotment.scope,
                now=self._now(),
                ttl=ALLOTMENT_TTL,
                share=max(0, needed),
            )
            # Answers settled while the store worked stay for the next roll.
            allotment.spent -= spent
            allotment.over -= over
            allotment.hold_id = roll.hold_id
            # Holds released meanwhile were in `keep`: they are free units of the new chunk.
            allotment.granted = roll.amount
            allotment.outside = roll.available
            allotment.rolled = self._monotonic()
            if self._report is not None and (roll.debited > spent or roll.shortfall):
                self._report(
                    allotment.scope, allotment.unit, max(0, roll.debited - spent), roll.shortfall
                )
            return roll.status, roll.others

    def _forget(self, allotment: _Allotment) -> None:
        if self._allotments.get(allotment.balance_id) is allotment and not allotment.holds:
            del self._allotments[allotment.balance_id]

    async def tend(self) -> int:
        """One pass: give idle allotments back, roll old ones; the number of store calls."""
        now = self._monotonic()
        calls = 0
        for allotment in list(self._allotments.values()):
            if allotment.rolling.locked():
                continue
            idle = not allotment.holds and now - allotment.touched >= IDLE_SECONDS
            if idle:
                await self._roll(allotment, 0)
                if not allotment.holds and allotment.hold_id is None:
                    self._forget(allotment)
                calls += 1
            elif now - allotment.rolled >= LIFETIME_SECONDS:
                await self._roll(allotment, allotment.free)
                calls += 1
        return calls

    async def run(self) -> None:
        """Tend the allotments until cancelled (every process runs its own)."""
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tend()
            except StoreError as exc:
                log.warning("metered allotments not settled; retried", extra={"error": str(exc)})

    async def close(self) -> None:
        """Shutdown: settle every allotment and give back what is free."""
        for allotment in list(self._allotments.values()):
            try:
                await self._roll(allotment, 0)
            except StoreError as exc:
                log.warning(
                    "metered allotment not settled at shutdown; its reservation lapses",
                    extra={"error": str(exc)},
                )
            self._forget(allotment)
