"""Typed buyer failures.

Every failure carries a short machine-readable `code` (what an agent or the
EP212 summary branches on) and a human `message`. Messages never contain a
macaroon, a preimage or a bearer token: at most a `preimage:<16 hex>` proof
reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.buyer.payers import PaymentReceipt


class BuyerError(Exception):
    """Base of every buyer failure: a stable code plus a secret-free message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class ChallengeError(BuyerError):
    """The seller's `WWW-Authenticate` challenge is missing or malformed."""


class InvoiceError(BuyerError):
    """The BOLT11 invoice could not be decoded or its signature is wrong."""


class PaymentError(BuyerError):
    """A payer could not pay, or its receipt does not prove payment.

    `spent_msats` says whether money may have moved: None when it certainly did
    not (refused before sending, or a final FAILED state), the reported amount
    when the payer said what it paid, or the most the payment could have cost
    when the outcome is unknown (timeout, dropped connection, unreadable
    answer). The client charges it to the budget. `receipt` is set when the
    error comes with a proven preimage (money moved and the token is paid for).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        upstream_code: str | None = None,
        spent_msats: int | None = None,
        receipt: PaymentReceipt | None = None,
    ) -> None:
        super().__init__(code, message)
        self.upstream_code = upstream_code
        self.spent_msats = spent_msats
        self.receipt = receipt


class CacheError(BuyerError):
    """The persisted credential cache is unreadable or insecure."""


class TransportError(BuyerError):
    """The HTTP request to the seller itself failed (connect, timeout, reset)."""


class SettingsError(BuyerError):
    """Environment or command-line settings are missing or invalid."""


class Ep212Error(BuyerError):
    """An EP212 rehearsal step did not behave as the acceptance gate requires."""


class SessionError(BuyerError):
    """A Payment session step failed; `decision` is set when the policy refused a deposit."""

    def __init__(self, code: str, message: str, *, decision: object | None = None) -> None:
        super().__init__(code, message)
        self.decision = decision
