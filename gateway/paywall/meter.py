"""One metered request, start to finish: the sequence docs/metering.md describes, in one place.

The request path (proxy, HTTP/2 admission, embedded middleware) calls:

    admission = await meter.admit(terms, balance_id, scope, body, body_complete=...)
    if isinstance(admission, Exhausted): -> a fresh 402 (admission.header for L402-Balance)
    ... forward; put admission.header on the answer; feed each body chunk to
    admission.observer.feed(chunk) ...
    outcome = await meter.settle(admission, status=..., complete=..., content_type=...,
                                 content_encoding=..., header_values=...)   # in a finally

`Meter` holds no state of its own: the balance is kept by a `Ledger` (the
store's `Balances` one transaction per call, `StoreLedger`; or a process's
allotments of it, gateway.paywall.allotments, what the gateway runs), the
rules in `gateway.metering`. The reservation policy is per unit: tokens,
bytes and names of your own admit while anything is left and hold
min(estimate, available) (Aperture's admission rule, without its overdraw);
requests and session msat reserve the whole estimate or refuse.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.metering.balanceheader import format_balance
from gateway.metering.charge import Charge, decide_charge, read_usage
from gateway.metering.estimate import Estimate, estimate_request
from gateway.metering.tail import TailCollector
from gateway.metering.terms import MSAT, REQUESTS, BundleTerms
from gateway.paywall.allotments import Allotments
from gateway.store.roles import Balances
from gateway.store.types import Credit, Hold, HoldStatus, Settlement

DEFAULT_HOLD_TTL = 660  # seconds: a route's longest answer (10 min) and a minute


class Ledger(Protocol):
    """Where reservations are held and settled (the store, or a process's allotments)."""

    async def reserve(
        self, balance_id: bytes, estimate: int, *, unit: str, scope: str, minimum: int
    ) -> Hold: ...

    async def settle(self, balance_id: bytes, hold_id: bytes, actual: int) -> Settlement: ...

    async def release(self, balance_id: bytes, hold_id: bytes) -> bool: ...

    async def extend(self, balance_id: bytes, hold_id: bytes) -> bool:
        """Keep a reservation alive while its answer still flows."""
        ...


class StoreLedger:
    """Every reservation a store transaction (exact and immediate; two per request)."""

    def __init__(self, balances: Balances, hold_ttl: int, clock: Callable[[], float]) -> None:
        self._balances = balances
        self._ttl = hold_ttl
        self._clock = clock

    async def reserve(
        self, balance_id: bytes, estimate: int, *, unit: str, scope: str, minimum: int
    ) -> Hold:
        return await self._balances.reserve_units(
            balance_id,
            estimate,
            unit=unit,
            scope=scope,
            now=int(self._clock()),
            ttl=self._ttl,
            minimum=minimum,
        )

    async def settle(self, balance_id: bytes, hold_id: bytes, actual: int) -> Settlement:
        return await self._balances.settle_units(
            balance_id, hold_id, actual, now=int(self._clock())
        )

    async def release(self, balance_id: bytes, hold_id: bytes) -> bool:
        return await self._balances.release_units(balance_id, hold_id)

    async def extend(self, balance_id: bytes, hold_id: bytes) -> bool:
        return await self._balances.extend_units(
            balance_id, hold_id, now=int(self._clock()), ttl=self._ttl
        )


class AllotmentLedger:
    """A process's allotments as a `Ledger` (gateway.paywall.allotments)."""

    def __init__(self, allotments: Allotments) -> None:
        self._allotments = allotments

    async def reserve(
        self, balance_id: bytes, estimate: int, *, unit: str, scope: str, minimum: int
    ) -> Hold:
        return await self._allotments.reserve(
            balance_id, estimate, unit=unit, scope=scope, minimum=minimum
        )

    async def settle(self, balance_id: bytes, hold_id: bytes, actual: int) -> Settlement:
        return self._allotments.settle(balance_id, hold_id, actual)

    async def release(self, balance_id: bytes, hold_id: bytes) -> bool:
        return self._allotments.release(balance_id, hold_id)

    async def extend(self, balance_id: bytes, hold_id: bytes) -> bool:
        return True  # an allotment keeps its store reservation alive by rolling


class ResponseObserver:
    """Sees the answer's body go by: keeps the tail the terms need, counts the bytes."""

    __slots__ = ("_tail", "body_bytes")

    def __init__(self, terms: BundleTerms) -> None:
        self._tail = TailCollector(terms.tail_bytes) if terms.reads_tail else None
        self.body_bytes = 0

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        self.body_bytes += len(chunk)
        if self._tail is not None:
            self._tail.feed(chunk)

    @property
    def tail(self) -> TailCollector | None:
        return self._tail


@dataclass(slots=True)
class Admission:
    """A request admitted against a balance; settle it exactly once."""

    terms: BundleTerms
    balance_id: bytes
    hold_id: bytes
    reserved: int
    estimate: Estimate
    available: int  # for other requests, once this one's reservation is held
    observer: ResponseObserver = field(repr=False)

    @property
    def header(self) -> str:
        """The `L402-Balance` value for the answer."""
        return format_balance(self.available, self.terms.unit, self.reserved)


@dataclass(frozen=True, slots=True)
class Exhausted:
    """Refused: `status` says why (insufficient, unknown, mismatch)."""

    status: HoldStatus
    available: int
    unit: str

    @property
    def header(self) -> str:
        return format_balance(self.available, self.unit)


@dataclass(frozen=True, slots=True)
class Outcome:
    charge: Charge
    settlement: Settlement


def minimum_for(terms: BundleTerms, estimate: int) -> int:
    """The least a request may hold: all of its estimate for counts that cannot be split
    (requests, a session's msat), else one unit (admitted while anything is left)."""
    return estimate if terms.unit in (REQUESTS, MSAT) else 1


class Meter:
    def __init__(
        self,
        balances: Balances,
        *,
        hold_ttl: int = DEFAULT_HOLD_TTL,
        clock: Callable[[], float] = time.time,
        ledger: Ledger | None = None,
    ) -> None:
        self._balances = balances
        self.hold_ttl = hold_ttl
        self._clock = clock
        self._ledger = ledger if ledger is not None else StoreLedger(balances, hold_ttl, clock)

    def _now(self) -> int:
        return int(self._clock())

    async def credit(
        self, terms: BundleTerms, balance_id: bytes, payment_hash: bytes, scope: str
    ) -> Credit:
        """Credit one bundle for one settled payment (idempotent per payment hash)."""
        return await self._balances.credit_units(
            balance_id, payment_hash, terms.units, unit=terms.unit, scope=scope, now=self._now()
        )

    async def admit(
        self,
        terms: BundleTerms,
        balance_id: bytes,
        scope: str,
        body: bytes | None = None,
        *,
        body_complete: bool = True,
    ) -> Admission | Exhausted:
        estimate = estimate_request(terms, body, complete=body_complete)
        hold = await self._ledger.reserve(
            balance_id,
            estimate.units,
            unit=terms.unit,
            scope=scope,
            minimum=minimum_for(terms, estimate.units),
        )
        if hold.status is not HoldStatus.RESERVED or hold.hold_id is None:
            return Exhausted(hold.status, hold.available, terms.unit)
        return Admission(
            terms, balance_id, hold.hold_id, hold.amount, estimate, hold.available,
            ResponseObserver(terms),
        )  # fmt: skip

    async def release(self, admission: Admission) -> bool:
        """No answer was delivered: end the reservation without a debit."""
        return await self._ledger.release(admission.balance_id, admission.hold_id)

    async def extend(self, admission: Admission) -> bool:
        """The answer is still flowing: keep the reservation `hold_ttl` more seconds."""
        return await self._ledger.extend(admission.balance_id, admission.hold_id)

    async def settle(
        self,
        admission: Admission,
        *,
        status: int | None,
        complete: bool,
        content_type: str | None = None,
        content_encoding: str | None = None,
        header_values: Sequence[str] = (),
    ) -> Outcome:
        """Debit what the answer cost (docs/metering.md, "Settling")."""
        terms, observer = admission.terms, admission.observer
        reading = read_usage(
            terms,
            tail=observer.tail,
            content_type=content_type,
            content_encoding=content_encoding,
            header_values=header_values,
        )
        charge = decide_charge(
            terms,
            reading,
            status=status,
            complete=complete,
            body_bytes=observer.body_bytes,
            reserved=admission.reserved,
            estimate=admission.estimate.units,
        )
        settlement = await self._ledger.settle(
            admission.balance_id, admission.hold_id, charge.units
        )
        return Outcome(charge, settlement)
