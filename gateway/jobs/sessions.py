"""Payment-scheme sessions between requests: idle ones closed and refunded, owed refunds paid.

The session draft asks a server to bound how long a session stays open; ours
closes a session idle for `payment.sessions.idle_timeout_seconds` with the
same close and one-refund rule as a client's close (gateway.store.sessions,
gateway.paywall.mpp.refunds). Refunds left owed (a process stopped between
the close and its attempt, or died mid-attempt past its claim) are paid
here. It also drops the kept answers of expired challenges and counts the
sessions open. Run once per store, under its leader lock (gateway.jobs.runner).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from gateway.config.model import SessionPolicy
from gateway.observability.metrics import GatewayMetrics
from gateway.payment.receipts import RefundStatus
from gateway.store.roles import PaymentSessions
from gateway.store.types import SessionRow, StoreError

log = logging.getLogger("gateway.sessions")


class Refunds(Protocol):
    """Pays a closed session's refund once (gateway.paywall.mpp.refunds.Refunder)."""

    async def settle(self, session: SessionRow) -> RefundStatus: ...


class Closer(Protocol):
    """Closes a session and pays its refund, the one path for every caller
    (gateway.paywall.mpp.closing.SessionCloser); None when it was not open."""

    async def close(self, session_id: bytes, reason: str, now: int) -> object | None: ...


INTERVAL_SECONDS = 15.0
BATCH = 100


class SessionJanitor:
    def __init__(
        self,
        store: PaymentSessions,
        closer: Closer,
        refunds: Refunds,
        policy: SessionPolicy,
        metrics: GatewayMetrics,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._refunds = refunds
        self._policy = policy
        self._metrics = metrics
        self._clock = clock
        self._closer = closer

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except StoreError as exc:
                log.warning("session housekeeping failed; retrying", extra={"error": str(exc)})
            await asyncio.sleep(INTERVAL_SECONDS)

    async def once(self) -> int:
        """One round; the number of sessions it closed."""
        now = int(self._clock())
        closed = 0
        idle_since = now - self._policy.idle_timeout_seconds
        for session_id in await self._store.idle_sessions(idle_since, BATCH):
            if await self._closer.close(session_id, "idle", now) is not None:
                closed += 1  # (None: closed meanwhile, the client's close won)
        for session_id in await self._store.unpaid_refunds(now, BATCH):
            session = await self._store.get_session(session_id)
            if session is not None:
                await self._refunds.settle(session)
        await self._store.sweep_answers(now)
        self._metrics.sessions_open.set(await self._store.count_open_sessions())
        return closed
