"""RFC 9457 problem documents with the Payment scheme's problem types.

Every refusal `Reason` maps to one problem type and one HTTP status. For the
`lightning` method the Lightning drafts' own types apply
(https://paymentauth.org/problems/lightning/...); otherwise (no method known
yet, e.g. the token did not even decode) the base scheme's types. Every
failure of a presented credential is 402 with a fresh challenge, except a
request carrying several Payment credentials (400, no challenge) and an
unsupported method (400, the base type). `Content-Type:
application/problem+json`; `challengeId` names the fresh challenge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from gateway.payment import jcs
from gateway.payment.errors import PaymentAuthError, Reason

CONTENT_TYPE = "application/problem+json"
BASE = "https://paymentauth.org/problems/"
LIGHTNING = BASE + "lightning/"


class ProblemType(Enum):
    """(URI, title, HTTP status) of every problem type the gateway can send."""

    PAYMENT_REQUIRED = (BASE + "payment-required", "Payment Required", 402)
    PAYMENT_INSUFFICIENT = (BASE + "payment-insufficient", "Payment Insufficient", 402)
    PAYMENT_EXPIRED = (BASE + "payment-expired", "Payment Expired", 402)
    VERIFICATION_FAILED = (BASE + "verification-failed", "Payment Verification Failed", 402)
    METHOD_UNSUPPORTED = (BASE + "method-unsupported", "Method Unsupported", 400)
    MALFORMED_CREDENTIAL = (BASE + "malformed-credential", "Malformed Credential", 402)
    INVALID_CHALLENGE = (BASE + "invalid-challenge", "Invalid Challenge", 402)
    LN_MALFORMED_CREDENTIAL = (LIGHTNING + "malformed-credential", "Malformed Credential", 402)
    LN_UNKNOWN_CHALLENGE = (LIGHTNING + "unknown-challenge", "Unknown Challenge", 402)
    LN_INVALID_PREIMAGE = (LIGHTNING + "invalid-preimage", "Invalid Preimage", 402)
    LN_EXPIRED_INVOICE = (LIGHTNING + "expired-invoice", "Expired Invoice", 402)
    LN_SESSION_NOT_FOUND = (LIGHTNING + "session-not-found", "Session Not Found", 402)
    LN_SESSION_CLOSED = (LIGHTNING + "session-closed", "Session Closed", 402)
    LN_INSUFFICIENT_BALANCE = (LIGHTNING + "insufficient-balance", "Insufficient Balance", 402)
    LN_CHALLENGE_EXPIRED = (LIGHTNING + "challenge-expired", "Challenge Expired", 402)
    LN_INVALID_RETURN_INVOICE = (
        LIGHTNING + "invalid-return-invoice", "Invalid Return Invoice", 402,
    )  # fmt: skip

    @property
    def uri(self) -> str:
        return str(self.value[0])

    @property
    def title(self) -> str:
        return str(self.value[1])

    @property
    def status(self) -> int:
        return int(self.value[2])


_BY_URI = {t.uri: t for t in ProblemType}

# reason -> (base type, lightning charge type, lightning session type)
_MAP: dict[Reason, tuple[ProblemType, ProblemType, ProblemType]] = {
    Reason.MALFORMED_CREDENTIAL: (
        ProblemType.MALFORMED_CREDENTIAL, ProblemType.LN_MALFORMED_CREDENTIAL,
        ProblemType.LN_MALFORMED_CREDENTIAL,
    ),
    Reason.MULTIPLE_CREDENTIALS: (ProblemType.MALFORMED_CREDENTIAL,) * 3,
    Reason.METHOD_UNSUPPORTED: (ProblemType.METHOD_UNSUPPORTED,) * 3,
    Reason.UNKNOWN_CHALLENGE: (
        ProblemType.INVALID_CHALLENGE, ProblemType.LN_UNKNOWN_CHALLENGE,
        ProblemType.LN_UNKNOWN_CHALLENGE,
    ),
    Reason.CHALLENGE_EXPIRED: (
        ProblemType.PAYMENT_EXPIRED, ProblemType.LN_EXPIRED_INVOICE,
        ProblemType.LN_CHALLENGE_EXPIRED,
    ),
    Reason.INVOICE_EXPIRED: (
        ProblemType.PAYMENT_EXPIRED, ProblemType.LN_EXPIRED_INVOICE,
        ProblemType.LN_CHALLENGE_EXPIRED,
    ),
    Reason.INVALID_PREIMAGE: (
        ProblemType.VERIFICATION_FAILED, ProblemType.LN_INVALID_PREIMAGE,
        ProblemType.LN_INVALID_PREIMAGE,
    ),
    Reason.VERIFICATION_FAILED: (ProblemType.VERIFICATION_FAILED,) * 3,
    Reason.PAYMENT_INSUFFICIENT: (ProblemType.PAYMENT_INSUFFICIENT,) * 3,
    Reason.SESSION_NOT_FOUND: (
        ProblemType.VERIFICATION_FAILED, ProblemType.VERIFICATION_FAILED,
        ProblemType.LN_SESSION_NOT_FOUND,
    ),
    Reason.SESSION_CLOSED: (
        ProblemType.VERIFICATION_FAILED, ProblemType.VERIFICATION_FAILED,
        ProblemType.LN_SESSION_CLOSED,
    ),
    Reason.INSUFFICIENT_BALANCE: (
        ProblemType.PAYMENT_INSUFFICIENT, ProblemType.PAYMENT_INSUFFICIENT,
        ProblemType.LN_INSUFFICIENT_BALANCE,
    ),
    Reason.INVALID_RETURN_INVOICE: (
        ProblemType.MALFORMED_CREDENTIAL, ProblemType.LN_MALFORMED_CREDENTIAL,
        ProblemType.LN_INVALID_RETURN_INVOICE,
    ),
}  # fmt: skip


def problem_type(
    reason: Reason, method: str | None = None, intent: str | None = None
) -> ProblemType:
    """The problem type of a refusal; ValueError for a reason no seller answers with."""
    try:
        base, charge, session = _MAP[reason]
    except KeyError:
        raise ValueError(f"{reason.value} is not a seller-side refusal") from None
    if method != "lightning":
        return base
    return session if intent == "session" else charge


@dataclass(frozen=True)
class Problem:
    type: ProblemType
    detail: str | None = None
    challenge_id: str | None = None

    @property
    def status(self) -> int:
        return self.type.status

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type.uri,
            "title": self.type.title,
            "status": self.status,
        }
        if self.detail is not None:
            out["detail"] = self.detail
        if self.challenge_id is not None:
            out["challengeId"] = self.challenge_id
        return out

    def body(self) -> bytes:
        return jcs.canonicalize(self.to_json())


def problem_for(
    error: PaymentAuthError, *, method: str | None, intent: str | None, challenge_id: str | None
) -> Problem:
    """The document answering a refused credential (`detail` is the error's, secret-free)."""
    return Problem(problem_type(error.reason, method, intent), error.detail, challenge_id)


def payment_required(challenge_id: str | None = None) -> Problem:
    return Problem(ProblemType.PAYMENT_REQUIRED, "Payment required for access.", challenge_id)


@dataclass(frozen=True)
class ReadProblem:
    """A problem document as a client reads it (the type may be one we do not know)."""

    type_uri: str
    status: int | None
    title: str | None
    detail: str | None
    known: ProblemType | None


def read_problem(body: bytes) -> ReadProblem | None:
    """The problem in a 402 body, None when the body is not a problem document."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        return None
    status, title, detail = doc.get("status"), doc.get("title"), doc.get("detail")
    return ReadProblem(
        type_uri=doc["type"],
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        title=title if isinstance(title, str) else None,
        detail=detail if isinstance(detail, str) else None,
        known=_BY_URI.get(doc["type"]),
    )
