"""LND's gRPC failures mapped onto the neutral kinds of gateway.lightning.errors.

LND's own message is kept whole: it is what names the cause ("permission
denied", "verification failed", "wallet locked"). Some conditions LND reports
with status UNKNOWN and only the message says which.
"""

from __future__ import annotations

import grpc

from gateway.lightning.errors import (
    BackendError,
    BackendUnavailable,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)

_UNAVAILABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}


def _lnd_wording(details: str) -> type[BackendError] | None:
    """LND reports some conditions with status UNKNOWN and a telling message."""
    text = details.lower()
    if "permission denied" in text or "verification failed" in text:
        return PermissionDenied
    if "unable to locate invoice" in text or "there are no existing invoices" in text:
        return NotFound
    if "in the process of starting" in text or "waiting to start" in text:
        return BackendUnavailable
    if "invalid" in text and ("payment request" in text or "bech32" in text or "checksum" in text):
        return InvalidRequest
    return None


def from_rpc_error(method: str, error: grpc.aio.AioRpcError) -> BackendError:
    """Map a gRPC error from LND to the narrowest typed error."""
    code = error.code()
    details = error.details() or ""
    kind: type[BackendError]
    if code in _UNAVAILABLE:
        kind = BackendUnavailable
    elif code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        kind = PermissionDenied
    elif code == grpc.StatusCode.NOT_FOUND:
        kind = NotFound
    elif code == grpc.StatusCode.INVALID_ARGUMENT:
        kind = InvalidRequest
    else:
        kind = _lnd_wording(details) or BackendError
    return kind(method, code.name, details)
