"""gRPC-over-HTTP/2 wire details: timeouts, status trailers, message encoding (pure functions).

From gRPC's PROTOCOL-HTTP2 description: `grpc-timeout` is 1 to 8 ASCII digits
and a unit (H, M, S, m, u, n); `grpc-message` is percent-encoded UTF-8; an
error without a response body is a "trailers-only" answer: one HEADERS frame
with END_STREAM carrying :status 200, content-type and grpc-status.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import IntEnum

RawHeaders = list[tuple[bytes, bytes]]

_UNITS = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}
_MAX_DIGITS = 8
_MAX_VALUE = 10**_MAX_DIGITS - 1


class GrpcStatus(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    DEADLINE_EXCEEDED = 4
    INTERNAL = 13
    UNAVAILABLE = 14


def is_grpc_content_type(value: bytes) -> bool:
    return value.startswith(b"application/grpc")


def parse_timeout(value: str) -> float:
    """Seconds of a `grpc-timeout` value; ValueError when malformed (strict: no spaces, no sign)."""
    raw = value.encode("latin-1")
    digits, unit = raw[:-1], raw[-1:] or b"?"
    scale = _UNITS.get(unit[0])
    if scale is None or not 1 <= len(digits) <= _MAX_DIGITS or not digits.isdigit():
        raise ValueError("malformed grpc-timeout")
    return int(digits) * scale


def format_timeout(seconds: float) -> str:
    """A `grpc-timeout` value for the remaining `seconds`, at least 1 unit, never longer."""
    for unit, scale in (("u", 1e-6), ("m", 1e-3), ("S", 1.0), ("M", 60.0), ("H", 3600.0)):
        count = math.floor(max(seconds, 0.0) / scale)
        if count <= _MAX_VALUE:
            return f"{max(count, 1)}{unit}"
    return f"{_MAX_VALUE}H"


def encode_message(message: str) -> bytes:
    """Percent-encode a grpc-message (UTF-8; anything outside printable ASCII, and %)."""
    out = bytearray()
    for byte in message.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def status_of(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The grpc-status in a header block, None when absent or not a number."""
    for name, value in headers:
        if name == b"grpc-status":
            return int(value) if value.isdigit() and len(value) <= 3 else None
    return None


def trailers_only(
    status: int, message: str, extra: Iterable[tuple[bytes, bytes]] = ()
) -> RawHeaders:
    """The single header block of an error answer that has no response body."""
    block: RawHeaders = [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(status).encode("ascii")),
    ]
    if message:
        block.append((b"grpc-message", encode_message(message)))
    block.extend(extra)
    return block


def status_trailers(status: int, message: str) -> RawHeaders:
    """Trailers ending a gRPC response whose headers were already sent."""
    block: RawHeaders = [(b"grpc-status", str(status).encode("ascii"))]
    if message:
        block.append((b"grpc-message", encode_message(message)))
    return block
