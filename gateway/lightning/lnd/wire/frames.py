"""HTTP/2 frames for a client of one gRPC server (RFC 9113), and HPACK for its requests.

Frames in: `FrameReader` splits bytes into (type, flags, stream, payload),
refusing a frame larger than we allow. Frames out: small builders. Request
headers are HPACK-encoded here without the dynamic table (RFC 7541:
indexed static entries and literals without indexing; the macaroon as
"never indexed", as a credential should be), so nothing about our encoder's
state can go wrong and most of a call's header block is built once. Answers
are decoded with the `hpack` package, which keeps the server's dynamic table.
"""

from __future__ import annotations

import struct

import hpack
import hpack.exceptions

from gateway.lightning.lnd.wire.protobuf import WireError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9

END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# SETTINGS identifiers
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6

# Error codes
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR = 0x0, 0x1, 0x3, 0x6
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x7, 0x8, 0x9

DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_WINDOW = 2**31 - 1

_HEAD = struct.Struct(">I B I")  # 24-bit length in the top of the first word, type, flags, id


class ProtocolError(WireError):
    """The peer broke HTTP/2: the connection is closed with `code`."""

    def __init__(self, message: str, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


Frame = tuple[int, int, int, bytes]  # type, flags, stream id, payload


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return _HEAD.pack((len(payload) << 8) | kind, flags, stream & 0x7FFFFFFF) + payload


class FrameReader:
    """Bytes in, whole frames out; a frame over `max_size` is a FRAME_SIZE_ERROR."""

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME) -> None:
        self._buffer = bytearray()
        self.max_size = max_size

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        pos, size = 0, len(buffer)
        while size - pos >= 9:
            word, flags, stream = _HEAD.unpack_from(buffer, pos)
            length = word >> 8
            if length > self.max_size:
                raise ProtocolError(f"a {length}-byte frame", FRAME_SIZE_ERROR)
            if size - pos < 9 + length:
                break
            start = pos + 9
            pos = start + length
            frames.append((word & 0xFF, flags, stream & 0x7FFFFFFF, bytes(buffer[start:pos])))
        del buffer[:pos]
        return frames


def unpad(kind: int, flags: int, payload: bytes) -> bytes:
    """The payload of a DATA or HEADERS frame without padding (and priority fields)."""
    start, end = 0, len(payload)
    if flags & PADDED:
        if not payload:
            raise ProtocolError("padded frame without a pad length")
        start, end = 1, end - payload[0]
    if kind == HEADERS and flags & PRIORITY_FLAG:
        start += 5
    if start > end:
        raise ProtocolError("padding longer than the frame")
    return payload[start:end]


def settings(values: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in values.items()))


def parse_settings(payload: bytes) -> dict[int, int]:
    if len(payload) % 6:
        raise ProtocolError("SETTINGS payload not a multiple of 6", FRAME_SIZE_ERROR)
    values = dict(struct.iter_unpack(">HI", payload))
    if values.get(ENABLE_PUSH, 0) > 1:
        raise ProtocolError("SETTINGS_ENABLE_PUSH above 1")
    if values.get(INITIAL_WINDOW_SIZE, 0) > MAX_WINDOW:
        raise ProtocolError("SETTINGS_INITIAL_WINDOW_SIZE too large", FLOW_CONTROL_ERROR)
    if not DEFAULT_MAX_FRAME <= values.get(MAX_FRAME_SIZE, DEFAULT_MAX_FRAME) <= 2**24 - 1:
        raise ProtocolError("SETTINGS_MAX_FRAME_SIZE out of range")
    return values


def window_update(stream: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment & 0x7FFFFFFF))


def window_increment(payload: bytes) -> int:
    if len(payload) != 4:
        raise ProtocolError("WINDOW_UPDATE payload not 4 bytes", FRAME_SIZE_ERROR)
    return int.from_bytes(payload, "big") & 0x7FFFFFFF


def rst_stream(stream: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def error_code(payload: bytes, offset: int = 0) -> int:
    """The 32-bit error code of RST_STREAM (offset 0) or GOAWAY (offset 4)."""
    if len(payload) < offset + 4:
        raise ProtocolError("frame too short for its error code", FRAME_SIZE_ERROR)
    return int.from_bytes(payload[offset : offset + 4], "big")


def goaway_last_stream(payload: bytes) -> int:
    if len(payload) < 8:
        raise ProtocolError("GOAWAY payload shorter than 8 bytes", FRAME_SIZE_ERROR)
    return int.from_bytes(payload[:4], "big") & 0x7FFFFFFF


# -- HPACK, requests (RFC 7541 section 6, no dynamic table) --------------------------


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode("latin-1")
    return _integer(len(raw), 7, 0x00) + raw


def indexed(index: int) -> bytes:
    """A field the static table holds whole (`:method: POST` is 3, `:scheme: https` 7)."""
    return _integer(index, 7, 0x80)


def literal(name: str | int, value: str, *, sensitive: bool = False) -> bytes:
    """A field not added to any table; `name` a static-table index or a lower-case name."""
    first = 0x10 if sensitive else 0x00  # "never indexed" or "without indexing"
    if isinstance(name, int):
        return _integer(name, 4, first) + _string(value)
    return bytes([first]) + _string(name) + _string(value)


# Static-table indexes (RFC 7541 appendix A)
METHOD_POST, SCHEME_HTTP, SCHEME_HTTPS, PATH, AUTHORITY = 3, 6, 7, 4, 1
CONTENT_TYPE, USER_AGENT = 31, 58


class HeaderDecoder:
    """The server's header blocks, in order (its dynamic table lives across them)."""

    def __init__(self, max_header_list_size: int = 64 * 1024) -> None:
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = max_header_list_size

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        try:
            fields = self._decoder.decode(block, raw=True)
        except (hpack.exceptions.HPACKError, ValueError, IndexError) as exc:
            raise ProtocolError(f"header block: {type(exc).__name__}", COMPRESSION_ERROR) from exc
        return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in fields]
