"""LND's gRPC failures mapped onto the neutral kinds of gateway.lightning.errors.

LND's own message is kept whole: it is what names the cause ("permission
denied", "verification failed", "wallet locked"). Some conditions LND reports
with status UNKNOWN and only the message says which.
"""

from __future__ import annotations

from typing import Protocol

from gateway.lightning.errors import (
    BackendError,
    BackendUnavailable,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)

_UNAVAILABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"}


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


def from_status(method: str, code: str, details: str) -> BackendError:
    """Map a gRPC status from LND (its canonical name and message) to the narrowest error."""
    kind: type[BackendError]
    if code in _UNAVAILABLE:
        kind = BackendUnavailable
    elif code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        kind = PermissionDenied
    elif code == "NOT_FOUND":
        kind = NotFound
    elif code == "INVALID_ARGUMENT":
        kind = InvalidRequest
    else:
        kind = _lnd_wording(details) or BackendError
    return kind(method, code, details)


class _StatusCode(Protocol):
    @property
    def name(self) -> str: ...


class RpcError(Protocol):
    """What grpcio's AioRpcError offers (this module does not import grpc)."""

    def code(self) -> _StatusCode: ...

    def details(self) -> str | None: ...


def from_rpc_error(method: str, error: RpcError) -> BackendError:
    """Map a grpcio error from LND to the narrowest typed error."""
    return from_status(method, error.code().name, error.details() or "")
