"""Failures of a Lightning backend, typed so callers act on kinds, never on message text.

Neutral: every backend maps its own failures onto these kinds, and keeps its
own words in `message` (LND's "permission denied", say), because that text is
what tells an operator what to fix. `hint` adds the likely cause where the
kind alone says it (a macaroon without the permission, a node still starting).
"""

from __future__ import annotations


class BackendError(Exception):
    """Any failed call; `code` is the backend's status name (or a payment failure reason)."""

    hint: str = ""

    def __init__(self, method: str, code: str, message: str) -> None:
        super().__init__(f"{method}: {code}: {message}")
        self.method = method
        self.code = code
        self.message = message

    def explain(self) -> str:
        """One line for an operator: what failed, the backend's own words, the likely cause."""
        words = f"{self.method} failed: {self.code}: {self.message or '(no message)'}"
        return f"{words} ({self.hint})" if self.hint else words


class BackendUnavailable(BackendError):
    """The node is down, unreachable, still starting, or did not answer within the deadline."""

    hint = "is the node running and reachable at the configured host?"


class PermissionDenied(BackendError):
    """The credential does not grant this call (e.g. an invoice macaroon trying to pay)."""

    hint = "the macaroon lacks this permission: use one that grants it (see docs/runbook.md)"


class NotFound(BackendError):
    """The object asked for (an invoice) does not exist on this node."""


class InvalidRequest(BackendError):
    """The node rejected the request's content (a malformed payment request, say)."""


class PaymentFailed(BackendError):
    """A payment ended FAILED; `reason` is the backend's failure reason name."""

    def __init__(self, method: str, reason: str, payment_hash: str = "") -> None:
        super().__init__(method, reason, f"payment {payment_hash or '?'} failed")
        self.reason = reason
        self.payment_hash = payment_hash
