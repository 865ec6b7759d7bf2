"""Typed failures of the Payment scheme core.

Every way a challenge, credential, receipt or request object can be refused
maps to one closed `Reason`. The seller turns a reason into an RFC 9457
problem document (`problems.problem_for`) and an HTTP status without parsing
messages, and metrics labels stay bounded. `detail` is for logs and problem
bodies: it never carries a preimage, a credential or the binding secret.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why something in the Payment scheme was refused."""

    # Credential shape (the token, its JSON, its fields).
    MALFORMED_CREDENTIAL = "malformed_credential"
    MULTIPLE_CREDENTIALS = "multiple_credentials"
    METHOD_UNSUPPORTED = "method_unsupported"
    # Challenge binding.
    UNKNOWN_CHALLENGE = "unknown_challenge"  # id does not bind, wrong realm, or consumed
    CHALLENGE_EXPIRED = "challenge_expired"
    INVOICE_EXPIRED = "invoice_expired"
    # Proof.
    INVALID_PREIMAGE = "invalid_preimage"
    VERIFICATION_FAILED = "verification_failed"  # request/invoice/body-digest inconsistent
    PAYMENT_INSUFFICIENT = "payment_insufficient"  # a challenge priced below the route
    # Sessions.
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_CLOSED = "session_closed"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    INVALID_RETURN_INVOICE = "invalid_return_invoice"
    # What a client reads (challenges, request objects, receipts, invoices).
    NO_CHALLENGE = "no_challenge"
    MALFORMED_CHALLENGE = "malformed_challenge"
    MALFORMED_REQUEST = "malformed_request"
    MALFORMED_RECEIPT = "malformed_receipt"
    MALFORMED_INVOICE = "malformed_invoice"
    MALFORMED_JSON = "malformed_json"
    MALFORMED_BASE64URL = "malformed_base64url"


class PaymentAuthError(Exception):
    """A refusal: a closed reason plus a secret-free detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"PaymentAuthError({self.reason.value!r}, {self.detail!r})"
