"""One HTTP/2 connection to LND, as a gRPC client needs it: streams out, answers in.

The frame rules live in gateway.lightning.lnd.wire; this is the asyncio side:
the connection preface and SETTINGS, flow control both ways, PING answers
and keepalive, GOAWAY and RST_STREAM, and one `Call` per stream. A call sends
one request message and reads the answer's messages and its gRPC status. A
connection that breaks fails its calls with UNAVAILABLE, as gRPC does; the
client (gateway.lightning.lnd.seller) then opens a new one.

Memory is bounded: the receive window we grant a stream is given back only
as its reader takes messages, so a reader that stops reading stops the
sender (a settlement stream never buffers more than one window).
"""

from __future__ import annotations

import asyncio
import os
from typing import cast

from gateway.lightning.lnd.wire import frames as f
from gateway.lightning.lnd.wire.grpcframe import MessageReader, status_of
from gateway.lightning.lnd.wire.protobuf import WireError

RECEIVE_WINDOW = 4 * 1024 * 1024  # per stream and (initially) for the connection
GRANT_AT = RECEIVE_WINDOW // 4  # window given back in steps this large (fewer frames)
KEEPALIVE_SECONDS = 30.0  # PING while calls are open (LND allows one every 5 s)
# LND's gRPC server sends a PING (bandwidth estimation) with nearly every answer; its ACK
# waits this long for the next request to share a write (a send costs ~20-40 us here).
PING_ACK_DELAY = 0.01
KEEPALIVE_TIMEOUT = 10.0


class CallFailed(Exception):
    """A call ended without an answer: `code` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Call:
    """One stream: the request went out; answer messages come in, then the status."""

    def __init__(self, connection: H2Connection, stream_id: int, window: int) -> None:
        self._connection = connection
        self.id = stream_id
        self.send_window = window
        self.headers: list[tuple[str, str]] | None = None
        self.status: tuple[str, str] | None = None  # (code, message) once ended
        self._reader = MessageReader()
        self._wake: asyncio.Future[None] | None = None
        self._ungranted = 0  # bytes received that the window has not been given back for
        self.ended = False

    # -- from the connection ---------------------------------------------------------
    def on_headers(self, fields: list[tuple[str, str]], end_stream: bool) -> None:
        if self.headers is None and not end_stream:
            http = next((v for n, v in fields if n == ":status"), "")
            if http != "200":
                self.fail("UNKNOWN", f"HTTP status {http or '(none)'} from LND")
                return
            self.headers = fields
            return
        if not end_stream:
            self.fail("INTERNAL", "a second header block without END_STREAM")
            return
        status = status_of(fields)
        if status is None and self.headers is None:  # trailers-only must carry the status
            code = next((v for n, v in fields if n == ":status"), "")
            status = ("UNKNOWN", f"HTTP status {code or '(none)'} from LND, no grpc-status")
        if status is None:
            status = ("INTERNAL", "the answer ended without a grpc-status")
        elif status[0] == "OK" and self._reader.partial:
            status = ("INTERNAL", "the answer ended inside a message")
        self._end(status)

    def on_data(self, data: bytes, end_stream: bool) -> None:
        self._ungranted += len(data)
        try:
            self._reader.feed(data)
        except WireError as exc:
            self.fail("INTERNAL", str(exc))
            return
        if end_stream:
            self._end(("INTERNAL", "the answer ended without trailers"))
        elif not self._reader.messages:
            self._give_back()  # only part of a message is here: the sender must go on
        self._notify()

    def _give_back(self) -> None:
        if self._ungranted >= GRANT_AT and not self.ended:
            self._connection.grant(self.id, self._ungranted)
            self._ungranted = 0

    def fail(self, code: str, message: str) -> None:
        if not self.ended:
            self._connection.reset(self.id, f.CANCEL)
            self._end((code, message))

    def _end(self, status: tuple[str, str]) -> None:
        if self.ended:
            return
        self.ended = True
        self.status = status
        self._connection.forget(self.id)
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # -- for the caller ----------------------------------------------------------------
    async def next_message(self) -> bytes | None:
        """The next answer message; None once the answer ended with status OK; raises
        CallFailed for any other status."""
        reader = self._reader
        while not reader.messages:
            if self.ended:
                assert self.status is not None
                if self.status[0] == "OK":
                    return None
                raise CallFailed(*self.status)
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        message = reader.messages.popleft()
        if not reader.messages:  # all taken: the window opens again
            self._give_back()
        return message

    def cancel(self) -> None:
        """The caller is done (deadline, or a stream it no longer wants)."""
        if not self.ended:
            self._connection.reset(self.id, f.CANCEL)
            self._end(("CANCELLED", "cancelled by the client"))


class H2Connection(asyncio.Protocol):
    """Client side of one HTTP/2 connection (prior TLS with ALPN h2, or h2c)."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = loop.create_future()  # the server's SETTINGS
        self._reader = f.FrameReader()
        self._decoder = f.HeaderDecoder()
        self._calls: dict[int, Call] = {}
        self._next_id = 1
        self._peer_window = f.DEFAULT_WINDOW  # the server's initial stream window
        self._peer_max_frame = f.DEFAULT_MAX_FRAME
        self._peer_max_streams = 2**31
        self._send_window = f.DEFAULT_WINDOW  # connection-level window for our DATA
        self._window_wake: asyncio.Future[None] | None = None
        self._conn_ungranted = 0
        self._header_block: tuple[int, int, bytearray] | None = None  # stream, flags, block
        self._out: list[bytes] = []
        self._flush_at: tuple[asyncio.Handle, float] | None = None  # the pending flush, delay
        self._keepalive: asyncio.TimerHandle | None = None
        self._ping_due: asyncio.TimerHandle | None = None
        self.going_away = False
        self.closed = False
        self.failure = "connection closed"

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        settings = {
            f.ENABLE_PUSH: 0,
            f.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW,
            f.MAX_HEADER_LIST_SIZE: 64 * 1024,
        }
        opening = f.PREFACE + f.settings(settings)
        if RECEIVE_WINDOW > f.DEFAULT_WINDOW:  # the connection's window only grows
            opening += f.window_update(0, RECEIVE_WINDOW - f.DEFAULT_WINDOW)
        self._send(opening)

    def data_received(self, data: bytes) -> None:
        try:
            for kind, flags, stream, payload in self._reader.feed(data):
                self._frame(kind, flags, stream, payload)
        except f.ProtocolError as exc:
            self._abort(f"LND broke HTTP/2: {exc}", exc.code)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_keepalive()
        reason = self.failure if exc is None else f"connection lost: {exc}"
        if not self.ready.done():
            self.ready.set_exception(CallFailed("UNAVAILABLE", reason))
            self.ready.exception()  # retrieved: the connector may have given up already
        for call in list(self._calls.values()):
            call._end(("UNAVAILABLE", reason))
        self._wake_senders()

    def pause_writing(self) -> None:  # requests are small; the transport buffers them
        pass

    def resume_writing(self) -> None:
        pass

    # -- frames in ---------------------------------------------------------------------
    def _frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if self._header_block is not None and kind != f.CONTINUATION:
            raise f.ProtocolError("a header block interrupted by another frame")
        if kind == f.DATA:
            self._data(flags, stream, f.unpad(kind, flags, payload), len(payload))
        elif kind in (f.HEADERS, f.CONTINUATION):
            self._headers(kind, flags, stream, payload)
        elif kind == f.SETTINGS:
            if not flags & f.ACK:
                self._settings(f.parse_settings(payload))
        elif kind == f.WINDOW_UPDATE:
            self._window_update(stream, f.window_increment(payload))
        elif kind == f.PING:
            if not flags & f.ACK:
                self._send(f.frame(f.PING, f.ACK, 0, payload), delay=PING_ACK_DELAY)
            elif self._ping_due is not None:
                self._ping_due.cancel()
                self._ping_due = None
        elif kind == f.RST_STREAM:
            call = self._calls.get(stream)
            if call is not None:
                code = f.error_code(payload)
                name = "UNAVAILABLE" if code == f.REFUSED_STREAM else "CANCELLED"
                call._end((name if code in (f.REFUSED_STREAM, f.CANCEL) else "INTERNAL",
                           f"stream reset by LND (HTTP/2 error {code})"))  # fmt: skip
        elif kind == f.GOAWAY:
            self._goaway(f.goaway_last_stream(payload), f.error_code(payload, 4))
        elif kind == f.PUSH_PROMISE:
            raise f.ProtocolError("PUSH_PROMISE although push is disabled")
        # PRIORITY and unknown frame types are ignored (RFC 9113 section 5.5)

    def _data(self, flags: int, stream: int, data: bytes, flow: int) -> None:
        self._conn_ungranted += flow  # the whole frame counts, padding included
        if self._conn_ungranted >= max(RECEIVE_WINDOW, f.DEFAULT_WINDOW) // 2:
            self._send(f.window_update(0, self._conn_ungranted))
            self._conn_ungranted = 0
        call = self._calls.get(stream)
        if call is not None:
            call.on_data(data, bool(flags & f.END_STREAM))

    def _headers(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == f.HEADERS:
            block = bytearray(f.unpad(kind, flags, payload))
            self._header_block = (stream, flags, block)
        else:
            if self._header_block is None or self._header_block[0] != stream:
                raise f.ProtocolError("CONTINUATION without its HEADERS")
            self._header_block[2].extend(payload)
        if not flags & f.END_HEADERS:
            return
        stream, first_flags, block = self._header_block
        self._header_block = None
        fields = self._decoder.decode(bytes(block))  # always: the table must stay in step
        call = self._calls.get(stream)
        if call is not None:
            call.on_headers(fields, bool(first_flags & f.END_STREAM))

    def _settings(self, values: dict[int, int]) -> None:
        if f.INITIAL_WINDOW_SIZE in values:
            delta = values[f.INITIAL_WINDOW_SIZE] - self._peer_window
            self._peer_window = values[f.INITIAL_WINDOW_SIZE]
            for call in self._calls.values():
                call.send_window += delta
        self._peer_max_frame = values.get(f.MAX_FRAME_SIZE, self._peer_max_frame)
        self._peer_max_streams = values.get(f.MAX_CONCURRENT_STREAMS, self._peer_max_streams)
        self._send(f.frame(f.SETTINGS, f.ACK, 0))
        if not self.ready.done():
            self.ready.set_result(None)
        self._wake_senders()

    def _window_update(self, stream: int, increment: int) -> None:
        if increment == 0:
            raise f.ProtocolError("WINDOW_UPDATE of 0")
        if stream == 0:
            self._send_window += increment
        elif (call := self._calls.get(stream)) is not None:
            call.send_window += increment
        self._wake_senders()

    def _goaway(self, last_stream: int, code: int) -> None:
        self.going_away = True
        self.failure = f"LND is closing the connection (GOAWAY, HTTP/2 error {code})"
        for stream, call in list(self._calls.items()):
            if stream > last_stream:  # never processed: safe to try again elsewhere
                call._end(("UNAVAILABLE", self.failure))
        if not self._calls and self.transport is not None:
            self.transport.close()

    # -- for calls ---------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return not (self.closed or self.going_away) and self._next_id < 2**31 - 2

    async def open_call(self, header_block: bytes, request: bytes) -> Call:
        """Send one request (headers, then the message with END_STREAM) on a new stream."""
        while len(self._calls) >= self._peer_max_streams and self.usable:
            await self._wait_window()
        if not self.usable:
            raise CallFailed("UNAVAILABLE", self.failure)
        stream = self._next_id
        self._next_id += 2
        call = Call(self, stream, self._peer_window)
        self._calls[stream] = call
        self._send(f.frame(f.HEADERS, f.END_HEADERS, stream, header_block))
        self._start_keepalive()
        view = memoryview(request)
        while view:
            allowed = min(self._send_window, call.send_window, self._peer_max_frame)
            if allowed <= 0:
                if call.ended or self.closed:
                    raise CallFailed(*(call.status or ("UNAVAILABLE", self.failure)))
                await self._wait_window()
                continue
            part, view = view[:allowed], view[allowed:]
            self._send_window -= len(part)
            call.send_window -= len(part)
            self._send(f.frame(f.DATA, 0 if view else f.END_STREAM, stream, bytes(part)))
        return call

    def grant(self, stream: int, amount: int) -> None:
        self._send(f.window_update(stream, amount))

    def reset(self, stream: int, code: int) -> None:
        if stream in self._calls and not self.closed:
            self._send(f.rst_stream(stream, code))

    def forget(self, stream: int) -> None:
        self._calls.pop(stream, None)
        if not self._calls:
            self._stop_keepalive()
            if self.going_away and self.transport is not None:
                self.transport.close()
        self._wake_senders()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self._send(f.frame(f.GOAWAY, 0, 0, (0).to_bytes(4, "big") * 2))
            self._flush()
            self.transport.close()

    # -- output: coalesced per loop iteration ------------------------------------------
    def _send(self, data: bytes, *, delay: float = 0.0) -> None:
        """Queue `data`; everything queued goes out in one write at the end of this loop
        iteration, or within `delay` seconds when nothing else is being sent."""
        self._out.append(data)
        if self._flush_at is not None:
            if delay or self._flush_at[1] == 0.0:
                return
            self._flush_at[0].cancel()  # something that must go now: flush sooner
        handle: asyncio.Handle = (
            self._loop.call_later(delay, self._flush)
            if delay
            else self._loop.call_soon(self._flush)
        )
        self._flush_at = (handle, delay)

    def _flush(self) -> None:
        if self._flush_at is not None:
            self._flush_at[0].cancel()
            self._flush_at = None
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def _abort(self, reason: str, code: int) -> None:
        self.failure = reason
        self._send(f.frame(f.GOAWAY, 0, 0, (0).to_bytes(4, "big") + code.to_bytes(4, "big")))
        self._flush()
        if self.transport is not None:
            self.transport.abort()

    async def _wait_window(self) -> None:
        if self._window_wake is None or self._window_wake.done():
            self._window_wake = self._loop.create_future()
        await self._window_wake

    def _wake_senders(self) -> None:
        if self._window_wake is not None and not self._window_wake.done():
            self._window_wake.set_result(None)

    # -- keepalive while calls are open ------------------------------------------------
    def _start_keepalive(self) -> None:
        if self._keepalive is None and not self.closed:
            self._keepalive = self._loop.call_later(KEEPALIVE_SECONDS, self._ping)

    def _stop_keepalive(self) -> None:
        for timer in (self._keepalive, self._ping_due):
            if timer is not None:
                timer.cancel()
        self._keepalive = self._ping_due = None

    def _ping(self) -> None:
        self._keepalive = None
        if self.closed or not self._calls:
            return
        self._send(f.frame(f.PING, 0, 0, os.urandom(8)))
        self._ping_due = self._loop.call_later(KEEPALIVE_TIMEOUT, self._ping_lost)
        self._start_keepalive()

    def _ping_lost(self) -> None:
        self._ping_due = None
        self.failure = f"LND did not answer a PING within {KEEPALIVE_TIMEOUT:.0f} s"
        if self.transport is not None:
            self.transport.abort()


__all__ = ["Call", "CallFailed", "H2Connection"]
