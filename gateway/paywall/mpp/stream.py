"""A session's streamed answer, billed per event as it flows (draft-lightning-session).

The bearer request reserved one unit before it was forwarded. When its answer
is an event stream, every event that delivers data costs one unit: units are
reserved in blocks ahead of the events (one store write per block, not per
event), and when the balance cannot cover the next event the stream pauses
there: a `payment-need-topup` event goes out, and the stream resumes as soon
as a top-up makes a unit available, or ends with `session-timeout` after
`TOP_UP_WAIT_SECONDS`. Before the OpenAI-style `[DONE]` marker a
`payment-receipt` event says what the stream cost. When the answer ends
(complete, cut, or abandoned), exactly the events delivered are debited and
the rest of every reservation released.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol

from gateway.payment import lightning
from gateway.payment.challenge import format_time
from gateway.payment.eventstream import EventSplitter, billable, is_done
from gateway.payment.receipts import (
    EVENT_NEED_TOPUP,
    EVENT_RECEIPT,
    EVENT_SESSION_TIMEOUT,
    BalanceEvent,
    format_sse_event,
)
from gateway.paywall.holds import Send
from gateway.store.roles import Balances, PaymentSessions
from gateway.store.types import HoldStatus

UNIT = "msat"
BLOCK_UNITS = 16  # units reserved at a time ahead of the stream
TOP_UP_WAIT_SECONDS = 60.0
TOP_UP_POLL_SECONDS = 1.0


class SessionStore(Balances, PaymentSessions, Protocol):
    """What a streamed session answer needs of the store."""


class SessionStream:
    """The `BodyWatch` of one bearer request whose answer is an event stream."""

    def __init__(
        self,
        store: SessionStore,
        session_id: bytes,
        route: str,
        unit_msat: int,
        first_hold: tuple[bytes, int],
        ttl: int,
        *,
        wait_seconds: float = TOP_UP_WAIT_SECONDS,
        poll_seconds: float = TOP_UP_POLL_SECONDS,
    ) -> None:
        self._store = store
        self._session_id = session_id
        self._route = route
        self._unit = unit_msat
        self._holds = [first_hold]
        self._reserved = first_hold[1] // unit_msat
        self._billed = 0
        self._ttl = ttl
        self._wait = wait_seconds
        self._poll = poll_seconds
        self._splitter = EventSplitter()
        self.ended = False
        self.shortfall = 0

    @property
    def billed_units(self) -> int:
        return self._billed

    async def feed(self, chunk: bytes, send: Send) -> None:
        out = bytearray()
        for event in self._splitter.feed(chunk):
            if is_done(event):
                out += self._receipt()
            elif billable(event) and self._billed == self._reserved:
                if out:
                    await send(bytes(out))
                    out.clear()
                if not await self._more(send):
                    self.ended = True
                    return
            if billable(event):
                self._billed += 1
            out += event
        if out:
            await send(bytes(out))

    async def drain(self, send: Send) -> None:
        """The stream is over: send what is held back, then settle before the body's end
        reaches the client (a close sent right after the stream sees the final balance)."""
        rest = self._splitter.rest()
        if rest:  # an unterminated last event: delivered, never dispatched by a client
            await send(rest)
        self.shortfall = await self.settle()

    async def _reserve(self) -> bool:
        now = int(time.time())
        held = await self._store.reserve_units(
            self._session_id,
            BLOCK_UNITS * self._unit,
            unit=UNIT,
            scope=self._route,
            now=now,
            ttl=self._ttl,
            minimum=self._unit,
        )
        if held.status is not HoldStatus.RESERVED or held.hold_id is None:
            return False
        self._holds.append((held.hold_id, held.amount))
        self._reserved += held.amount // self._unit
        await self._store.touch_session(self._session_id, now)
        return True

    async def _more(self, send: Send) -> bool:
        """Units for the next event: now, or after a top-up within the wait."""
        if await self._reserve():
            return True
        await send(format_sse_event(EVENT_NEED_TOPUP, self._balance_event().to_json()))
        deadline = time.monotonic() + self._wait
        while time.monotonic() < deadline:
            await asyncio.sleep(self._poll)  # a top-up arrives as another request
            if await self._reserve():
                return True
        await send(format_sse_event(EVENT_SESSION_TIMEOUT, self._balance_event().to_json()))
        return False

    def _balance_event(self) -> BalanceEvent:
        return BalanceEvent(
            self._session_id.hex(), self._billed * self._unit // 1000, self._unit // 1000
        )

    def _receipt(self) -> bytes:
        return format_sse_event(
            EVENT_RECEIPT,
            {
                "method": lightning.METHOD,
                "reference": self._session_id.hex(),
                "status": "success",
                "timestamp": format_time(datetime.now(UTC)),
                "spent": self._billed * self._unit // 1000,
                "units": self._billed,
            },
        )

    async def settle(self) -> int:
        """Debit the events delivered, release the rest; the msat that could not be debited."""
        owed = self._billed * self._unit
        short = 0
        now = int(time.time())
        holds, self._holds = self._holds, []
        for hold_id, amount in holds:
            take = min(owed, amount)
            if take:
                settled = await self._store.settle_units(self._session_id, hold_id, take, now=now)
                short += settled.shortfall
                owed -= take
            else:
                await self._store.release_units(self._session_id, hold_id)
        return short + owed
