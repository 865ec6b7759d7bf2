"""gRPC over HTTP/2, the client's half: length-prefixed messages, `grpc-timeout`, the status.

From gRPC's "PROTOCOL-HTTP2" description: each message is a 1-byte compressed
flag, a 4-byte big-endian length and the message; the answer ends with
trailers carrying `grpc-status` (a number) and `grpc-message` (percent-encoded
UTF-8), or is a single "trailers-only" header block when the call failed
before any message. We never ask for compression, so a compressed message is
an error.
"""

from __future__ import annotations

import math
from collections import deque
from urllib.parse import unquote

from gateway.lightning.lnd.wire.protobuf import WireError

# Status codes by number (gRPC's canonical names, as LND's errors carry them).
STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
MAX_MESSAGE = 64 * 1024 * 1024  # ListInvoices pages on a busy node exceed gRPC's 4 MiB default


def message(payload: bytes) -> bytes:
    """One uncompressed message as it goes in DATA frames."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def timeout_value(seconds: float) -> str:
    """A `grpc-timeout` value no longer than `seconds` (at least 1 unit): at most 8 digits."""
    for unit, scale in (("u", 1e-6), ("m", 1e-3), ("S", 1.0), ("M", 60.0)):
        count = math.floor(max(seconds, 0.0) / scale)
        if count < 100_000_000:
            return f"{max(count, 1)}{unit}"
    return f"{min(math.floor(seconds / 3600.0), 99_999_999)}H"


class MessageReader:
    """Collects DATA bytes and hands out whole messages, in order."""

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self._buffer = bytearray()
        self._limit = limit
        self.messages: deque[bytes] = deque()

    def feed(self, data: bytes | memoryview) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 5:
            if buffer[0] != 0:
                raise WireError("a compressed gRPC message (none was asked for)")
            length = int.from_bytes(buffer[1:5], "big")
            if length > self._limit:
                raise WireError(f"a {length}-byte gRPC message (limit {self._limit})")
            if len(buffer) < 5 + length:
                return
            self.messages.append(bytes(buffer[5 : 5 + length]))
            del buffer[: 5 + length]

    @property
    def partial(self) -> bool:
        """Bytes of an unfinished message are waiting (an answer must not end here)."""
        return bool(self._buffer)


def status_of(headers: list[tuple[str, str]]) -> tuple[str, str] | None:
    """(code name, message) from a trailer block; None when it carries no grpc-status."""
    code: str | None = None
    text = ""
    for name, value in headers:
        if name == "grpc-status":
            number = int(value) if value.isdigit() and len(value) <= 3 else -1
            code = STATUS_NAMES[number] if 0 <= number < len(STATUS_NAMES) else "UNKNOWN"
        elif name == "grpc-message":
            text = unquote(value, errors="replace")
    return None if code is None else (code, text)
