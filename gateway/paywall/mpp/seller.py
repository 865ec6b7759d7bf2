"""Admitting a Payment-scheme credential: a charge, or a session action.

Every check the core can make without state is the core's
(gateway.payment.verify: binding, expiry, invoice, price, preimage); what
needs state is done here, each step atomic in the store:

- charge: the charge's row is leased like a per-request L402 token, so a
  charge buys exactly one answer across workers and replicas, and is given
  back if we fail to serve it;
- open / top-up: the deposit's row is consumed, the session created or
  credited and the answer kept, in one transaction (a retried credential
  gets the same answer, a replayed one nothing more);
- bearer: one unit of the balance is reserved before forwarding
  (gateway.paywall.mpp.holds.BearerHold);
- close: the session is closed and its refund owed in one transaction, then
  paid once (gateway.paywall.mpp.refunds).

Refusals are `PaymentAuthError`s with the core's reasons; the decision turns
them into a fresh challenge with the problem document (or a 400).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from gateway.config.model import Route
from gateway.l402.errors import L402Error
from gateway.l402.errors import Reason as L402Reason
from gateway.observability.metrics import GatewayMetrics
from gateway.payment import lightning
from gateway.payment.challenge import format_time
from gateway.payment.credential import Credential
from gateway.payment.errors import PaymentAuthError, Reason
from gateway.payment.payloads import BearerPayload, ClosePayload, OpenPayload, TopUpPayload
from gateway.payment.receipts import Receipt, RefundStatus, format_receipt
from gateway.payment.sessions import SessionState, Status
from gateway.payment.verify import (
    Binding,
    session_payload,
    verify_charge,
    verify_open,
    verify_session_owner,
    verify_top_up,
)
from gateway.paywall.holds import Hold, LeaseHold
from gateway.paywall.leases import LeaseKeeper
from gateway.paywall.mpp.closing import SessionCloser
from gateway.paywall.mpp.holds import RECEIPT, UNIT, BearerHold, ChargeHold
from gateway.paywall.mpp.offers import OfferMinter, price_sats, route_opaque
from gateway.paywall.mpp.refunds import Refunder
from gateway.paywall.refusals import GatewayAnswer, TokenInUse
from gateway.paywall.routes import RouteRuntime
from gateway.store.roles import Balances, PaymentSessions
from gateway.store.types import HoldStatus, SessionAction, SessionRow, StoredAnswer


class SellerStore(PaymentSessions, Balances, Protocol):
    """The store roles the Payment seller needs."""


class Admitted:
    """A Payment credential that buys this request: what the Sale needs."""

    __slots__ = ("credential_id", "hold", "scheme")

    def __init__(self, scheme: str, credential_id: str, hold: Hold) -> None:
        self.scheme = scheme
        self.credential_id = credential_id
        self.hold = hold


def _route_price_sats(route: Route) -> int | None:
    """The price a challenge must at least carry (None for a hooked price: it varied)."""
    return None if route.pricing is not None else price_sats(route.price_msat)


def _state(row: SessionRow | None) -> SessionState | None:
    """The core's view of a stored session (sats; what verification reads)."""
    if row is None:
        return None
    status = Status.OPEN if row.status == "open" else Status.CLOSED
    return SessionState(
        row.session_id,
        row.balance_msat // 1000,
        0,
        row.return_invoice,
        status,
        float(row.last_activity),
    )


def _answer(status: int, body: dict[str, object]) -> StoredAnswer:
    return StoredAnswer(status, json.dumps(body, separators=(",", ":")))


class PaymentSeller:
    def __init__(
        self,
        minter: OfferMinter,
        store: SellerStore,
        leases: LeaseKeeper,
        refunds: Refunder,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.minter = minter
        self._store = store
        self._leases = leases
        self._refunds = self.refunds = refunds
        self.closer = SessionCloser(store, refunds, metrics)  # shared with the admin API
        self._metrics = metrics
        self._clock = clock

    @property
    def _binding(self) -> Binding:
        return self.minter.binding

    async def admit(self, runtime: RouteRuntime, credential: Credential) -> Admitted:
        """What the credential buys on this route; raises PaymentAuthError, TokenInUse,
        GatewayAnswer (an open, top-up or close, answered by the gateway itself)."""
        intent = credential.challenge.intent
        if intent == lightning.CHARGE:
            return await self._charge(runtime, credential)
        if intent == lightning.SESSION and self.minter.policy.sessions.enabled:
            return await self._session(runtime, credential)
        raise PaymentAuthError(Reason.METHOD_UNSUPPORTED, f"intent {intent[:20]!r} is not offered")

    async def _charge(self, runtime: RouteRuntime, credential: Credential) -> Admitted:
        verified = verify_charge(
            self._binding,
            credential,
            now=self._clock(),
            expected_amount_sats=_route_price_sats(runtime.route),
            expected_opaque=route_opaque(runtime),
        )
        try:
            lease = await self._leases.take_key(verified.payment_hash, runtime.route)
        except L402Error as exc:
            if exc.reason is L402Reason.IN_USE:
                raise TokenInUse() from None
            detail = (
                "this charge was used already"
                if exc.reason is L402Reason.ALREADY_USED
                else ("this charge is unknown or revoked")
            )
            raise PaymentAuthError(Reason.UNKNOWN_CHALLENGE, detail) from None
        hold = ChargeHold(
            LeaseHold(self._leases, lease), verified.payment_hash.hex(), verified.challenge_id
        )
        return Admitted("charge", verified.payment_hash.hex(), hold)

    async def _session(self, runtime: RouteRuntime, credential: Credential) -> Admitted:
        payload = session_payload(credential)
        if isinstance(payload, OpenPayload):
            raise await self._open(runtime, credential, payload)
        if isinstance(payload, TopUpPayload):
            raise await self._top_up(runtime, credential, payload)
        if isinstance(payload, ClosePayload):
            raise await self._close(runtime, credential, payload)
        return await self._bearer(runtime, credential, payload)

    def _keep_until(self, expires_at: float) -> int:
        """Answers are kept for the challenge's life, and at least 5 minutes (the draft)."""
        return int(max(expires_at, self._clock() + 300))

    @staticmethod
    def _reply(answer: StoredAnswer, reference: str, challenge_id: str, outcome: str,
               refund: tuple[int, RefundStatus] | None = None) -> GatewayAnswer:  # fmt: skip
        headers: tuple[tuple[str, str], ...] = ()
        if answer.status < 300:
            receipt = Receipt(
                lightning.METHOD,
                reference,
                format_time(datetime.now(UTC)),
                challenge_id=challenge_id,
                refund_sats=None if refund is None else refund[0],
                refund_status=None if refund is None else refund[1],
            )
            headers = ((RECEIPT, format_receipt(receipt)),)
        return GatewayAnswer(answer.status, answer.body, headers, outcome)

    async def _open(
        self, runtime: RouteRuntime, credential: Credential, payload: OpenPayload
    ) -> GatewayAnswer:
        sessions = self.minter.policy.sessions
        now = self._clock()
        verified = verify_open(
            self._binding,
            credential,
            payload,
            now=now,
            expected_unit_sats=_route_price_sats(runtime.route),
            min_return_validity=max(
                sessions.return_invoice_min_validity_seconds, 2 * sessions.idle_timeout_seconds
            ),
        )
        _check_opaque(credential, runtime)
        session_id = verified.session_id.hex()
        answer = _answer(
            200,
            {"status": "open", "sessionId": session_id, "depositSats": verified.deposit_sats,
             "balanceSats": verified.deposit_sats, "unitSats": verified.unit_sats},
        )  # fmt: skip
        action = SessionAction(
            _answer_key("open", verified.challenge_id),
            verified.session_id,
            verified.session_id,
            runtime.name,
            verified.deposit_sats * 1000,
            int(now),
            self._keep_until(verified.expires_at),
        )
        done = await self._store.open_session(
            action, verified.return_invoice, verified.unit_sats * 1000, answer
        )
        if done.refused is not None:
            raise PaymentAuthError(Reason.UNKNOWN_CHALLENGE, done.refused)
        if done.answer is not None:
            self._metrics.sessions_opened.labels(route=runtime.name).inc()
            self._metrics.session_deposits_msats.labels(route=runtime.name).inc(action.amount_msat)
        kept = done.answer or done.replayed
        assert kept is not None
        return self._reply(kept, session_id, verified.challenge_id, "session_open")

    async def _top_up(
        self, runtime: RouteRuntime, credential: Credential, payload: TopUpPayload
    ) -> GatewayAnswer:
        now = self._clock()
        row = await self._store.get_session(payload.session_id)
        verified = verify_top_up(self._binding, credential, payload, _state(row), now=now)
        _check_opaque(credential, runtime)
        action = SessionAction(
            _answer_key("topUp", verified.challenge_id),
            verified.session_id,
            verified.payment_hash,
            runtime.name,
            verified.top_up_sats * 1000,
            int(now),
            self._keep_until(verified.expires_at),
        )
        answer = _answer(200, {"status": "ok", "sessionId": verified.session_id.hex(),
                               "topUpSats": verified.top_up_sats})  # fmt: skip
        done = await self._store.top_up_session(action, answer)
        if done.refused is not None:
            reason = Reason.SESSION_CLOSED if done.closed else Reason.UNKNOWN_CHALLENGE
            raise PaymentAuthError(reason, done.refused)
        if done.answer is not None:
            self._metrics.session_deposits_msats.labels(route=runtime.name).inc(action.amount_msat)
        kept = done.answer or done.replayed
        assert kept is not None
        return self._reply(kept, verified.session_id.hex(), verified.challenge_id, "session_top_up")

    async def _owned(
        self, runtime: RouteRuntime, credential: Credential, payload: BearerPayload | ClosePayload
    ) -> SessionRow:
        row = await self._store.get_session(payload.session_id)
        verify_session_owner(self._binding, credential, payload, _state(row), now=self._clock())
        assert row is not None
        if row.route != runtime.name:
            raise PaymentAuthError(Reason.SESSION_NOT_FOUND, "the session belongs to another route")
        return row

    async def _bearer(
        self, runtime: RouteRuntime, credential: Credential, payload: BearerPayload
    ) -> Admitted:
        row = await self._owned(runtime, credential, payload)
        now = int(self._clock())
        held = await self._store.reserve_units(
            row.session_id,
            row.unit_msat,
            unit=UNIT,
            scope=runtime.name,
            now=now,
            ttl=runtime.route.lease_seconds,
            minimum=row.unit_msat,
        )
        if held.status is not HoldStatus.RESERVED or held.hold_id is None:
            raise PaymentAuthError(
                Reason.INSUFFICIENT_BALANCE, "the session balance does not cover this request"
            )
        await self._store.touch_session(row.session_id, now)
        hold = BearerHold(
            self._store, row.session_id, held.hold_id, row.unit_msat, runtime.name,
            runtime.route.lease_seconds,
        )  # fmt: skip
        return Admitted("session", row.session_id.hex(), hold)

    async def _settled_in_flight(self, session_id: bytes) -> None:
        """Let the session's requests still being answered settle first (bounded), so the
        refund counts what they did not use. One still running after the wait keeps its
        reservation: what it leaves unused stays on the closed session (docs/payment-scheme.md)."""
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        while time.monotonic() < deadline:
            balance = await self._store.get_balance(session_id, now=int(self._clock()))
            if balance is None or balance.held == 0:
                return
            await asyncio.sleep(CLOSE_POLL_SECONDS)

    async def _close(
        self, runtime: RouteRuntime, credential: Credential, payload: ClosePayload
    ) -> GatewayAnswer:
        challenge_id = credential.challenge.id
        key = _answer_key("close", challenge_id)
        now = int(self._clock())
        replay = await self._store.replayed_answer(key, now)
        if replay is not None:
            return GatewayAnswer(replay.status, replay.body, (), "session_close")
        row = await self._owned(runtime, credential, payload)
        await self._settled_in_flight(row.session_id)
        done = await self.closer.close(row.session_id, "client", int(self._clock()))
        if done is None:
            raise PaymentAuthError(Reason.SESSION_CLOSED, "the session is closed")
        closed, status = done.session, done.refund
        refund_sats = (closed.refund_msat or 0) // 1000
        answer = _answer(200, {"status": "closed", "refundSats": refund_sats,
                               "refundStatus": status.value})  # fmt: skip
        await self._store.keep_answer(key, answer, self._keep_until(now))
        return self._reply(answer, row.session_id.hex(), challenge_id, "session_close",
                           (refund_sats, status))  # fmt: skip


CLOSE_WAIT_SECONDS = 10.0
CLOSE_POLL_SECONDS = 0.2


def _answer_key(action: str, challenge_id: str) -> str:
    """Answers are kept per action and challenge: a close may echo the challenge a
    top-up used (the draft lets bearer and close echo any unexpired one of ours)."""
    return f"{action}:{challenge_id}"


def _check_opaque(credential: Credential, runtime: RouteRuntime) -> None:
    """Deposits are bound to their route, as charges are."""
    if credential.challenge.opaque_object() != route_opaque(runtime):
        raise PaymentAuthError(Reason.UNKNOWN_CHALLENGE, "challenge was issued for another route")
