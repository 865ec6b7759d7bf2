"""Payers: the only code that moves money.

A payer is anything with `async pay(invoice, max_amount_msats, host,
request_id) -> PaymentReceipt` and an observable `calls` counter (how many
times `pay` was actually invoked: the EP212 gate proves a blocked quote never
reached the payer by comparing it before and after).

Every payer checks its receipt: the preimage must be 64 hex characters whose
sha256 is the invoice's payment hash. A receipt that fails this is not proof
of payment and would be refused by the seller anyway.

A `PaymentError` raised once money may have moved carries `spent_msats` (the
amount the wallet reported, or the most the payment could cost when the
outcome is unknown) and, when the preimage was proven, the `receipt`; errors
raised before anything was sent, or on a final FAILED state, carry None. The
LND payer asks its node for its state before sending, so a node that cannot
be reached (or is locked) is "nothing was sent", not "outcome unknown".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from gateway.buyer.errors import InvoiceError, PaymentError
from gateway.buyer.invoice import DecodedInvoice, decode_invoice

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class PaymentReceipt:
    """Proof of one payment. `preimage_hex` is a secret: log `proof_reference` instead."""

    payment_id: str
    amount_msats: int
    preimage_hex: str = field(repr=False)
    paid_at_ms: int

    @property
    def proof_reference(self) -> str:
        return proof_reference(self.preimage_hex)


def proof_reference(preimage_hex: str) -> str:
    """`preimage:<first 16 hex>`: enough to correlate, useless to replay."""
    return f"preimage:{preimage_hex[:16].lower()}"


def validate_preimage(preimage_hex: object, payment_hash: bytes) -> str:
    """Return the lower-case preimage if it is 64 hex chars hashing to `payment_hash`."""
    if not isinstance(preimage_hex, str) or not _HEX64.fullmatch(preimage_hex):
        raise PaymentError("invalid_preimage", "preimage is not 64 hex characters")
    if hashlib.sha256(bytes.fromhex(preimage_hex)).digest() != payment_hash:
        raise PaymentError("preimage_mismatch", "sha256(preimage) is not the payment hash")
    return preimage_hex.lower()


def now_ms() -> int:
    return int(time.time() * 1000)


class Payer(Protocol):
    """What the L402 client needs from a wallet."""

    calls: int

    async def pay(
        self, invoice: str, max_amount_msats: int, host: str, request_id: str
    ) -> PaymentReceipt: ...


def _decode(invoice: str) -> DecodedInvoice:
    try:
        return decode_invoice(invoice)
    except InvoiceError as exc:
        raise PaymentError("invalid_invoice", exc.message) from None


class _LndPayment(Protocol):
    @property
    def preimage(self) -> bytes: ...

    @property
    def value_msat(self) -> int: ...

    @property
    def fee_msat(self) -> int: ...


class _PayingClient(Protocol):
    """The slice of `gateway.lightning.lnd.node.LndClient` this payer uses."""

    async def get_state(self, *, timeout: float | None = None) -> Any: ...

    async def pay_invoice(
        self, bolt11: str, *, fee_limit_msat: int, timeout_seconds: int = 60
    ) -> _LndPayment: ...


PROBE_TIMEOUT = 10.0  # GetState before paying: connects the channel (TLS) and answers


class LndPayer:
    """Pays through our own LND (SendPaymentV2); needs an admin/offchain macaroon."""

    def __init__(
        self,
        client: _PayingClient,
        fee_limit_msat: int = 10_000,
        timeout_seconds: int = 60,
        node: str = "the paying LND node",
    ) -> None:
        self.client = client
        self.fee_limit_msat = fee_limit_msat
        self.timeout_seconds = timeout_seconds
        self.node = node  # for messages: "LND at 127.0.0.1:10009"
        self.calls = 0

    async def _check_reachable(self) -> None:
        """Before sending: a node we cannot reach, or one not serving RPC, was never asked to pay.

        GetState needs no macaroon, so this proves the channel works without
        requiring a permission the payer otherwise would not need.
        """
        from gateway.lightning.errors import BackendError
        from gateway.lightning.types import WalletState

        try:
            state = await self.client.get_state(timeout=PROBE_TIMEOUT)
        except BackendError as exc:
            raise PaymentError(
                "lnd_unreachable",
                f"could not reach {self.node} (gRPC {exc.code}); no payment was attempted",
                upstream_code=exc.code,
            ) from None
        if state not in (WalletState.RPC_ACTIVE, WalletState.SERVER_ACTIVE):
            name = getattr(state, "name", str(state))
            raise PaymentError(
                "lnd_not_ready",
                f"{self.node} is not ready to pay (wallet {name}: unlock it or wait for it to"
                " start); no payment was attempted",
                upstream_code=name,
            )

    async def pay(
        self, invoice: str, max_amount_msats: int, host: str, request_id: str
    ) -> PaymentReceipt:
        # Imported here so the buyer imports (and its tests run) without gRPC stubs.
        from gateway.lightning.errors import (
            BackendError,
            InvalidRequest,
            NotFound,
            PaymentFailed,
            PermissionDenied,
        )

        self.calls += 1
        decoded = _decode(invoice)
        if decoded.amount_msats is None:
            raise PaymentError("amount_unknown", "refusing to pay an invoice without an amount")
        if decoded.amount_msats > max_amount_msats:
            raise PaymentError("amount_exceeds_max", "invoice amount is above the allowed maximum")
        await self._check_reachable()
        # Unknown outcome (LND unreachable mid-payment, deadline): the most it can cost.
        at_risk = decoded.amount_msats + self.fee_limit_msat
        try:
            async with asyncio.timeout(self.timeout_seconds + 10):
                payment = await self.client.pay_invoice(
                    invoice,
                    fee_limit_msat=self.fee_limit_msat,
                    timeout_seconds=self.timeout_seconds,
                )
        except PaymentFailed as exc:
            raise PaymentError(
                "payment_failed", f"LND payment failed: {exc.reason}", upstream_code=exc.reason
            ) from None
        except (PermissionDenied, InvalidRequest, NotFound) as exc:
            raise PaymentError(  # LND refused the request: nothing was sent
                "lnd_error", f"LND error {exc.code}", upstream_code=exc.code
            ) from None
        except BackendError as exc:
            raise PaymentError(
                "lnd_error",
                f"LND error {exc.code} while paying: the outcome is unknown (check the"
                " node's payments before paying again)",
                upstream_code=exc.code,
                spent_msats=at_risk,
            ) from None
        except TimeoutError:
            raise PaymentError(
                "payment_timeout",
                "LND did not settle the payment in time: the outcome is unknown (check the"
                " node's payments before paying again)",
                spent_msats=at_risk,
            ) from None
        spent = (int(payment.value_msat) or decoded.amount_msats) + int(payment.fee_msat)
        try:
            preimage = validate_preimage(payment.preimage.hex(), decoded.payment_hash)
        except PaymentError as exc:
            raise PaymentError(exc.code, exc.message, spent_msats=spent) from None
        return PaymentReceipt(
            payment_id=decoded.payment_hash.hex(),
            amount_msats=spent,
            preimage_hex=preimage,
            paid_at_ms=now_ms(),
        )


@dataclass(frozen=True)
class ExecutorStatus:
    """`GET /status` of the wallet executor."""

    ready: bool
    balance_sats: int | None
    lifecycle: str | None
    raw: dict[str, Any] = field(repr=False)


def _executor_error(status: int, body: Any) -> PaymentError:
    error = body.get("error") if isinstance(body, dict) else None
    upstream = None
    message = f"wallet executor answered HTTP {status}"
    if isinstance(error, dict):
        code, text = error.get("code"), error.get("message")
        upstream = code if isinstance(code, str) else None
        if isinstance(text, str):
            message = f"{message}: {text[:200]}"
    elif isinstance(error, str):
        upstream = error[:100]
    if status in (401, 403):
        return PaymentError("executor_unauthorized", message, upstream_code=upstream)
    return PaymentError("executor_rejected", message, upstream_code=upstream)


class WalletExecutorPayer:
    """Pays through the EP212 wallet executor's HTTP contract (`POST /pay-bolt11`)."""

    def __init__(
        self,
        base_url: str,
        auth_token: str,
        timeout_ms: int = 60_000,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("wallet executor base URL must be http(s)")
        if timeout_ms <= 0:
            raise ValueError("timeout_ms must be positive")
        self.base_url = base_url.rstrip("/")
        self._token = auth_token
        self.timeout_ms = timeout_ms
        self.session = session
        self.calls = 0

    def __repr__(self) -> str:
        return f"WalletExecutorPayer({self.base_url!r}, timeout_ms={self.timeout_ms})"

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, *, at_risk: int | None = None
    ) -> Any:
        """One executor request; `at_risk` is charged on errors where money may have moved."""
        if self.session is None:
            raise PaymentError("executor_unavailable", "no HTTP session given to the payer")
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        timeout = self.timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout):
                async with self.session.request(
                    method, f"{self.base_url}{path}", json=body, headers=headers
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
        except TimeoutError:
            raise PaymentError(
                "executor_timeout",
                f"wallet executor gave no answer in {self.timeout_ms} ms",
                spent_msats=at_risk,
            ) from None
        except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
            raise PaymentError(
                "executor_unreachable", f"wallet executor request failed: {type(exc).__name__}"
            ) from None
        except aiohttp.ClientError as exc:  # the request may have been received
            raise PaymentError(
                "executor_unreachable",
                f"wallet executor request failed: {type(exc).__name__}",
                spent_msats=at_risk,
            ) from None
        try:
            parsed = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if not 200 <= status < 300:
            raise _executor_error(status, parsed)  # the executor says it did not pay
        if not isinstance(parsed, dict):
            raise PaymentError(
                "executor_bad_response", "wallet executor answer is not JSON", spent_msats=at_risk
            )
        return parsed

    async def pay(
        self, invoice: str, max_amount_msats: int, host: str, request_id: str
    ) -> PaymentReceipt:
        self.calls += 1
        payment_hash = _decode(invoice).payment_hash
        body = {
            "requestId": request_id,
            "payment": {"invoice": invoice, "maxAmountMsats": max_amount_msats, "host": host},
        }
        # Past this call the executor answered 2xx ("paid"): every error is charged.
        answer = await self._call("POST", "/pay-bolt11", body, at_risk=max_amount_msats)
        result = answer.get("result")
        payment = result.get("payment") if isinstance(result, dict) else None
        if not isinstance(payment, dict):
            raise PaymentError(
                "executor_bad_response", "answer lacks result.payment", spent_msats=max_amount_msats
            )
        raw_id, amount, paid_at = (payment.get(k) for k in ("paymentId", "amountMsats", "paidAtMs"))
        reported: int | None = None
        if isinstance(amount, int) and not isinstance(amount, bool) and amount >= 0:
            reported = amount
        spent = max_amount_msats if reported is None else reported
        try:
            preimage = validate_preimage(payment.get("preimageHex"), payment_hash)
        except PaymentError as exc:
            raise PaymentError(exc.code, exc.message, spent_msats=spent) from None
        payment_id: str | None = raw_id if isinstance(raw_id, str) and raw_id else None
        paid_at_ms: int | None = now_ms() if paid_at is None else None
        if isinstance(paid_at, int) and not isinstance(paid_at, bool):
            paid_at_ms = paid_at
        # The preimage is proven: money moved, whatever else is wrong with the answer.
        receipt = PaymentReceipt(
            payment_id or payment_hash.hex(),
            spent,
            preimage,
            now_ms() if paid_at_ms is None else paid_at_ms,
        )
        problem = None
        if payment_id is None:
            problem = "paymentId missing"
        elif reported is None:
            problem = "amountMsats is not an integer"
        elif paid_at_ms is None:
            problem = "paidAtMs is not an integer"
        if problem is not None:
            raise PaymentError("executor_bad_response", problem, spent_msats=spent, receipt=receipt)
        if spent > max_amount_msats:
            raise PaymentError(
                "amount_exceeds_max",
                f"executor reports {spent} msat paid, above the {max_amount_msats} msat maximum",
                spent_msats=spent,
                receipt=receipt,
            )
        return receipt

    async def status(self) -> ExecutorStatus:
        answer = await self._call("GET", "/status", None)
        balance = answer.get("balanceSats")
        lifecycle = answer.get("lifecycle")
        return ExecutorStatus(
            ready=answer.get("ready") is True,
            balance_sats=balance if isinstance(balance, int) else None,
            lifecycle=lifecycle if isinstance(lifecycle, str) else None,
            raw=answer,
        )
