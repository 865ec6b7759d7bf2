"""The rehearsal's Payment-scheme step: a charge on route A, a session on text generation.

Run by `run_ep212` after the L402 steps when the settings name a session URL
(`OA_LIGHTNING_OPS_EP212_PAYMENT_SESSION_URL`; `make rehearse` sets it):

  payment.charge -- route A again, but bought with the Payment scheme's `charge`
      intent (a client preferring it, with no credential cache: a charge buys one
      request): 402, one payment, 2xx with a `Payment-Receipt`.
  payment.session -- a prepaid session on the text-generation route: open (the
      deposit checked against the deposit cap before it is paid, the refund
      invoice on the buyer's own node), one streamed completion billed per event
      (topping up when the seller asks), close; the seller's refund must be
      reported as paid and add up: deposits - debits = refund.

Both outcomes go to summary.json (`paymentScheme`), so the rehearsal compares
them with the seller's /metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import aiohttp

from gateway.buyer.artifacts import Artifacts
from gateway.buyer.cache import CredentialCache
from gateway.buyer.client import L402Client, Outcome
from gateway.buyer.errors import BuyerError, Ep212Error
from gateway.buyer.offers import Scheme
from gateway.buyer.payers import LndPayer, Payer
from gateway.buyer.policy import SpendPolicy
from gateway.buyer.session import LndReturnInvoices, PaymentSession
from gateway.buyer.settings import Ep212Settings

if TYPE_CHECKING:
    from gateway.lightning.lnd.node import LndClient


class PaymentStep:
    """The two purchases; `fail` records an error event and returns the run's error."""

    def __init__(
        self,
        settings: Ep212Settings,
        http: aiohttp.ClientSession,
        payer: Payer,
        artifacts: Artifacts,
        request_id: str,
    ) -> None:
        self.settings, self.http, self.payer = settings, http, payer
        self.artifacts, self.request_id = artifacts, request_id

    def fail(self, stage: str, code: str, message: str) -> Ep212Error:
        details = {"code": code, "error": message}
        self.artifacts.event(stage, f"{self.request_id}-{stage}", "error", details)
        return Ep212Error(code, f"{stage}: {message}")

    async def run(self, session_url: str) -> dict[str, Any]:
        return {"charge": await self.charge(), "session": await self.session(session_url)}

    async def charge(self) -> dict[str, Any]:
        stage, url = "payment.charge", self.settings.route_a_url
        policy = SpendPolicy(
            max_spend_msats=self.settings.max_spend_msats,
            allowed_hosts=self.settings.hosts,
            expected_network=self.settings.network,
        )
        client = L402Client(
            self.http, self.payer, policy, CredentialCache(), preference=(Scheme.PAYMENT,)
        )
        try:
            result = await client.fetch("GET", url, request_id=f"{self.request_id}-charge")
        except BuyerError as exc:
            raise self.fail(stage, exc.code, exc.message) from None
        fields: dict[str, Any] = {
            "scheme": result.scheme.value,
            "intent": "charge",
            "endpointUrl": url,
            "challengeStatusCode": result.challenge_status,
            "paidStatusCode": result.status,
            "outcome": result.outcome.value,
            "paidAmountMsats": result.payment.amount_msats if result.payment else None,
            "receipt": result.receipt.to_json() if result.receipt is not None else None,
        }
        paid = result.outcome is Outcome.PAID and result.ok and result.scheme is Scheme.PAYMENT
        if not paid or result.receipt is None:
            raise self.fail(stage, "charge_not_paid", f"{fields}")
        self.artifacts.event(stage, f"{self.request_id}-charge", "ok", dict(fields))
        return fields

    async def session(self, url: str) -> dict[str, Any]:
        stage = "payment.session"
        if not isinstance(self.payer, LndPayer):
            raise self.fail(stage, "missing_setting", "a session needs an LND payer")
        host = (urlsplit(url).hostname or "").lower()
        policy = SpendPolicy(
            max_spend_msats=self.settings.max_spend_msats,
            allowed_hosts=[host],
            expected_network=self.settings.network,
            max_deposit_msats=self.settings.max_deposit_msats,
        )
        step_id = f"{self.request_id}-session"

        def event(name: str, outcome: str, details: dict[str, Any]) -> None:
            self.artifacts.event(name, step_id, outcome, details)

        session = PaymentSession(
            self.http,
            self.payer,
            LndReturnInvoices(cast("LndClient", self.payer.client)),
            policy,
            url,
            host=host,
            request_id=step_id,
            events=event,
            method="POST",
        )
        events = 0
        try:
            await session.open()
            try:
                async for _ in session.stream("POST", json=dict(self.settings.sats4ai_body)):
                    events += 1
            finally:
                await session.close()
        except BuyerError as exc:
            raise self.fail(stage, exc.code, exc.message) from None
        summary = session.summary()
        summary["streamEvents"] = events
        problems = session_problems(summary)
        if problems:
            raise self.fail(stage, "session_books_differ", "; ".join(problems))
        outcome = {"sessionId": summary["sessionId"], "refund": summary["refund"]}
        self.artifacts.event(stage, step_id, "ok", outcome)
        return summary


def session_problems(summary: Mapping[str, Any]) -> list[str]:
    """What is wrong with a finished session's books, as the buyer saw them."""
    problems = []
    refund = summary.get("refund") or {}
    debits = summary.get("debits") or {}
    if debits.get("served") != 1 or debits.get("streams") != 1:
        problems.append(f"one streamed request expected, got {debits}")
    if refund.get("refundStatus") != "succeeded":
        problems.append(f"refund not paid: {refund.get('refundStatus')!r}")
    deposited, debited = summary.get("depositedSats", 0), debits.get("debitedSats", 0)
    if refund.get("refundSats") != deposited - debited:
        problems.append(
            f"refund {refund.get('refundSats')} sat != deposits {deposited} - debits {debited}"
        )
    if debited <= 0:
        problems.append("nothing was debited for the stream")
    return problems
