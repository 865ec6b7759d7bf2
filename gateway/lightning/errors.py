"""Typed LND errors, so callers map failures to HTTP answers without parsing strings."""

from __future__ import annotations

import grpc


class LndError(Exception):
    """Any failed LND call; `code` is the gRPC status name (or a payment failure reason)."""

    def __init__(self, method: str, code: str, message: str) -> None:
        super().__init__(f"{method}: {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


class LndUnavailable(LndError):
    """LND is down, unreachable, still starting, or did not answer within the deadline."""


class LndPermissionDenied(LndError):
    """The macaroon does not grant this call (e.g. invoice.macaroon trying to pay)."""


class LndNotFound(LndError):
    """The object asked for (an invoice) does not exist on this node."""


class LndInvalidArgument(LndError):
    """LND rejected the request's content (a malformed payment request, say)."""


class PaymentFailed(LndError):
    """SendPaymentV2 ended FAILED; `reason` is LND's PaymentFailureReason name."""

    def __init__(self, method: str, reason: str, payment_hash: str = "") -> None:
        super().__init__(method, reason, f"payment {payment_hash or '?'} failed")
        self.reason = reason
        self.payment_hash = payment_hash


_UNAVAILABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}


def _lnd_wording(details: str) -> type[LndError] | None:
    """LND reports some conditions with status UNKNOWN and a telling message."""
    text = details.lower()
    if "permission denied" in text or "verification failed" in text:
        return LndPermissionDenied
    if "unable to locate invoice" in text or "there are no existing invoices" in text:
        return LndNotFound
    if "in the process of starting" in text or "waiting to start" in text:
        return LndUnavailable
    if "invalid" in text and ("payment request" in text or "bech32" in text or "checksum" in text):
        return LndInvalidArgument
    return None


def from_rpc_error(method: str, error: grpc.aio.AioRpcError) -> LndError:
    """Map a gRPC error from LND to the narrowest typed error."""
    code = error.code()
    details = error.details() or ""
    kind: type[LndError]
    if code in _UNAVAILABLE:
        kind = LndUnavailable
    elif code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        kind = LndPermissionDenied
    elif code == grpc.StatusCode.NOT_FOUND:
        kind = LndNotFound
    elif code == grpc.StatusCode.INVALID_ARGUMENT:
        kind = LndInvalidArgument
    else:
        kind = _lnd_wording(details) or LndError
    return kind(method, code.name, details)
