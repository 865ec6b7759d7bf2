"""The sending half of an HTTP/2 connection's state (sans I/O), and the state both halves share.

`WireSender` owns the streams, both flow-control windows each way, the
peer's settings and the outbound buffer; `gateway.h2engine.wire.H2Wire` adds
the receiving half. Sends are synchronous and never wait: a caller checks
`window` first (gateway.h2engine.channel does), and a send past the peer's
window is a bug reported as a connection error.
"""

from __future__ import annotations

from gateway.h2engine import frames as f
from gateway.h2engine.frames import ErrorCode, FrameType, Setting
from gateway.h2engine.grpcwire import RawHeaders
from gateway.h2engine.hpackout import BlockEncoder

_MASK = f.STREAM_MASK
_DATA, _HEADERS = FrameType.DATA, FrameType.HEADERS


class ProtocolError(Exception):
    """A connection error (RFC 9113 5.4.1): send GOAWAY with `code` and close."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class StreamClosed(Exception):
    """A send on a stream that is closed (for sending) or unknown."""


class NoStreamAvailable(Exception):
    """No new stream: ids used up, or the peer's concurrency limit reached."""


class StreamState:
    __slots__ = ("answered", "local_closed", "recv_unacked", "recv_window", "remote_closed", "send")

    def __init__(self, send: int, receive: int) -> None:
        self.send = send
        self.recv_window = receive
        self.recv_unacked = 0
        self.answered = False  # headers received (request, or final response)
        self.local_closed = False
        self.remote_closed = False


class WireSender:
    """Streams, windows, the peer's settings, and every frame we send."""

    def __init__(self, *, client_side: bool, settings: dict[int, int]) -> None:
        self.client_side = client_side
        self.local = {Setting.INITIAL_WINDOW_SIZE: f.DEFAULT_WINDOW,
                      Setting.MAX_FRAME_SIZE: f.DEFAULT_FRAME_SIZE, **settings}  # fmt: skip
        self._local_window = self.local[Setting.INITIAL_WINDOW_SIZE]
        self.remote_initial_window = f.DEFAULT_WINDOW
        self.remote_max_frame = f.DEFAULT_FRAME_SIZE
        self.remote_max_streams = 2**31
        self.send_window = f.DEFAULT_WINDOW
        self.recv_window = f.DEFAULT_WINDOW
        self._recv_target = f.DEFAULT_WINDOW
        self._recv_unacked = 0
        self.streams: dict[int, StreamState] = {}
        self.highest_inbound = 0
        self._next_id = 1 if client_side else 2
        self.encoder = BlockEncoder()
        self._out = bytearray()

    def initiate(self) -> None:
        if self.client_side:
            self._out += f.PREFACE
        self._out += f.settings({int(k): v for k, v in self.local.items()})

    def grow_connection_window(self, increment: int) -> None:
        self.recv_window += increment
        self._recv_target += increment
        self._out += f.window_update(0, increment)

    def open_stream(self, headers: RawHeaders, *, end_stream: bool) -> int:
        """Client side: a new stream with its request headers sent; its id."""
        stream_id = self._next_id
        if stream_id > _MASK:
            raise NoStreamAvailable("stream ids used up")
        if len(self.streams) >= self.remote_max_streams:
            raise NoStreamAvailable("the peer's concurrency limit")
        self._next_id += 2
        self.streams[stream_id] = StreamState(self.remote_initial_window, self._local_window)
        self.send_headers(stream_id, headers, end_stream=end_stream)
        return stream_id

    def _sendable(self, stream_id: int) -> StreamState:
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_closed:
            raise StreamClosed(stream_id)
        return stream

    def send_headers(self, stream_id: int, headers: RawHeaders, *, end_stream: bool) -> None:
        stream = self._sendable(stream_id)
        block = self.encoder.encode(headers)
        limit = self.remote_max_frame
        flags = f.END_STREAM if end_stream else 0
        out = self._out
        if len(block) <= limit:
            out += f.frame_header(len(block), _HEADERS, flags | f.END_HEADERS, stream_id)
            out += block
        else:
            out += f.frame_header(limit, _HEADERS, flags, stream_id)
            out += block[:limit]
            for start in range(limit, len(block), limit):
                piece = block[start : start + limit]
                last = f.END_HEADERS if start + limit >= len(block) else 0
                out += f.frame_header(len(piece), FrameType.CONTINUATION, last, stream_id)
                out += piece
        if end_stream:
            self._close_local(stream_id, stream)

    def send_data(self, stream_id: int, data: memoryview | bytes, *, end_stream: bool) -> None:
        """DATA within both send windows (the caller checks `window` first)."""
        stream = self._sendable(stream_id)
        size = len(data)
        if size > stream.send or size > self.send_window:
            raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "send beyond the peer's window")
        stream.send -= size
        self.send_window -= size
        out = self._out
        limit = self.remote_max_frame
        if size <= limit:
            out += f.frame_header(size, _DATA, f.END_STREAM if end_stream else 0, stream_id)
            out += data
        else:
            for start in range(0, size, limit):
                piece = data[start : start + limit]
                last = end_stream and start + limit >= size
                out += f.frame_header(len(piece), _DATA, f.END_STREAM if last else 0, stream_id)
                out += piece
        if end_stream:
            self._close_local(stream_id, stream)

    def _close_local(self, stream_id: int, stream: StreamState) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            del self.streams[stream_id]

    def window(self, stream_id: int) -> int:
        """Bytes of DATA the peer accepts on the stream now; StreamClosed if it cannot send."""
        stream = self._sendable(stream_id)
        return min(stream.send, self.send_window)

    def reset(self, stream_id: int, code: int) -> None:
        """RST_STREAM if the stream is still open either way (no-op otherwise)."""
        if self.streams.pop(stream_id, None) is not None:
            self._out += f.rst_stream(stream_id, code)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """`size` received bytes were handed on: give the peer its window back, in batches."""
        self._recv_unacked += size
        if self._recv_unacked * 2 >= self._recv_target:
            self.recv_window += self._recv_unacked
            self._out += f.window_update(0, self._recv_unacked)
            self._recv_unacked = 0
        stream = self.streams.get(stream_id) if stream_id else None
        if stream is not None and not stream.remote_closed:
            stream.recv_unacked += size
            if stream.recv_unacked * 2 >= self._local_window:
                stream.recv_window += stream.recv_unacked
                self._out += f.window_update(stream_id, stream.recv_unacked)
                stream.recv_unacked = 0

    def goaway(self, code: int, last_stream_id: int | None = None) -> None:
        last = self.highest_inbound if last_stream_id is None else last_stream_id
        self._out += f.goaway(last, code)

    def data_to_send(self) -> bytearray:
        out = self._out
        if out:
            self._out = bytearray()
        return out
