"""What a Payment credential holds until its answer: a charge's single use, a bearer's debit.

A charge is a single-use row (gateway.paywall.holds.LeaseHold): consumed when
the buyer was served, given back otherwise, and its answer carries a
`Payment-Receipt`. A session bearer request reserves one unit of the
session's balance (msat) before it is forwarded: the balance can never be
overdrawn by concurrent requests, and the reservation is debited when the
buyer was served, released otherwise.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from gateway.payment import lightning
from gateway.payment.challenge import format_time
from gateway.payment.eventstream import is_event_stream
from gateway.payment.receipts import Receipt, format_receipt
from gateway.paywall.holds import NOTHING, BodyWatch, LeaseHold, Settled
from gateway.paywall.mpp.stream import SessionStore, SessionStream

RECEIPT = "Payment-Receipt"
UNIT = "msat"


def receipt_headers(reference: str, challenge_id: str | None) -> tuple[tuple[str, str], ...]:
    """A success answer's receipt (`Cache-Control: private`: it names this buyer's payment)."""
    receipt = Receipt(
        lightning.METHOD,
        reference,
        format_time(datetime.now(UTC)),
        challenge_id=challenge_id,
    )
    return ((RECEIPT, format_receipt(receipt)), ("Cache-Control", "private"))


class ChargeHold:
    """A charge credential: one request, consumed when served, with its receipt."""

    __slots__ = ("_challenge_id", "_lease", "_reference")

    watch: BodyWatch | None = None

    def __init__(self, lease: LeaseHold, reference: str, challenge_id: str) -> None:
        self._lease = lease
        self._reference = reference
        self._challenge_id = challenge_id

    async def answered(self, status: int, served: bool, content_type: str = "") -> Settled:
        settled = await self._lease.answered(status, served)
        if not served or status >= 300:
            return settled
        return Settled(receipt_headers(self._reference, self._challenge_id), settled.note)

    async def finished(self, complete: bool) -> str | None:
        return None

    async def release(self) -> None:
        await self._lease.release()


class BearerHold:
    """One unit of a session's balance, reserved before the request is forwarded; an
    event-stream answer is billed per event as it flows (gateway.paywall.mpp.stream)."""

    __slots__ = ("_hold_id", "_route", "_session_id", "_store", "_ttl", "_unit_msat", "watch")

    def __init__(
        self,
        store: SessionStore,
        session_id: bytes,
        hold_id: bytes,
        unit_msat: int,
        route: str,
        ttl: int,
    ) -> None:
        self._store = store
        self._session_id = session_id
        self._hold_id = hold_id
        self._unit_msat = unit_msat
        self._route = route
        self._ttl = ttl
        self.watch: SessionStream | None = None

    async def answered(self, status: int, served: bool, content_type: str = "") -> Settled:
        if not served:
            await self.release()
            return NOTHING
        headers = receipt_headers(self._session_id.hex(), None) if status < 300 else ()
        if is_event_stream(content_type):  # billed per event, settled when it ends
            self.watch = SessionStream(
                self._store,
                self._session_id,
                self._route,
                self._unit_msat,
                (self._hold_id, self._unit_msat),
                self._ttl,
            )
            return Settled(headers)
        settled = await self._store.settle_units(
            self._session_id, self._hold_id, self._unit_msat, now=int(time.time())
        )
        if settled.shortfall:
            return Settled(headers, "session debit short: the reservation had lapsed")
        return Settled(headers)

    async def finished(self, complete: bool) -> str | None:
        if self.watch is None:
            return None
        short = await self.watch.settle() + self.watch.shortfall  # settle: a no-op if drained
        return f"session stream debit short by {short} msat" if short else None

    async def release(self) -> None:
        if self.watch is not None:
            await self.watch.settle()
        else:
            await self._store.release_units(self._session_id, self._hold_id)
