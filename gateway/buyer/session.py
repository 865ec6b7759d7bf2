"""A Payment-scheme `session` (lightning): deposit, bearer requests, top-ups, close.

`PaymentSession` drives one prepaid session against a seller:
  open()     unauthenticated request -> 402 -> the lightning `session` offer ->
             spend policy on the unit price AND the deposit (checked BEFORE
             paying; `max_deposit_msats` caps deposits as `max_spend_msats`
             caps prices) -> a zero-amount return invoice on our own LND ->
             pay the deposit -> `open` credential (deposit preimage + return
             invoice) -> 2xx
  request()  `bearer` credential (session id + deposit preimage); the seller
             debits its unit price per request (Aperture) or per chunk
  stream()   a `bearer` request whose answer is an event stream the seller bills
             per event: its events as they come; when the seller sends
             `payment-need-topup` the session tops up (within the policy) and
             the stream resumes
  top_up()   fresh 402 -> policy -> pay -> `topUp` credential
  close()    `close` credential -> the seller refunds the balance to the
             return invoice; the receipt's refundSats/refundStatus (and a JSON
             body's) are recorded as reported, absent ones as null
Every credential echoes an unexpired session challenge of the seller: the
one paid for open/top-up, the latest one for bearer/close (refreshed with an
unauthenticated request when it is about to expire).

Money: deposits count against the budget in full (a refund is a promise);
`summary()` says what was deposited, what the buyer's requests were priced
at (`debitedSats`, the seller's own count is not on the wire) and what the
seller says it refunded. Events go to `events(stage, status, details)`;
no preimage, credential or return invoice is ever in one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from multidict import CIMultiDictProxy

from gateway.buyer.charge import read_receipt
from gateway.buyer.errors import ChallengeError, InvoiceError, PaymentError, SessionError
from gateway.buyer.events import StreamEvent, read_events
from gateway.buyer.offers import SessionOffer, first_offer, session_offer
from gateway.buyer.payers import Payer, validate_preimage
from gateway.buyer.policy import DenyReason, SpendPolicy
from gateway.payment.challenge import ChallengeParams, parse_time
from gateway.payment.credential import Credential, format_authorization
from gateway.payment.payloads import BearerPayload, ClosePayload, OpenPayload, TopUpPayload
from gateway.payment.problems import read_problem
from gateway.payment.receipts import EVENT_NEED_TOPUP, EVENT_RECEIPT, Receipt

RETURN_INVOICE_EXPIRY = 30 * 86_400  # the session draft: SHOULD be at least 30 days
CHALLENGE_MARGIN = 30.0  # refresh the echoed challenge this long before it expires
Events = Callable[[str, str, dict[str, Any]], None]


class ReturnInvoices(Protocol):
    """Where the refund goes: a zero-amount invoice on the buyer's own node."""

    async def create_return_invoice(self, expiry_seconds: int, memo: str) -> str: ...


class _Adding(Protocol):
    async def add_invoice(
        self, value_msat: int, memo: str = "", expiry: int = 3600, private: bool = True
    ) -> Any: ...


class LndReturnInvoices:
    """Return invoices from our LND: AddInvoice with no amount (hints for private channels)."""

    def __init__(self, client: _Adding) -> None:
        self.client = client

    async def create_return_invoice(self, expiry_seconds: int, memo: str) -> str:
        added = await self.client.add_invoice(0, memo, expiry_seconds, True)
        return str(added.payment_request)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of the session (the body is the seller's, never a credential)."""

    status: int
    body: bytes = field(repr=False)
    headers: CIMultiDictProxy[str] = field(repr=False)
    receipt: Receipt | None

    def json(self) -> Any:
        import json

        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None


class PaymentSession:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        payer: Payer,
        invoices: ReturnInvoices,
        policy: SpendPolicy,
        url: str,
        *,
        host: str,
        request_id: str,
        events: Events | None = None,
        clock: Callable[[], float] = time.time,
        return_expiry: int = RETURN_INVOICE_EXPIRY,
        method: str = "GET",
    ) -> None:
        """`method`: what the challenge, open, top-up and close requests use (a route
        priced for POST only answers a GET with 405)."""
        self.http, self.payer, self.invoices, self.policy = http, payer, invoices, policy
        self.method = method
        self.url, self.host, self.request_id = url, host, request_id
        self.events, self.clock, self.return_expiry = events, clock, return_expiry
        self.session_id: str | None = None
        self.unit_sats: int | None = None
        self.idle_timeout: int | None = None
        self._preimage: bytes | None = None
        self._challenge: ChallengeParams | None = None
        self.deposits: list[dict[str, Any]] = []
        self.requests: list[int] = []  # status of every bearer request
        self.stream_receipts: list[str] = []  # payment-receipt events' data (JSON text)
        self.closed: dict[str, Any] | None = None

    def _event(self, stage: str, outcome: str, **details: Any) -> None:
        if self.events is not None:
            self.events(stage, outcome, details)

    async def _send(self, method: str, url: str, authorization: str | None, **kw: Any) -> Answer:
        headers = dict(kw.pop("headers", None) or {})
        if authorization is not None:
            headers["Authorization"] = authorization
        try:
            async with self.http.request(
                method, url, headers=headers, allow_redirects=False, **kw
            ) as resp:
                body = await resp.read()
                receipt = read_receipt(resp.headers)
                return Answer(
                    resp.status, body, resp.headers, None if isinstance(receipt, str) else receipt
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SessionError(
                "transport_error", f"{method} {self.host}: {type(exc).__name__}"
            ) from None

    async def _offer(self) -> SessionOffer:
        """A fresh session offer (an unauthenticated request answered 402)."""
        answer = await self._send(self.method, self.url, None)
        if answer.status != 402:
            raise SessionError("no_challenge", f"expected 402, the seller answered {answer.status}")
        try:
            offer = session_offer(
                first_offer(answer.headers.getall("WWW-Authenticate", []), "session")
            )
        except (ChallengeError, InvoiceError) as exc:
            raise SessionError(exc.code, exc.message) from None
        self._challenge = offer.params
        self.unit_sats = offer.request.amount_sats
        self.idle_timeout = offer.request.idle_timeout
        return offer

    def _approve(self, offer: SessionOffer, kind: str) -> int:
        """The spend policy on the unit price, then on the deposit; the most the payer may pay."""
        decision = self.policy.check_host(self.host)
        unit_msats = offer.request.amount_sats * 1000
        if decision.allowed and unit_msats > self.policy.cap_msats:
            decision = self.policy._deny(
                DenyReason.AMOUNT_OVER_CAP, self.host, unit_msats,
                f"unit price {unit_msats} msat exceeds cap {self.policy.cap_msats} msat",
            )  # fmt: skip
        if decision.allowed:
            decision = self.policy.evaluate(self.host, offer.deposit, self.clock(), deposit=True)
        amount = offer.invoice.amount_msats
        if not decision.allowed or amount is None:
            reason = decision.reason_code.value if decision.reason_code else "amount_unknown"
            self._event(f"session.{kind}", "denied", reason=reason, amountMsats=amount,
                        capMsats=decision.cap_msats)  # fmt: skip
            raise SessionError(reason, decision.detail or "deposit refused", decision=decision)
        cap = self.policy.deposit_cap_msats
        remaining = self.policy.budget_remaining_msats
        return cap if remaining is None else min(cap, remaining)

    async def _pay(self, offer: SessionOffer, kind: str, limit: int) -> bytes:
        """Pay an approved deposit; its proven preimage."""
        try:
            step = f"{self.request_id}-{kind}-{len(self.deposits)}"
            invoice = offer.request.deposit_invoice or ""
            paid = await self.payer.pay(invoice, limit, self.host, step)
            validate_preimage(paid.preimage_hex, offer.invoice.payment_hash)
        except PaymentError as exc:
            if exc.spent_msats is not None:
                self.policy.record_spend(exc.spent_msats)
            self._event(f"session.{kind}", "error", code=exc.code, spentMsats=exc.spent_msats)
            raise SessionError(exc.code, exc.message) from None
        self.policy.record_spend(paid.amount_msats)
        assert offer.invoice.amount_msats is not None  # _approve refused amount-less invoices
        self.deposits.append({
            "kind": kind, "amountMsats": paid.amount_msats,
            "depositSats": offer.invoice.amount_msats // 1000,
            "paymentHash": offer.invoice.payment_hash.hex(), "proofReference": paid.proof_reference,
        })  # fmt: skip
        self._event(f"session.{kind}", "paid", **self.deposits[-1])
        return bytes.fromhex(paid.preimage_hex)

    def _credential(
        self, payload: Mapping[str, str], challenge: ChallengeParams | None = None
    ) -> str:
        echo = challenge or self._challenge
        assert echo is not None
        return format_authorization(Credential(echo, dict(payload)))

    async def _fresh(self) -> None:
        """Keep an unexpired challenge to echo in bearer and close credentials."""
        echo = self._challenge
        if echo is None or (
            echo.expires and parse_time(echo.expires) - CHALLENGE_MARGIN <= self.clock()
        ):
            await self._offer()

    def _require_open(self) -> tuple[bytes, bytes]:
        if self.session_id is None or self._preimage is None or self.closed is not None:
            raise SessionError("no_open_session", "open the session first (and only once)")
        return bytes.fromhex(self.session_id), self._preimage

    def _refused(self, stage: str, answer: Answer) -> SessionError:
        problem = read_problem(answer.body)
        code = problem.type_uri.rsplit("/", 1)[-1] if problem else f"http_{answer.status}"
        self._event(
            stage, "refused", status=answer.status, problem=problem.type_uri if problem else None
        )
        return SessionError(code, f"the seller answered {answer.status}")

    async def open(self) -> Answer:
        if self.session_id is not None:
            raise SessionError("already_open", "this session was already opened")
        offer = await self._offer()
        request = offer.request
        self._event("session.challenge", "ok", unitSats=request.amount_sats,
                    depositSats=request.deposit_sats, idleTimeout=request.idle_timeout)  # fmt: skip
        limit = self._approve(offer, "open")  # before anything is asked of our node
        expiry = max(self.return_expiry, 2 * (offer.request.idle_timeout or 0))
        return_invoice = await self.invoices.create_return_invoice(
            expiry, "l402-buyer session refund"
        )
        preimage = await self._pay(offer, "open", limit)
        payload = OpenPayload(preimage, return_invoice).to_json()
        answer = await self._send(self.method, self.url, self._credential(payload, offer.params))
        if answer.status in (401, 402):
            raise self._refused("session.open", answer)
        self.session_id, self._preimage = offer.request.payment_hash.hex(), preimage
        reference = answer.receipt.reference if answer.receipt else None
        self._event("session.open", "ok", status=answer.status, sessionId=self.session_id,
                    receiptReference=reference)  # fmt: skip
        return answer

    async def request(self, method: str = "GET", url: str | None = None, **kw: Any) -> Answer:
        session_id, preimage = self._require_open()
        await self._fresh()
        payload = BearerPayload(session_id, preimage).to_json()
        answer = await self._send(method, url or self.url, self._credential(payload), **kw)
        self.requests.append(answer.status)
        self._event(
            "session.bearer", "ok" if answer.status < 400 else "refused", status=answer.status
        )
        return answer

    async def stream(
        self, method: str = "POST", url: str | None = None, **kw: Any
    ) -> AsyncIterator[StreamEvent]:
        """A bearer request answered by an event stream: each event as it arrives; a
        `payment-need-topup` event triggers one top-up (policy first), and the stream goes on.
        The seller's `payment-receipt` event is recorded in `stream_receipts`."""
        session_id, preimage = self._require_open()
        await self._fresh()
        headers = dict(kw.pop("headers", None) or {})
        headers["Authorization"] = self._credential(BearerPayload(session_id, preimage).to_json())
        headers.setdefault("Accept", "text/event-stream")
        try:
            async with self.http.request(
                method, url or self.url, headers=headers, allow_redirects=False, **kw
            ) as resp:
                self.requests.append(resp.status)
                if resp.status >= 400:
                    raise self._refused("session.stream", Answer(resp.status, await resp.read(),
                                                                 resp.headers, None))  # fmt: skip
                async for event in read_events(resp.content):
                    if event.name == EVENT_NEED_TOPUP:
                        self._event("session.stream", "need_topup", data=event.data)
                        await self.top_up()
                    elif event.name == EVENT_RECEIPT:
                        self.stream_receipts.append(event.data)
                    yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SessionError(
                "transport_error", f"{method} {self.host}: {type(exc).__name__}"
            ) from None

    async def top_up(self) -> Answer:
        session_id, _ = self._require_open()
        offer = await self._offer()
        preimage = await self._pay(offer, "topUp", self._approve(offer, "topUp"))
        payload = TopUpPayload(session_id, preimage).to_json()
        answer = await self._send(self.method, self.url, self._credential(payload, offer.params))
        if answer.status in (401, 402):
            raise self._refused("session.topUp", answer)
        self._event("session.topUp", "ok", status=answer.status)
        return answer

    async def close(self) -> Answer:
        session_id, preimage = self._require_open()
        await self._fresh()
        answer = await self._send(
            self.method, self.url, self._credential(ClosePayload(session_id, preimage).to_json())
        )
        if answer.status in (401, 402):
            raise self._refused("session.close", answer)
        body = answer.json()
        body = body if isinstance(body, dict) else {}
        receipt = answer.receipt
        self.closed = {
            "status": answer.status,
            "receipt": receipt.to_json() if receipt else None,
            "refundSats": receipt.refund_sats if receipt and receipt.refund_sats is not None
            else body.get("refundSats"),
            "refundStatus": receipt.refund_status.value if receipt and receipt.refund_status
            else body.get("refundStatus"),
        }  # fmt: skip
        self._event("session.close", "ok", **self.closed)
        return answer

    def summary(self) -> dict[str, Any]:
        served = sum(1 for s in self.requests if 200 <= s < 300)
        deposited = sum(d["depositSats"] for d in self.deposits)
        return {
            "scheme": "payment",
            "intent": "session",
            "url": self.url,
            "sessionId": self.session_id,
            "unitSats": self.unit_sats,
            "idleTimeout": self.idle_timeout,
            "deposits": self.deposits,
            "depositedSats": deposited,
            "depositedMsatsPaid": sum(d["amountMsats"] for d in self.deposits),
            "debits": {
                "requests": len(self.requests),
                "served": served,
                "debitedSats": served * (self.unit_sats or 0),
            },
            "refund": self.closed,
        }
