"""The contract between the HTTP/2 engine and the server's paid-request logic.

The engine knows HTTP/2 and gRPC framing but nothing about payment; the server
knows payment but nothing about frames. For every client stream the engine
calls `Admission.decide` once, when the request headers are complete and
before any body byte is forwarded, and either answers with the `Refuse` it got
or forwards as the `Forward` says, reporting back through its `Ticket`.

Ticket call order for one forwarded stream (the engine guarantees it):
at most one of `answered` / `failed`, never both, then exactly one `finished`.
A stream the client cancelled before the upstream answered gets neither
`answered` nor `failed`, only `finished(cancelled_by_client=True)`, so the
server can release a lease without consuming it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class StreamHead:
    """One client request (HTTP/2 stream) as the engine saw it.

    Header names are lower-case (HTTP/2 requires it), in arrival order,
    pseudo-headers removed; values are the wire bytes decoded as ISO-8859-1,
    so any byte survives the round trip unchanged.
    """

    method: str
    path: str  # raw :path, query included
    authority: str  # :authority, else the host header, else ""
    scheme: str
    headers: Headers
    peer: str | None  # client IP as the socket saw it (trusted-proxy logic is the server's)

    @property
    def is_grpc(self) -> bool:
        """gRPC (and gRPC-Web) requests announce themselves by content type."""
        return any(
            name == "content-type" and value.startswith("application/grpc")
            for name, value in self.headers
        )

    def values(self, name: str) -> list[str]:
        """Every value of one header, in order (names compared lower-case)."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]


@dataclass(frozen=True, slots=True)
class H2Target:
    """Where to forward: an HTTP/2 server (gRPC) reached over h2c or TLS with ALPN h2.

    Targets are pool keys: streams to equal targets share connections. The
    TLS context is compared by identity, so build one context per upstream and
    reuse it (it must offer ALPN `h2`: `ctx.set_alpn_protocols(["h2"])`).
    """

    host: str
    port: int
    tls: ssl.SSLContext | None  # None = cleartext h2c with prior knowledge
    authority: str  # :authority sent upstream
    connect_timeout: float
    server_hostname: str | None = None  # TLS name to verify; None = host


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer without forwarding.

    gRPC requests (content-type application/grpc*) get a trailers-only answer:
    HTTP 200, content-type application/grpc, grpc-status, grpc-message, plus
    `headers`; `status` and `body` are then unused. Other requests get
    `status`, `headers` and `body`. When `grpc_status` is None a gRPC request
    gets the plain HTTP answer too (gRPC clients map the HTTP status).
    """

    status: int
    headers: Headers
    body: bytes = b""
    grpc_status: int | None = None
    grpc_message: str = ""


class FailReason(StrEnum):
    """Why a forwarded stream ended without an upstream answer (closed set, metric-safe)."""

    CONNECT_FAILED = "connect_failed"  # refused, unreachable, DNS
    CONNECT_TIMEOUT = "connect_timeout"
    TLS_FAILED = "tls_failed"  # handshake or certificate
    NOT_HTTP2 = "not_http2"  # no ALPN h2, or no HTTP/2 preface from the upstream
    BUSY = "upstream_busy"  # every pooled connection full until the connect deadline
    UPSTREAM_RESET = "upstream_reset"  # RST_STREAM (or GOAWAY refusal) before the answer
    UPSTREAM_CLOSED = "upstream_closed"  # connection lost before the answer
    UPSTREAM_IDLE = "upstream_idle"  # no answer within the idle stream timeout
    DEADLINE = "deadline_exceeded"  # the client's grpc-timeout elapsed first
    SHUTDOWN = "shutdown"  # the gateway stopped before the answer
    INTERNAL = "internal"  # a bug in the engine or bad Forward headers


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """How a forwarded stream ended; handed to `Ticket.finished` exactly once."""

    status: int | None  # HTTP status the upstream answered; None if it never did
    grpc_status: int | None  # gRPC status the client received (upstream's or the engine's)
    bytes_in: int  # request body bytes forwarded upstream
    bytes_out: int  # response body bytes forwarded to the client
    cancelled_by_client: bool  # RST_STREAM, disconnect or stalled client
    error: str | None  # a FailReason value, or a client-side reason; None = completed
    duration: float  # seconds from the request headers to the end of the stream


class Ticket(Protocol):
    """The server's bookkeeping for one forwarded request (leases, metrics)."""

    async def answered(self, status: int, grpc_status: int | None) -> None:
        """Upstream response headers arrived (grpc_status set when trailers-only).

        Awaited before the headers go to the client, so a lease can be
        committed first.
        """

    async def failed(self, reason: FailReason) -> None:
        """The stream ended before the upstream answered, not by the client's doing.

        Awaited before the client gets its error (UNAVAILABLE, or
        DEADLINE_EXCEEDED for `FailReason.DEADLINE`), so a lease is released
        before the client can retry.
        """

    def finished(self, outcome: StreamOutcome) -> None:
        """The stream is over (always called last, also after `failed`)."""


@dataclass(frozen=True, slots=True)
class Forward:
    """Forward the stream to `target`, as `path`, with `headers`.

    `headers` are the request headers to send (the server filters them); the
    engine adds the pseudo-headers, drops connection-specific ones (HTTP/2
    forbids them), keeps `te: trailers` when the client sent it, and replaces
    any `grpc-timeout` with the client's remaining deadline.
    """

    target: H2Target
    path: str
    headers: Headers
    ticket: Ticket


class Admission(Protocol):
    """The server's decision for one stream."""

    async def decide(self, head: StreamHead) -> Refuse | Forward: ...
