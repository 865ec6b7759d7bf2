"""Mapping of gRPC failures to typed LND errors (no network needed)."""

from __future__ import annotations

import grpc
import pytest

from gateway.lightning.errors import (
    BackendError,
    BackendUnavailable,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from gateway.lightning.lnd.status import from_rpc_error


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", BackendUnavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", BackendUnavailable),
        (grpc.StatusCode.PERMISSION_DENIED, "permission denied", PermissionDenied),
        (grpc.StatusCode.UNKNOWN, "permission denied", PermissionDenied),
        (grpc.StatusCode.UNKNOWN, "verification failed: signature mismatch", PermissionDenied),
        (grpc.StatusCode.UNKNOWN, "unable to locate invoice", NotFound),
        (grpc.StatusCode.NOT_FOUND, "no such thing", NotFound),
        (
            grpc.StatusCode.UNKNOWN,
            "the RPC server is in the process of starting up, but not yet ready",
            BackendUnavailable,
        ),
        (grpc.StatusCode.UNKNOWN, "server is still in the process of starting", BackendUnavailable),
        (grpc.StatusCode.INVALID_ARGUMENT, "bad", InvalidRequest),
        (grpc.StatusCode.UNKNOWN, "something else", BackendError),
    ],
)
def test_error_mapping(code: grpc.StatusCode, details: str, expected: type[BackendError]) -> None:
    error = from_rpc_error("AddInvoice", _rpc_error(code, details))
    assert type(error) is expected
    assert error.method == "AddInvoice"
    assert error.code == code.name
    assert details in str(error)
