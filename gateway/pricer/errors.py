"""Typed pricer errors, so the request path maps failures without parsing strings.

Messages carry the method and the gRPC status name and details, never the
serialized request (it may hold a buyer's prompt).
"""

from __future__ import annotations

import grpc


class PricerError(Exception):
    """Any failed pricer call; `code` is the gRPC status name (or `invalid_answer`)."""

    def __init__(self, method: str, code: str, message: str) -> None:
        super().__init__(f"pricer {method}: {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


class PricerUnavailable(PricerError):
    """Down, unreachable, or no answer within the deadline: retry later, or fall back."""


class PricerRefused(PricerError):
    """The pricer rejected the request itself (INVALID_ARGUMENT and the like): a retry
    with the same request fails the same way."""


class PricerInvalidAnswer(PricerError):
    """The pricer answered something the protocol does not allow (a negative price)."""


_UNAVAILABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_REFUSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.UNIMPLEMENTED,
}
MAX_DETAILS = 200


def from_rpc_error(method: str, error: grpc.aio.AioRpcError) -> PricerError:
    code = error.code()
    details = (error.details() or "")[:MAX_DETAILS]
    kind: type[PricerError] = PricerError
    if code in _UNAVAILABLE:
        kind = PricerUnavailable
    elif code in _REFUSED:
        kind = PricerRefused
    return kind(method, code.name, details)
