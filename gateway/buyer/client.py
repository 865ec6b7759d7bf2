"""The L402 client: request, and on 402 decide, pay once, retry, cache.

Flow of `fetch`:
  cached credential (HIT) -> send it; 401/402 -> invalidate, continue without it
      (a 402 carrying L402-Balance is a metered bundle that ran dry: `exhausted`, and
      its fresh challenge buys the next bundle under the same policy)
  no credential           -> send plainly; anything but 402 is returned as is
  402 -> host checks -> parse challenge -> decode invoice -> full policy
      -> approval callback (optional) -> pay -> store credential -> retry once
  retry answered 401/402 -> `credential_rejected_after_payment`; never loop.
  retry failed in transport -> `paid_retry_failed` (receipt kept, credential cached).
  A 402 answered in the Payment scheme (`preference`, see `offers`) goes to
  `charge.pay_charge` instead: the same checks and outcomes, no cache (a
  Payment charge credential is single-use), the seller's Payment-Receipt kept.

So a cached credential that stops working costs at most one new payment, and
a seller that refuses a fresh, valid proof costs exactly one. Every refusal
before paying is a `FetchResult` with `denied` set, never an exception; only
transport failures before any payment raise (`TransportError`). Nothing after
a payment raises: a payer error that may have moved money is charged to the
budget (`PaymentError.spent_msats`) and a proven preimage is returned as
`payment`; a cache file that cannot be written is reported
(`cache_persist_failed` event, `FetchResult.cache_error`) while the credential
stays in memory. Redirects are not followed so a
credential is never replayed to another origin. The gRPC "trailers-only"
challenge form (HTTP 200 + grpc-status) is not handled: this is an HTTP buyer.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.buyer.bundles import balance_of
from gateway.buyer.cache import CacheStatus, Credential, CredentialCache
from gateway.buyer.challenge import parse_challenge
from gateway.buyer.errors import (
    BuyerError,
    CacheError,
    ChallengeError,
    InvoiceError,
    PaymentError,
    TransportError,
)
from gateway.buyer.invoice import Quote, decode_invoice, inspect_macaroon
from gateway.buyer.offers import DEFAULT_PREFERENCE, Scheme, choose
from gateway.buyer.payers import Payer, PaymentReceipt, validate_preimage
from gateway.buyer.policy import Decision, DenyReason, SpendPolicy
from gateway.metering.balanceheader import BalanceReport
from gateway.payment.receipts import Receipt

_REFUSED = (401, 402)


class Outcome(StrEnum):
    OK = "ok"  # no payment needed: free route, or the cached credential was accepted
    PAID = "paid"
    DENIED = "denied"  # spend policy refused the quote
    DENIED_BY_USER = "denied_by_user"
    CHALLENGE_ERROR = "challenge_error"
    INVOICE_ERROR = "invoice_error"
    PAYMENT_FAILED = "payment_failed"
    CREDENTIAL_REJECTED_AFTER_PAYMENT = "credential_rejected_after_payment"
    PAID_RETRY_FAILED = "paid_retry_failed"  # paid, but the retry never got an answer


@dataclass(frozen=True)
class ApprovalRequest:
    """What a human (or supervising agent) is shown before a payment."""

    host: str
    url: str
    amount_msats: int
    cap_msats: int
    description: str | None
    budget_remaining_msats: int | None


Approval = Callable[[ApprovalRequest], Awaitable[bool]]
EventSink = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class FetchResult:
    """Everything an agent needs to know about one `fetch`."""

    status: int
    body: bytes = field(repr=False)
    headers: CIMultiDictProxy[str] = field(repr=False)
    paid: bool
    payment: PaymentReceipt | None
    cache_status: CacheStatus
    quote_msats: int | None
    denied: Decision | None
    outcome: Outcome
    request_id: str
    challenge_status: int | None = None
    error: BuyerError | None = None
    cache_error: CacheError | None = None  # the credential file could not be written
    scheme: Scheme = Scheme.L402  # which scheme answered the 402 (when one did)
    receipt: Receipt | None = None  # the Payment-Receipt of a Payment-scheme purchase
    # A metered seller's L402-Balance on this answer (None: not metered, or unreadable).
    balance: BalanceReport | None = None
    # The cached credential's bundle ran dry (its 402 said so) and a new one was bought.
    exhausted: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.OK, Outcome.PAID) and 200 <= self.status < 300


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]


@dataclass
class _Call:
    """One `fetch` in progress."""

    method: str
    url: str
    host: str
    cache_host: str
    scope: str
    request_id: str
    json: Any
    data: bytes | str | None
    headers: Mapping[str, str] | None
    cache_status: CacheStatus = CacheStatus.MISS
    cache_error: CacheError | None = None
    exhausted: bool = False  # the cached credential was refused because its bundle ran dry


class L402Client:
    """An agent's HTTP client that can pay L402 challenges within a spend policy."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        payer: Payer,
        policy: SpendPolicy,
        cache: CredentialCache,
        approval: Approval | None = None,
        events: EventSink | None = None,
        *,
        clock: Callable[[], float] = time.time,
        preference: tuple[Scheme, ...] = DEFAULT_PREFERENCE,
    ) -> None:
        self.session = session
        self.preference = preference
        self.payer = payer
        self.policy = policy
        self.cache = cache
        self.approval = approval
        self.events = events
        self.clock = clock

    def _emit(self, name: str, call: _Call, **details: Any) -> None:
        if self.events is not None:
            self.events(name, {"requestId": call.request_id, "host": call.host, **details})

    def _cache_written(self, call: _Call, error: CacheError | None) -> None:
        if error is not None:
            call.cache_error = error
            self._emit("cache_persist_failed", call, code=error.code, error=error.message)

    async def _send(self, call: _Call, authorization: str | None) -> _Response:
        headers: CIMultiDict[str] = CIMultiDict(call.headers or {})
        headers.popall("Authorization", None)
        if authorization is not None:
            headers["Authorization"] = authorization
        try:
            async with self.session.request(
                call.method,
                call.url,
                json=call.json,
                data=call.data,
                headers=headers,
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                return _Response(resp.status, body, resp.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(
                "transport_error", f"{call.method} {call.cache_host}: {_transport_reason(exc)}"
            ) from None

    def _result(self, call: _Call, resp: _Response, outcome: Outcome, **kw: Any) -> FetchResult:
        kw.setdefault("paid", False)
        kw.setdefault("payment", None)
        kw.setdefault("quote_msats", None)
        kw.setdefault("denied", None)
        return FetchResult(
            status=resp.status,
            body=resp.body,
            headers=resp.headers,
            cache_status=call.cache_status,
            cache_error=call.cache_error,
            outcome=outcome,
            request_id=call.request_id,
            balance=balance_of(resp.headers),
            exhausted=call.exhausted,
            **kw,
        )

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        scope: str | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        force_refresh: bool = False,
        request_id: str | None = None,
    ) -> FetchResult:
        """Request `url`, paying an L402 challenge if policy (and approval) allow."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError(f"not an http(s) URL: {url!r}")
        call = _Call(
            method=method.upper(),
            url=url,
            host=host,
            cache_host=f"{host}:{parts.port}" if parts.port else host,
            scope=scope or parts.path or "/",
            request_id=request_id or f"l402-{uuid.uuid4().hex[:16]}",
            json=json,
            data=data,
            headers=headers,
        )
        status, credential = self.cache.lookup(
            call.cache_host, call.scope, self.clock(), force_refresh=force_refresh
        )
        call.cache_status = status
        if status is CacheStatus.HIT and credential is not None:
            resp = await self._send(call, credential.authorization())
            if resp.status not in _REFUSED:
                self._emit("cache_hit", call, status=resp.status)
                return self._result(call, resp, Outcome.OK)
            self._cache_written(
                call, await self.cache.invalidate_async(call.cache_host, call.scope)
            )
            call.cache_status = CacheStatus.INVALID
            dry = resp.status == 402 and balance_of(resp.headers) is not None
            if dry:  # a metered bundle ran dry: its 402 sells the next one (re-bought by policy)
                call.exhausted = True
                self._emit("bundle_exhausted", call, status=resp.status)
            else:
                self._emit("credential_refused", call, status=resp.status)
            if resp.status == 401:  # 401 carries no challenge: ask again without a credential
                resp = await self._send(call, None)
        else:
            resp = await self._send(call, None)
        if resp.status != 402:
            return self._result(call, resp, Outcome.OK)
        values = resp.headers.getall("WWW-Authenticate", [])
        scheme = choose(values, self.preference, "charge")
        if scheme is Scheme.PAYMENT:
            from gateway.buyer.charge import pay_charge

            return await pay_charge(self, call, resp)
        if scheme is None and Scheme.L402 not in self.preference:
            error = ChallengeError("no_acceptable_challenge", "the 402 offers no accepted scheme")
            self._emit("challenge_error", call, code=error.code)
            return self._result(
                call, resp, Outcome.CHALLENGE_ERROR, challenge_status=402, error=error
            )
        return await self._pay_and_retry(call, resp)

    async def _pay_and_retry(self, call: _Call, challenge_resp: _Response) -> FetchResult:
        def done(resp: _Response, outcome: Outcome, **kw: Any) -> FetchResult:
            return self._result(call, resp, outcome, challenge_status=challenge_resp.status, **kw)

        host_decision = self.policy.check_host(call.host)
        if not host_decision.allowed:
            self._emit("denied", call, reason=host_decision.reason_code)
            return done(challenge_resp, Outcome.DENIED, denied=host_decision)
        try:
            challenge = parse_challenge(challenge_resp.headers.getall("WWW-Authenticate", []))
            token = inspect_macaroon(challenge.macaroon)
        except ChallengeError as exc:
            self._emit("challenge_error", call, code=exc.code)
            return done(challenge_resp, Outcome.CHALLENGE_ERROR, error=exc)
        try:
            invoice = decode_invoice(challenge.invoice)
        except InvoiceError as exc:
            self._emit("invoice_error", call, code=exc.code)
            return done(challenge_resp, Outcome.INVOICE_ERROR, error=exc)
        quote = Quote(invoice, token.payment_hash, challenge.amount_msats)
        amount = invoice.amount_msats
        self._emit("challenge", call, amountMsats=amount, network=invoice.network)
        now = self.clock()
        decision = self.policy.evaluate(call.host, quote, now)
        if not decision.allowed or amount is None:
            self._emit("denied", call, reason=decision.reason_code, amountMsats=amount)
            return done(challenge_resp, Outcome.DENIED, denied=decision, quote_msats=amount)
        max_amount = self.policy.cap_msats
        remaining = self.policy.budget_remaining_msats
        if remaining is not None:
            max_amount = min(max_amount, remaining)
        if self.approval is not None:
            request = ApprovalRequest(
                call.host, call.url, amount, max_amount, invoice.description, remaining
            )
            if not await self.approval(request):
                refused = Decision(
                    False, DenyReason.DENIED_BY_USER, call.host, amount, max_amount,
                    "payment not approved", remaining,
                )  # fmt: skip
                self._emit("denied", call, reason=refused.reason_code, amountMsats=amount)
                return done(
                    challenge_resp, Outcome.DENIED_BY_USER, denied=refused, quote_msats=amount
                )
        expires_at = self.cache.expiry_for(now, token.valid_until)  # computed before paying
        try:
            receipt = await self.payer.pay(
                challenge.invoice, max_amount, call.host, call.request_id
            )
        except PaymentError as exc:
            failed = self._payment_failed(call, exc)
            return done(challenge_resp, Outcome.PAYMENT_FAILED, quote_msats=amount, **failed)
        try:
            validate_preimage(receipt.preimage_hex, invoice.payment_hash)
        except PaymentError as exc:  # the payer says it paid: charge it, there is no proof
            charged = PaymentError(exc.code, exc.message, spent_msats=receipt.amount_msats)
            failed = self._payment_failed(call, charged)
            return done(challenge_resp, Outcome.PAYMENT_FAILED, quote_msats=amount, **failed)
        self.policy.record_spend(receipt.amount_msats)
        self._emit(
            "paid", call, amountMsats=receipt.amount_msats, proofReference=receipt.proof_reference
        )
        credential = Credential(challenge.macaroon, receipt.preimage_hex.lower(), now, expires_at)
        # Stored before the retry: if the retry's transport fails, the paid token is not lost.
        self._cache_written(
            call, await self.cache.store_async(call.cache_host, call.scope, credential)
        )
        paid = {"paid": True, "payment": receipt, "quote_msats": amount}
        try:
            retry = await self._send(call, credential.authorization())
        except TransportError as exc:
            self._emit(
                "paid_retry_failed", call, code=exc.code, proofReference=receipt.proof_reference
            )
            return done(challenge_resp, Outcome.PAID_RETRY_FAILED, error=exc, **paid)
        if retry.status in _REFUSED:
            self._cache_written(
                call, await self.cache.invalidate_async(call.cache_host, call.scope)
            )
            self._emit("credential_rejected_after_payment", call, status=retry.status)
            error = PaymentError(
                "credential_rejected_after_payment",
                f"seller answered {retry.status} to a fresh, valid payment proof",
            )
            return done(retry, Outcome.CREDENTIAL_REJECTED_AFTER_PAYMENT, error=error, **paid)
        return done(retry, Outcome.PAID, **paid)

    def _payment_failed(self, call: _Call, exc: PaymentError) -> dict[str, Any]:
        """Charge money that may have moved; the result fields (a proven receipt is kept)."""
        details: dict[str, Any] = {"code": exc.code}
        if exc.spent_msats is not None:
            self.policy.record_spend(exc.spent_msats)
            details["spentMsats"] = exc.spent_msats
        if exc.receipt is not None:
            details["proofReference"] = exc.receipt.proof_reference
        self._emit("payment_failed", call, **details)
        return {"error": exc, "paid": exc.receipt is not None, "payment": exc.receipt}


def _transport_reason(exc: BaseException) -> str:
    """One line an operator can act on; never aiohttp's text, which repeats the full URL."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "cannot resolve the host name"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate verification failed"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        code = exc.os_error.errno
        reason = os.strerror(code) if code and code > 0 else type(exc.os_error).__name__
        return f"cannot connect: {reason}"
    if isinstance(exc, TimeoutError):  # aiohttp's own timeouts are TimeoutErrors too
        return "no answer in time"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "the server closed the connection before a complete answer"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"unreadable HTTP answer ({type(exc).__name__})"
    return f"request failed ({type(exc).__name__})"
