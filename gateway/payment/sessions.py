"""Session state and its transitions, as pure functions over an immutable value.

The seller persists `SessionState` keyed by `session_id` (the deposit's
payment hash) and applies these transitions inside one store transaction
each (compare-and-set on `status`, `deposit_sats`, `spent_sats`): the
functions decide, the store makes the decision atomic. A closed session is
kept forever (its preimage must never open anything again).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from gateway.payment.errors import PaymentAuthError, Reason
from gateway.payment.receipts import BalanceEvent, RefundStatus


class Status(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class SessionState:
    session_id: bytes
    deposit_sats: int  # everything deposited (open + top-ups)
    spent_sats: int
    return_invoice: str = field(repr=False)
    status: Status
    last_activity: float  # unix seconds: open, bearer, top-up

    @property
    def balance_sats(self) -> int:
        return self.deposit_sats - self.spent_sats


def opened(session_id: bytes, deposit_sats: int, return_invoice: str, now: float) -> SessionState:
    return SessionState(session_id, deposit_sats, 0, return_invoice, Status.OPEN, now)


def _require_open(state: SessionState) -> None:
    if state.status is not Status.OPEN:
        raise PaymentAuthError(Reason.SESSION_CLOSED, "the session is closed")


def credit(state: SessionState, sats: int, now: float) -> SessionState:
    """A verified top-up."""
    _require_open(state)
    if sats <= 0:
        raise ValueError("a top-up credits a positive amount")
    return replace(state, deposit_sats=state.deposit_sats + sats, last_activity=now)


def debit(state: SessionState, sats: int, now: float) -> SessionState:
    """One unit of service; INSUFFICIENT_BALANCE when the balance cannot cover it."""
    _require_open(state)
    if sats <= 0:
        raise ValueError("a debit is a positive amount")
    if state.balance_sats < sats:
        raise PaymentAuthError(Reason.INSUFFICIENT_BALANCE, "the session balance is too low")
    return replace(state, spent_sats=state.spent_sats + sats, last_activity=now)


def touch(state: SessionState, now: float) -> SessionState:
    _require_open(state)
    return replace(state, last_activity=now)


def closed(state: SessionState) -> tuple[SessionState, int]:
    """Mark closed BEFORE any refund is attempted; returns the refund owed."""
    _require_open(state)
    return replace(state, status=Status.CLOSED), state.balance_sats


def is_idle(state: SessionState, now: float, idle_timeout: float) -> bool:
    """True when an open session saw no activity for `idle_timeout` seconds."""
    return state.status is Status.OPEN and now - state.last_activity >= idle_timeout


def refund_status(refund_sats: int, paid: bool | None) -> RefundStatus:
    """skipped when nothing is owed (no payment may be attempted), else the attempt's result."""
    if refund_sats == 0:
        return RefundStatus.SKIPPED
    if paid is None:
        raise ValueError("a refund was owed: say whether its one attempt succeeded")
    return RefundStatus.SUCCEEDED if paid else RefundStatus.FAILED


def close_body(refund_sats: int, status: RefundStatus) -> dict[str, Any]:
    """The close response's JSON body."""
    return {"status": "closed", "refundSats": refund_sats, "refundStatus": status.value}


TOP_UP_BODY: dict[str, Any] = {"status": "ok"}


def need_top_up(state: SessionState, unit_sats: int) -> BalanceEvent:
    """The payment-need-topup (or session-timeout) event data at exhaustion."""
    return BalanceEvent(state.session_id.hex(), state.spent_sats, unit_sats)
