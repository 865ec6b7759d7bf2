"""The Payment scheme's `charge` intent, bought the way `L402Client` buys L402.

Same order and same outcomes as the L402 path: host checks, offer decoded
(request object, signed invoice, convenience fields cross-checked), the full
spend policy, the approval callback, then one payment, one credential
(`Authorization: Payment ...` echoing the challenge, payload = preimage), one
retry. Nothing is cached: the credential is single-use by the spec (even
though Aperture v0.5.0 accepts it again until the challenge expires), so a
repeat request pays again. The `Payment-Receipt` of the answer is parsed and
returned; a missing or unreadable receipt is reported as an event, not an
error (the resource was served).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.buyer.errors import ChallengeError, InvoiceError, PaymentError, TransportError
from gateway.buyer.offers import Scheme, charge_offer, first_offer
from gateway.buyer.payers import validate_preimage
from gateway.buyer.policy import Decision, DenyReason
from gateway.payment.credential import Credential, format_authorization
from gateway.payment.errors import PaymentAuthError
from gateway.payment.payloads import ChargePayload
from gateway.payment.receipts import HEADER as RECEIPT_HEADER
from gateway.payment.receipts import Receipt, parse_receipt

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

    from gateway.buyer.client import FetchResult, L402Client, _Call, _Response


def read_receipt(headers: CIMultiDictProxy[str]) -> Receipt | str | None:
    """The answer's receipt, None when absent, or why it could not be read."""
    value = headers.get(RECEIPT_HEADER)
    if value is None:
        return None
    try:
        return parse_receipt(value)
    except PaymentAuthError as exc:
        return exc.detail


async def pay_charge(client: L402Client, call: _Call, challenge_resp: _Response) -> FetchResult:
    from gateway.buyer.client import ApprovalRequest, Outcome

    def done(resp: _Response, outcome: Outcome, **kw: Any) -> FetchResult:
        kw.setdefault("scheme", Scheme.PAYMENT)
        return client._result(call, resp, outcome, challenge_status=challenge_resp.status, **kw)

    policy = client.policy
    host_decision = policy.check_host(call.host)
    if not host_decision.allowed:
        client._emit("denied", call, reason=host_decision.reason_code, scheme="payment")
        return done(challenge_resp, Outcome.DENIED, denied=host_decision)
    try:
        offer = charge_offer(
            first_offer(challenge_resp.headers.getall("WWW-Authenticate", []), "charge")
        )
    except ChallengeError as exc:
        client._emit("challenge_error", call, code=exc.code, scheme="payment")
        return done(challenge_resp, Outcome.CHALLENGE_ERROR, error=exc)
    except InvoiceError as exc:
        client._emit("invoice_error", call, code=exc.code, scheme="payment")
        return done(challenge_resp, Outcome.INVOICE_ERROR, error=exc)
    invoice = offer.quote.invoice
    amount = invoice.amount_msats
    client._emit("challenge", call, amountMsats=amount, network=invoice.network, scheme="payment",
                 intent="charge")  # fmt: skip
    now = client.clock()
    decision = policy.evaluate(call.host, offer.quote, now)
    if not decision.allowed or amount is None:
        client._emit("denied", call, reason=decision.reason_code, amountMsats=amount)
        return done(challenge_resp, Outcome.DENIED, denied=decision, quote_msats=amount)
    max_amount = policy.cap_msats
    remaining = policy.budget_remaining_msats
    if remaining is not None:
        max_amount = min(max_amount, remaining)
    if client.approval is not None:
        ask = ApprovalRequest(
            call.host, call.url, amount, max_amount, invoice.description, remaining
        )
        if not await client.approval(ask):
            refused = Decision(
                False, DenyReason.DENIED_BY_USER, call.host, amount, max_amount,
                "payment not approved", remaining,
            )  # fmt: skip
            client._emit("denied", call, reason=refused.reason_code, amountMsats=amount)
            return done(challenge_resp, Outcome.DENIED_BY_USER, denied=refused, quote_msats=amount)
    try:
        paid = await client.payer.pay(offer.request.invoice, max_amount, call.host, call.request_id)
        validate_preimage(paid.preimage_hex, invoice.payment_hash)
    except PaymentError as exc:
        failed = client._payment_failed(call, exc)
        return done(challenge_resp, Outcome.PAYMENT_FAILED, quote_msats=amount, **failed)
    policy.record_spend(paid.amount_msats)
    client._emit("paid", call, amountMsats=paid.amount_msats, proofReference=paid.proof_reference,
                 scheme="payment")  # fmt: skip
    credential = Credential(offer.params, ChargePayload(bytes.fromhex(paid.preimage_hex)).to_json())
    bought = {"paid": True, "payment": paid, "quote_msats": amount}
    try:
        retry = await client._send(call, format_authorization(credential))
    except TransportError as exc:  # paid, the preimage is proof; the answer is lost
        client._emit("paid_retry_failed", call, code=exc.code, proofReference=paid.proof_reference)
        return done(challenge_resp, Outcome.PAID_RETRY_FAILED, error=exc, **bought)
    if retry.status in (401, 402):
        client._emit("credential_rejected_after_payment", call, status=retry.status)
        error = PaymentError(
            "credential_rejected_after_payment",
            f"seller answered {retry.status} to a fresh, valid payment proof",
        )
        return done(retry, Outcome.CREDENTIAL_REJECTED_AFTER_PAYMENT, error=error, **bought)
    receipt = read_receipt(retry.headers)
    if isinstance(receipt, str):
        client._emit("receipt_unreadable", call, error=receipt)
        receipt = None
    elif receipt is not None:
        client._emit("receipt", call, reference=receipt.reference, challengeId=receipt.challenge_id)
    return done(retry, Outcome.PAID, receipt=receipt, **bought)
