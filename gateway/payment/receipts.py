"""`Payment-Receipt` and the session's SSE events.

Receipt (base64url JSON, only on 2xx, with `Cache-Control: private`):
  {"status": "success", "method": "lightning", "timestamp": RFC 3339,
   "reference": payment hash hex (charge) or session id (session),
   "challengeId"?: id, "refundSats"?: int, "refundStatus"?: "succeeded"|"failed"|"skipped"}
`refundSats`/`refundStatus` are for session close only (the draft makes both
REQUIRED there; Aperture v0.5.0 omits `refundSats` when it is 0 and reports
"pending" while its refund goroutine runs, so the reader accepts both).
Integers are kept exact (a refund above 2^53 must not be rounded).

SSE events on a metered stream (draft-lightning-session section 13):
  event: payment-need-topup  data: {"sessionId", "balanceSpent", "balanceRequired"}
  event: session-timeout     data: (the same fields)
  event: payment-receipt     data: {"method","reference","status","timestamp","spent","units"}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.payment import b64url, jcs
from gateway.payment.errors import PaymentAuthError, Reason

HEADER = "Payment-Receipt"
STATUS_SUCCESS = "success"
EVENT_NEED_TOPUP = "payment-need-topup"
EVENT_SESSION_TIMEOUT = "session-timeout"
EVENT_RECEIPT = "payment-receipt"


class RefundStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    PENDING = "pending"  # not in the draft: what Aperture v0.5.0 reports before its refund ends


@dataclass(frozen=True)
class Receipt:
    method: str
    reference: str
    timestamp: str
    status: str = STATUS_SUCCESS
    challenge_id: str | None = None
    refund_sats: int | None = None
    refund_status: RefundStatus | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # members this module does not know

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(
            status=self.status, method=self.method, timestamp=self.timestamp,
            reference=self.reference,
        )  # fmt: skip
        if self.challenge_id is not None:
            out["challengeId"] = self.challenge_id
        if self.refund_sats is not None:
            out["refundSats"] = self.refund_sats
        if self.refund_status is not None:
            out["refundStatus"] = self.refund_status.value
        return out


def _bad(detail: str) -> PaymentAuthError:
    return PaymentAuthError(Reason.MALFORMED_RECEIPT, detail)


def format_receipt(receipt: Receipt) -> str:
    """The header value: base64url(JCS(receipt))."""
    if receipt.status != STATUS_SUCCESS:
        raise ValueError('a receipt is only ever "success"')
    return b64url.encode(jcs.canonicalize(receipt.to_json()))


def _int(doc: Mapping[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{name} is not a non-negative integer")
    return value


def receipt_from_json(doc: Any) -> Receipt:
    if not isinstance(doc, dict):
        raise _bad("receipt is not a JSON object")
    texts: dict[str, str] = {}
    for name in ("status", "method", "timestamp", "reference"):
        value = doc.get(name)
        if not isinstance(value, str):
            raise _bad(f"{name} is missing or not a string")
        texts[name] = value
    if texts["status"] != STATUS_SUCCESS:
        raise _bad('status is not "success"')
    challenge_id = doc.get("challengeId")
    if challenge_id is not None and not isinstance(challenge_id, str):
        raise _bad("challengeId is not a string")
    status_text = doc.get("refundStatus")
    refund_status: RefundStatus | None = None
    if status_text is not None:
        try:
            refund_status = RefundStatus(status_text)
        except ValueError:
            raise _bad("refundStatus is not a known value") from None
    known = {
        "status",
        "method",
        "timestamp",
        "reference",
        "challengeId",
        "refundSats",
        "refundStatus",
    }
    return Receipt(
        method=texts["method"],
        reference=texts["reference"],
        timestamp=texts["timestamp"],
        status=texts["status"],
        challenge_id=challenge_id,
        refund_sats=_int(doc, "refundSats"),
        refund_status=refund_status,
        extra={k: v for k, v in doc.items() if k not in known},
    )


def parse_receipt(value: str, *, allow_padding: bool = False) -> Receipt:
    """The receipt in a `Payment-Receipt` value; raises MALFORMED_RECEIPT."""
    try:
        doc = jcs.loads(b64url.decode(value.strip(" \t"), allow_padding=allow_padding))
    except PaymentAuthError as exc:
        raise _bad(exc.detail) from None
    return receipt_from_json(doc)


@dataclass(frozen=True)
class BalanceEvent:
    """payment-need-topup / session-timeout data."""

    session_id: str
    balance_spent: int
    balance_required: int

    def to_json(self) -> dict[str, Any]:
        return {
            "sessionId": self.session_id,
            "balanceSpent": self.balance_spent,
            "balanceRequired": self.balance_required,
        }


def parse_balance_event(data: str) -> BalanceEvent:
    """The JSON data of a payment-need-topup or session-timeout event."""
    try:
        doc = jcs.loads(data)
    except PaymentAuthError as exc:
        raise _bad(exc.detail) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sessionId"), str):
        raise _bad("event data lacks sessionId")
    spent, required = _int(doc, "balanceSpent"), _int(doc, "balanceRequired")
    if spent is None or required is None:
        raise _bad("event data lacks balanceSpent or balanceRequired")
    return BalanceEvent(doc["sessionId"], spent, required)


def format_sse_event(event: str, data: Mapping[str, Any]) -> bytes:
    """One SSE event block (`event:` + one `data:` line of JCS JSON + blank line)."""
    if "\n" in event or "\r" in event:
        raise ValueError("an SSE event name is one line")
    return f"event: {event}\ndata: ".encode() + jcs.canonicalize(data) + b"\n\n"
