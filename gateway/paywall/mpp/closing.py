"""Closing a session and paying its refund: one path for the client, the idle janitor and the
operator.

A close is the store's compare-and-set `open -> closed` that takes the
unspent balance as the refund owed (gateway.store.sessions); only the caller
that won it pays, once, through the Refunder (gateway.paywall.mpp.refunds).
Whoever asks — a client's `close` credential, the janitor after the idle
timeout, an operator through the admin API or `l402-gateway sessions close`
— goes through `SessionCloser.close`, so the rules (and the metrics) cannot
drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.observability.metrics import GatewayMetrics
from gateway.payment.receipts import RefundStatus
from gateway.paywall.mpp.refunds import Refunder
from gateway.store.roles import PaymentSessions
from gateway.store.types import SessionRow

# Who closed a session: the `reason` label of l402_sessions_closed_total (a closed set).
CLOSE_REASONS = ("client", "idle", "admin")


@dataclass(frozen=True)
class ClosedSession:
    """A session this call closed, as it was at the close, and what became of its refund."""

    session: SessionRow
    refund: RefundStatus


class SessionCloser:
    def __init__(self, store: PaymentSessions, refunds: Refunder, metrics: GatewayMetrics) -> None:
        self._store = store
        self.refunds = refunds
        self._metrics = metrics

    async def close(self, session_id: bytes, reason: str, now: int) -> ClosedSession | None:
        """Close an open session and pay its refund once; None when it was not open (closed
        already, by this or another caller, or unknown)."""
        if reason not in CLOSE_REASONS:
            raise ValueError(f"unknown close reason {reason!r}")
        closed = await self._store.close_session(session_id, reason, now)
        if closed is None:
            return None
        self._metrics.sessions_closed.labels(route=closed.route, reason=reason).inc()
        return ClosedSession(closed, await self.refunds.settle(closed))
