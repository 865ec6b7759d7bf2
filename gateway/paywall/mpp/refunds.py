"""Paying a closed session's unspent balance back, once (docs/payment-scheme.md, threat model).

The close has already taken the refund out of the balance and recorded it as
owed (gateway.store.sessions). Here one process claims the attempt (a
compare-and-set with a deadline), pays the return invoice through the
refund payer — its own least-privilege credential, never the invoice
macaroon — with SendPaymentV2 for exactly the amount owed, and records the
outcome. Nothing is retried by design (the draft: one best-effort attempt);
a claimer that died mid-attempt is taken over after its deadline, and a
second attempt can never pay twice: the node pays one payment hash once.
"""

from __future__ import annotations

import logging
import time

from gateway.config.model import SessionPolicy
from gateway.lightning.backend import RefundPayer
from gateway.lightning.errors import BackendError
from gateway.observability.metrics import GatewayMetrics
from gateway.payment.receipts import RefundStatus
from gateway.store.roles import PaymentSessions
from gateway.store.types import SessionRow

log = logging.getLogger("gateway.refunds")


class Refunder:
    def __init__(
        self,
        store: PaymentSessions,
        payer: RefundPayer | None,
        policy: SessionPolicy,
        metrics: GatewayMetrics,
    ) -> None:
        self._store = store
        self._payer = payer
        self._policy = policy
        self._metrics = metrics

    async def settle(self, session: SessionRow) -> RefundStatus:
        """The refund of a session just closed (or found owed): paid now, or what it was."""
        state = session.refund_state
        if state == "skipped":
            return RefundStatus.SKIPPED
        if state in ("succeeded", "failed"):
            return RefundStatus(state)
        now = int(time.time())
        claim_until = now + self._policy.refund_timeout_seconds + 30
        if not await self._store.claim_refund(session.session_id, now, claim_until):
            return RefundStatus.PENDING  # another process is paying it now
        succeeded, fee, note = await self._pay(session)
        await self._store.finish_refund(session.session_id, succeeded, fee, note)
        outcome = "succeeded" if succeeded else "failed"
        self._metrics.session_refunds.labels(route=session.route, result=outcome).inc()
        if succeeded:
            self._metrics.session_refunded_msats.labels(route=session.route).inc(
                session.refund_msat or 0
            )
        else:
            log.warning(
                "session refund failed",
                extra={"route": session.route, "session_id": session.session_id.hex(),
                       "error": note},
            )  # fmt: skip
        return RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED

    async def _pay(self, session: SessionRow) -> tuple[bool, int | None, str | None]:
        if self._payer is None:
            return False, None, "no refund payer configured (lightning.refund_macaroon)"
        amount = session.refund_msat or 0
        try:
            payment = await self._payer.pay_invoice(
                session.return_invoice,
                fee_limit_msat=self._policy.refund_fee_limit_sats * 1000,
                timeout_seconds=self._policy.refund_timeout_seconds,
                amount_msat=amount,
            )
        except BackendError as exc:
            return False, None, exc.explain()[:300]
        return True, payment.fee_msat, None
