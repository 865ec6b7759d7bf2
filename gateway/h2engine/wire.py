"""One HTTP/2 connection's protocol state, without I/O: bytes in, callbacks out, bytes to send.

Why our own instead of the h2 library: h2 spent about half of the engine's
CPU on a small gRPC call (an object and a state-machine walk per frame and
event, header validation passes both ways, docs/grpc.md), and the gateway
needs only the part of HTTP/2 a proxy of gRPC uses: streams opened by the
client side, no server push, priorities ignored. What it keeps of RFC 9113:
frame sizes, stream states (closed streams' late frames are dropped, their
DATA still returned to the connection window), both flow-control windows
each way, SETTINGS (acknowledged, INITIAL_WINDOW_SIZE applied to open
streams), PING, GOAWAY, CONTINUATION, padding, and the header rules of
`gateway.h2engine.blocks`. HPACK: `hpackin` (decoder), `hpackout` (table-less
encoder).

Received frames are turned into calls on a `WireHandler` as they are
parsed; a connection error raises `ProtocolError` (the caller sends GOAWAY
and closes); a stream error resets the stream and is reported as
`on_reset`. The sending half (`WireSender`, gateway.h2engine.wiresend)
accumulates outbound frames in one buffer taken with `data_to_send`.
"""

from __future__ import annotations

from typing import Protocol

from gateway.h2engine import frames as f
from gateway.h2engine.blocks import Malformed, check_request, check_response, check_trailers
from gateway.h2engine.frames import ErrorCode, FrameType, Setting
from gateway.h2engine.grpcwire import RawHeaders
from gateway.h2engine.hpackin import BlockDecoder, HeaderListTooLarge, HpackError
from gateway.h2engine.wiresend import (
    NoStreamAvailable,
    ProtocolError,
    StreamClosed,
    StreamState,
    WireSender,
)

__all__ = ["H2Wire", "NoStreamAvailable", "ProtocolError", "StreamClosed", "WireHandler"]

_HEADER = f.HEADER
_U32 = f.U32
_MASK = f.STREAM_MASK
_DATA, _HEADERS, _WINDOW = FrameType.DATA, FrameType.HEADERS, FrameType.WINDOW_UPDATE
_MAX_FRAGMENTS = 64  # frames of one header block (a 32 KiB block needs 3 at the default size)


class WireHandler(Protocol):
    def on_headers(self, stream_id: int, headers: RawHeaders, end_stream: bool) -> None:
        """A request (server side) or a final response (client side)."""

    def on_trailers(self, stream_id: int, headers: RawHeaders) -> None:
        """Trailers: the stream's last frame from the peer."""

    def on_data(self, stream_id: int, data: memoryview, flow: int, end_stream: bool) -> None: ...
    def on_reset(self, stream_id: int, code: int) -> None: ...
    def on_window(self, stream_id: int) -> None:
        """Send window grew (stream_id 0: the connection's)."""

    def on_settings(self) -> None: ...
    def on_settings_ack(self) -> None: ...
    def on_goaway(self, code: int, last_stream_id: int) -> None: ...
    def on_refused(self, stream_id: int) -> None:
        """A new stream was reset at once (over the concurrency limit, or malformed)."""


class _Stream:
    __slots__ = ("answered", "local_closed", "recv_unacked", "recv_window", "remote_closed", "send")

    def __init__(self, send: int, receive: int) -> None:
        self.send = send
        self.recv_window = receive
        self.recv_unacked = 0
        self.answered = False  # headers received (request, or final response)
        self.local_closed = False
        self.remote_closed = False


class H2Wire(WireSender):
    """The protocol state of one connection, either side (see the module docstring)."""

    def __init__(
        self,
        handler: WireHandler,
        *,
        client_side: bool,
        settings: dict[int, int],
        max_header_list_size: int,
    ) -> None:
        super().__init__(client_side=client_side, settings=settings)
        self.handler = handler
        self._local_frame = self.local[Setting.MAX_FRAME_SIZE]
        self._local_streams = self.local.get(Setting.MAX_CONCURRENT_STREAMS, 2**31)
        self._max_block = 2 * max_header_list_size
        self._remote_table_size = f.DEFAULT_TABLE_SIZE
        self.decoder = BlockDecoder(max_header_list_size)
        self._buffer = b""
        self._preface = not client_side  # the server reads the client's preface first
        self._settings_seen = False
        self._continued: tuple[int, int, list[bytes]] | None = None

    # ---- receiving ----

    def receive(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        pos = 0
        if self._preface:
            if len(buffer) < len(f.PREFACE):
                if not f.PREFACE.startswith(buffer):
                    raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "no client preface")
                self._buffer = buffer
                return
            if not buffer.startswith(f.PREFACE):
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "no client preface")
            self._preface = False
            pos = len(f.PREFACE)
        view = memoryview(buffer)
        size = len(buffer)
        unpack = _HEADER.unpack_from
        while size - pos >= 9:
            high, low, kind, flags, stream_id = unpack(buffer, pos)
            length = high << 8 | low
            if length > self._local_frame:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "frame larger than our maximum")
            end = pos + 9 + length
            if end > size:
                break
            stream_id &= _MASK
            if kind == _DATA and self._continued is None and self._settings_seen:
                self._data(flags, stream_id, view[pos + 9 : end], length)
            else:
                self._frame(kind, flags, stream_id, buffer[pos + 9 : end])
            pos = end
        self._buffer = buffer[pos:] if pos < size else b""

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if not self._settings_seen and (kind != FrameType.SETTINGS or flags & f.ACK):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "first frame is not SETTINGS")
        if self._continued is not None and (
            kind != FrameType.CONTINUATION or stream_id != self._continued[0]
        ):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "header block interrupted")
        if kind == _HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == _DATA:
            self._data(flags, stream_id, memoryview(payload), len(payload))
        elif kind == _WINDOW:
            self._window_update(stream_id, payload)
        elif kind == FrameType.CONTINUATION:
            self._continuation(flags, stream_id, payload)
        elif kind == FrameType.SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == FrameType.RST_STREAM:
            self._rst(stream_id, payload)
        elif kind == FrameType.PING:
            if stream_id or len(payload) != 8:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "bad PING")
            if not flags & f.ACK:
                self._out += f.ping_ack(payload)
        elif kind == FrameType.GOAWAY:
            if stream_id or len(payload) < 8:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "bad GOAWAY")
            last, code = f.GOAWAY_HEAD.unpack_from(payload)
            self.handler.on_goaway(code, last & _MASK)
        elif kind == FrameType.PRIORITY:
            if not stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:
                self._stream_error(stream_id, ErrorCode.FRAME_SIZE_ERROR)
        elif kind == FrameType.PUSH_PROMISE:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE (push is off)")
        # Unknown frame types are ignored (RFC 9113 4.1).

    def _idle(self, stream_id: int) -> bool:
        """An id the peer could not have used yet: frames on it are connection errors."""
        if (stream_id & 1) == (0 if self.client_side else 1):  # the peer opens these
            return stream_id > self.highest_inbound
        return stream_id >= self._next_id

    def _data(self, flags: int, stream_id: int, payload: memoryview, flow: int) -> None:
        if not stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        if flow > self.recv_window:
            raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "connection window exceeded")
        self.recv_window -= flow
        data = payload
        if flags & f.PADDED:
            pad = payload[0] if flow else 256
            if pad >= flow:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
            data = payload[1 : flow - pad]
        stream = self.streams.get(stream_id)
        if stream is None or stream.remote_closed or not stream.answered:
            if stream is None and self._idle(stream_id):
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
            self.acknowledge(0, flow)  # dropped: its share of the window comes back
            if stream is not None:
                code = ErrorCode.STREAM_CLOSED if stream.answered else ErrorCode.PROTOCOL_ERROR
                self._stream_error(stream_id, code)
            return
        if flow > stream.recv_window:
            self.acknowledge(0, flow)
            self._stream_error(stream_id, ErrorCode.FLOW_CONTROL_ERROR)
            return
        stream.recv_window -= flow
        end = bool(flags & f.END_STREAM)
        if end:
            stream.remote_closed = True
            if stream.local_closed:
                del self.streams[stream_id]
        self.handler.on_data(stream_id, data, flow, end)

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        start, end = 0, len(payload)
        if flags & f.PADDED:
            if not payload:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "empty padded HEADERS")
            start, end = 1, end - payload[0]
        if flags & f.PRIORITY_FLAG:
            start += 5
        if end < start:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
        fragment = payload[start:end]
        if not flags & f.END_HEADERS:
            self._continued = (stream_id, flags, [fragment])
            return
        self._block(stream_id, bool(flags & f.END_STREAM), fragment)

    def _continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continued is None:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        first_flags, fragments = self._continued[1], self._continued[2]
        fragments.append(payload)
        # Bounded in bytes and in frames: empty CONTINUATION frames add no bytes
        # but cost a call each ("CONTINUATION flood").
        if len(fragments) > _MAX_FRAGMENTS or sum(len(x) for x in fragments) > self._max_block:
            raise ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if flags & f.END_HEADERS:
            self._continued = None
            self._block(stream_id, bool(first_flags & f.END_STREAM), b"".join(fragments))

    def _block(self, stream_id: int, end: bool, block: bytes) -> None:
        try:  # decoded even for a closed stream: the HPACK table must stay in step
            headers = self.decoder.decode(block)
        except HeaderListTooLarge:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "header list too large") from None
        except HpackError:
            raise ProtocolError(ErrorCode.COMPRESSION_ERROR, "bad header block") from None
        stream = self.streams.get(stream_id)
        if stream is None:
            if not self.client_side and stream_id & 1 and stream_id > self.highest_inbound:
                self._open_inbound(stream_id, headers, end)
            elif self._idle(stream_id):
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "HEADERS on an idle stream")
            return  # a closed stream: dropped
        if stream.remote_closed:
            self._stream_error(stream_id, ErrorCode.STREAM_CLOSED)
            return
        trailers = stream.answered
        try:
            if trailers:
                if not end:
                    raise Malformed("trailers without END_STREAM")
                check_trailers(headers)
            else:
                if check_response(headers) < 200:
                    if end:
                        raise Malformed("informational response with END_STREAM")
                    return  # 1xx: the final response follows
                stream.answered = True
        except Malformed:
            self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR)
            return
        if end:
            stream.remote_closed = True
            if stream.local_closed:
                del self.streams[stream_id]
        if trailers:
            self.handler.on_trailers(stream_id, headers)
        else:
            self.handler.on_headers(stream_id, headers, end)

    def _open_inbound(self, stream_id: int, headers: RawHeaders, end: bool) -> None:
        self.highest_inbound = stream_id
        if len(self.streams) >= self._local_streams:
            self._out += f.rst_stream(stream_id, ErrorCode.REFUSED_STREAM)
            self.handler.on_refused(stream_id)
            return
        try:
            check_request(headers)
        except Malformed:
            self._out += f.rst_stream(stream_id, ErrorCode.PROTOCOL_ERROR)
            self.handler.on_refused(stream_id)
            return
        stream = StreamState(self.remote_initial_window, self._local_window)
        stream.answered = True
        stream.remote_closed = end
        self.streams[stream_id] = stream
        self.handler.on_headers(stream_id, headers, end)

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if payload:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            self.handler.on_settings_ack()
            return
        if len(payload) % 6:
            raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length")
        for offset in range(0, len(payload), 6):
            code, value = f.SETTING.unpack_from(payload, offset)
            self._apply(code, value)
        self._settings_seen = True
        self._out += f.SETTINGS_ACK
        self.handler.on_settings()

    def _apply(self, code: int, value: int) -> None:
        if code == Setting.INITIAL_WINDOW_SIZE:
            if value > f.MAX_WINDOW:
                raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
            delta = value - self.remote_initial_window
            self.remote_initial_window = value
            for stream in self.streams.values():
                stream.send += delta
                if stream.send > f.MAX_WINDOW:
                    raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow")
        elif code == Setting.MAX_FRAME_SIZE:
            if not f.DEFAULT_FRAME_SIZE <= value <= f.MAX_FRAME_SIZE_LIMIT:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
            self.remote_max_frame = value
        elif code == Setting.MAX_CONCURRENT_STREAMS:
            self.remote_max_streams = value
        elif code == Setting.HEADER_TABLE_SIZE:
            if value != self._remote_table_size:
                self._remote_table_size = value
                self.encoder.table_size_changed()
        elif code == Setting.ENABLE_PUSH and value > 1:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1")

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        increment = _U32.unpack(payload)[0] & _MASK
        if not stream_id:
            if not increment:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > f.MAX_WINDOW:
                raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow")
            self.handler.on_window(0)
            return
        stream = self.streams.get(stream_id)
        if stream is None:
            if self._idle(stream_id):
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return
        if not increment:
            self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR)
            return
        stream.send += increment
        if stream.send > f.MAX_WINDOW:
            self._stream_error(stream_id, ErrorCode.FLOW_CONTROL_ERROR)
            return
        self.handler.on_window(stream_id)

    def _rst(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM length")
        if not stream_id or (stream_id not in self.streams and self._idle(stream_id)):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
        if self.streams.pop(stream_id, None) is not None:
            self.handler.on_reset(stream_id, _U32.unpack(payload)[0])

    def _stream_error(self, stream_id: int, code: ErrorCode) -> None:
        """Reset the stream ourselves and tell the handler as if the peer had."""
        self._out += f.rst_stream(stream_id, code)
        if self.streams.pop(stream_id, None) is not None:
            self.handler.on_reset(stream_id, int(code))
