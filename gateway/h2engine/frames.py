"""HTTP/2 frame layout (RFC 9113 4, 6): constants and the bytes of each frame we send.

Pure functions over bytes. Parsing lives in `gateway.h2engine.wire`, which
reads frame headers in place (one `struct` call per frame) instead of
building an object per frame: that, and building outbound frames as plain
bytes, is most of what the engine saves over the h2 library.
"""

from __future__ import annotations

import struct
from enum import IntEnum

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER = struct.Struct(">HBBBL")  # 24-bit length as 16+8, type, flags, R + stream id
HEADER_SIZE = 9
U32 = struct.Struct(">L")
SETTING = struct.Struct(">HL")
GOAWAY_HEAD = struct.Struct(">LL")
STREAM_MASK = 0x7FFF_FFFF

DEFAULT_WINDOW = 65_535
DEFAULT_FRAME_SIZE = 16_384
MAX_FRAME_SIZE_LIMIT = 16_777_215
MAX_WINDOW = 2**31 - 1
DEFAULT_TABLE_SIZE = 4096


class FrameType(IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


# Flags (RFC 9113 6.x).
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20


class Setting(IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


class ErrorCode(IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


_pack = HEADER.pack


def frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return _pack(length >> 8, length & 0xFF, kind, flags, stream_id)


def settings(values: dict[int, int]) -> bytes:
    payload = b"".join(SETTING.pack(code, value) for code, value in values.items())
    return frame_header(len(payload), FrameType.SETTINGS, 0, 0) + payload


SETTINGS_ACK = frame_header(0, FrameType.SETTINGS, ACK, 0)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame_header(4, FrameType.WINDOW_UPDATE, 0, stream_id) + U32.pack(increment)


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame_header(4, FrameType.RST_STREAM, 0, stream_id) + U32.pack(code)


def ping_ack(opaque: bytes) -> bytes:
    return frame_header(8, FrameType.PING, ACK, 0) + opaque


def goaway(last_stream_id: int, code: int) -> bytes:
    return frame_header(8, FrameType.GOAWAY, 0, 0) + GOAWAY_HEAD.pack(last_stream_id, code)
