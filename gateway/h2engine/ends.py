"""Why a relayed stream ended, and what the client is told when the engine ended it."""

from __future__ import annotations

from enum import StrEnum

from gateway.h2engine.api import FailReason
from gateway.h2engine.grpcwire import GrpcStatus


class ClientEnd(StrEnum):
    """The client ended the stream: no error answer, `cancelled_by_client`."""

    RESET = "client_reset"
    GONE = "client_gone"
    IDLE = "client_idle"  # stopped sending or reading for the idle stream timeout


class Done(StrEnum):
    OK = "ok"
    REFUSED = "refused"  # answered by a Refuse (or a bad request) without forwarding


class EngineEnd(StrEnum):
    """Ends before there is a ticket."""

    ADMISSION_FAILED = "admission_failed"
    ADMISSION_TIMEOUT = "admission_timeout"


End = FailReason | ClientEnd | Done | EngineEnd

# What the client gets when the engine ends a stream: gRPC status, HTTP status, message.
ERRORS: dict[str, tuple[int, int, str]] = {
    FailReason.DEADLINE: (GrpcStatus.DEADLINE_EXCEEDED, 504, "deadline exceeded"),
    FailReason.CONNECT_FAILED: (GrpcStatus.UNAVAILABLE, 502, "upstream unavailable"),
    FailReason.CONNECT_TIMEOUT: (GrpcStatus.UNAVAILABLE, 504, "upstream connect timeout"),
    FailReason.TLS_FAILED: (GrpcStatus.UNAVAILABLE, 502, "upstream TLS handshake failed"),
    FailReason.NOT_HTTP2: (GrpcStatus.UNAVAILABLE, 502, "upstream does not speak HTTP/2"),
    FailReason.BUSY: (GrpcStatus.UNAVAILABLE, 503, "upstream busy"),
    FailReason.UPSTREAM_RESET: (GrpcStatus.UNAVAILABLE, 502, "upstream reset the stream"),
    FailReason.UPSTREAM_CLOSED: (GrpcStatus.UNAVAILABLE, 502, "upstream connection lost"),
    FailReason.UPSTREAM_IDLE: (GrpcStatus.UNAVAILABLE, 504, "upstream idle timeout"),
    FailReason.SHUTDOWN: (GrpcStatus.UNAVAILABLE, 503, "gateway shutting down"),
    FailReason.INTERNAL: (GrpcStatus.INTERNAL, 500, "internal gateway error"),
    EngineEnd.ADMISSION_FAILED: (GrpcStatus.INTERNAL, 500, "internal gateway error"),
    EngineEnd.ADMISSION_TIMEOUT: (GrpcStatus.UNAVAILABLE, 503, "gateway busy"),
}
