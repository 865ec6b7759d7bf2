"""Typed verification failures.

Every way a credential can be refused maps to one closed `Reason`, so metrics
labels stay bounded and callers can branch without parsing messages. The
`detail` text is for logs and error bodies: it must never carry a macaroon,
a preimage or a root key.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a credential was refused (also the `reason` metrics label)."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    PREIMAGE_MISMATCH = "preimage_mismatch"
    EXPIRED = "expired"
    WRONG_ROUTE = "wrong_route"
    REVOKED = "revoked"
    ALREADY_USED = "already_used"
    MISSING_CAPABILITY = "missing_capability"
    IN_USE = "in_use"
    EXHAUSTED = "exhausted"  # a metered balance is used up: the 402 sells the next bundle


class L402Error(Exception):
    """A refused credential: a closed reason plus a secret-free detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"L402Error({self.reason.value!r}, {self.detail!r})"


def malformed(detail: str) -> L402Error:
    """Shorthand for the most common failure."""
    return L402Error(Reason.MALFORMED, detail)
