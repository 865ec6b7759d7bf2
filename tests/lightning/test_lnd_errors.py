"""Mapping of gRPC failures to typed LND errors (no network needed)."""

from __future__ import annotations

import grpc
import pytest

from gateway.lightning.errors import (
    LndError,
    LndInvalidArgument,
    LndNotFound,
    LndPermissionDenied,
    LndUnavailable,
    from_rpc_error,
)


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", LndUnavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", LndUnavailable),
        (grpc.StatusCode.PERMISSION_DENIED, "permission denied", LndPermissionDenied),
        (grpc.StatusCode.UNKNOWN, "permission denied", LndPermissionDenied),
        (grpc.StatusCode.UNKNOWN, "verification failed: signature mismatch", LndPermissionDenied),
        (grpc.StatusCode.UNKNOWN, "unable to locate invoice", LndNotFound),
        (grpc.StatusCode.NOT_FOUND, "no such thing", LndNotFound),
        (
            grpc.StatusCode.UNKNOWN,
            "the RPC server is in the process of starting up, but not yet ready",
            LndUnavailable,
        ),
        (grpc.StatusCode.UNKNOWN, "server is still in the process of starting", LndUnavailable),
        (grpc.StatusCode.INVALID_ARGUMENT, "bad", LndInvalidArgument),
        (grpc.StatusCode.UNKNOWN, "something else", LndError),
    ],
)
def test_error_mapping(code: grpc.StatusCode, details: str, expected: type[LndError]) -> None:
    error = from_rpc_error("AddInvoice", _rpc_error(code, details))
    assert type(error) is expected
    assert error.method == "AddInvoice"
    assert error.code == code.name
    assert details in str(error)
