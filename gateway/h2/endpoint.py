"""One HTTP/2 connection on asyncio, either side: h2's state machine, the socket, the streams.

`Endpoint` turns bytes into h2 events and events into per-stream `Channel`
state; relays read and write through channels, which enforce the flow-control
and backpressure rules: a channel hands out received DATA and re-opens the
peer's window only when the relay `ack`s it (after forwarding), and a send
waits for both the peer's window and the socket's writability. Every wait has
the idle deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import ClassVar

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from gateway.h2 import framerepr
from gateway.h2.errors import ConnectionGone, StreamIdle, StreamReset
from gateway.h2.grpcwire import RawHeaders
from gateway.h2.limits import H2Limits

log = logging.getLogger("gateway.h2")
framerepr.install()

CANCEL = int(h2.errors.ErrorCodes.CANCEL)
NO_ERROR = int(h2.errors.ErrorCodes.NO_ERROR)
REFUSED_STREAM = int(h2.errors.ErrorCodes.REFUSED_STREAM)
INTERNAL_ERROR = int(h2.errors.ErrorCodes.INTERNAL_ERROR)
_DEFAULT_WINDOW = 65_535
_WRITE_NOW = 16 * 1024  # DATA at least this large is written at once, not coalesced
_Inputs = h2.connection.ConnectionInputs


class _GoawayKeepsStreams(h2.connection.H2ConnectionStateMachine):
    """h2's connection machine, except that GOAWAY does not end in-flight streams.

    h2 closes the whole connection on sending or receiving GOAWAY, but RFC 9113
    6.8 lets streams up to the last stream id finish: that is what graceful
    shutdown (ours, or an upstream's) needs. The engine itself refuses new
    streams after a GOAWAY.
    """

    def process_input(self, input_: h2.connection.ConnectionInputs) -> list[h2.events.Event]:
        if input_ in (_Inputs.SEND_GOAWAY, _Inputs.RECV_GOAWAY) and self.state in (
            h2.connection.ConnectionState.CLIENT_OPEN,
            h2.connection.ConnectionState.SERVER_OPEN,
        ):
            return []
        return super().process_input(input_)


class Channel:
    """One stream as a relay sees it: received bytes waiting for `read`, and sends."""

    __slots__ = (
        "_chunks",
        "_fc_handed",
        "_fc_queued",
        "_inbound",
        "_window",
        "ended",
        "endpoint",
        "headers",
        "local_closed",
        "lost",
        "reset_code",
        "rst",
        "stream_id",
        "trailers",
    )

    def __init__(self, endpoint: Endpoint, stream_id: int) -> None:
        self.endpoint = endpoint
        self.stream_id = stream_id
        self._chunks: list[bytes] = []
        self._fc_queued = 0  # flow-controlled bytes received, not yet handed out
        self._fc_handed = 0  # handed out by read(), not yet acked
        self._inbound = asyncio.Event()
        self._window = asyncio.Event()
        self.headers: RawHeaders | None = None  # response headers (client side only)
        self.trailers: RawHeaders | None = None
        self.ended = False  # the peer sent END_STREAM
        self.reset_code: int | None = None  # the peer reset the stream (before ending it)
        self.lost = False  # the connection closed before the peer ended the stream
        self.local_closed = False  # we sent END_STREAM or RST_STREAM: nothing more to send
        self.rst = False  # a RST_STREAM was sent or received: the stream is over both ways

    # ---- fed by the endpoint, synchronously, while it parses bytes ----

    def on_data(self, data: bytes, flow_controlled: int) -> None:
        self._chunks.append(data)
        self._fc_queued += flow_controlled
        self._inbound.set()

    def on_headers(self, headers: RawHeaders) -> None:
        self.headers = headers
        self._inbound.set()

    def on_trailers(self, trailers: RawHeaders) -> None:
        self.trailers = trailers

    def on_end(self) -> None:
        self.ended = True
        self._inbound.set()

    def on_reset(self, code: int) -> None:
        """A reset after END_STREAM only stops our sending: what was received stays readable."""
        self.local_closed = self.rst = True
        if not self.ended:
            self.reset_code = code
        self._inbound.set()
        self._window.set()

    def on_lost(self) -> None:
        self.lost = not self.ended
        self._inbound.set()
        self._window.set()

    def on_window(self) -> None:
        self._window.set()

    # ---- used by relays ----

    @property
    def side(self) -> str:
        return self.endpoint.side

    @property
    def buffered(self) -> int:
        """Flow-controlled bytes received and not yet handed out by `read`."""
        return self._fc_queued

    @property
    def at_end(self) -> bool:
        """Nothing left to read: the peer ended the stream and every byte was handed out."""
        return self.ended and not self._chunks

    def _check(self) -> None:
        if self.reset_code is not None:
            raise StreamReset(self.reset_code, self.side)
        if self.lost:
            raise ConnectionGone(self.side)

    async def _wait(self, event: asyncio.Event) -> None:
        event.clear()
        try:
            async with asyncio.timeout(self.endpoint.limits.idle_stream_timeout):
                await event.wait()
        except TimeoutError:
            raise StreamIdle(self.side) from None

    async def response_headers(self) -> RawHeaders:
        """The peer's final response headers (client side)."""
        while self.headers is None:
            self._check()
            await self._wait(self._inbound)
        return self.headers

    async def read(self) -> tuple[bytes, int] | None:
        """Every byte received so far and its flow-controlled size, or None at the end.

        The caller must `ack` the size once it has forwarded the bytes: only
        then does the peer get its window back.
        """
        while True:
            if self._chunks:
                data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                size, self._fc_queued = self._fc_queued, 0
                self._fc_handed += size
                return data, size
            if self.ended:
                return None
            self._check()
            await self._wait(self._inbound)

    def ack(self, size: int) -> None:
        self._fc_handed -= size
        self.endpoint.acknowledge(self.stream_id, size)

    def send_headers(self, headers: RawHeaders, *, end_stream: bool = False) -> None:
        self._check_sendable()
        self.endpoint.send_headers(self.stream_id, headers, end_stream=end_stream)
        if end_stream:
            self.local_closed = True

    async def send_data(self, data: bytes, *, end_stream: bool) -> None:
        """Send within the peer's windows, waiting (idle deadline) for window and socket."""
        endpoint = self.endpoint
        view = memoryview(data)
        while view:
            await endpoint.writable()
            self._check_sendable()
            window = endpoint.window(self.stream_id)
            if window <= 0:
                await self._wait(self._window)
                continue
            size = min(window, len(view), endpoint.limits.write_batch)
            last = size == len(view)
            endpoint.send_data(self.stream_id, view[:size], end_stream=end_stream and last)
            view = view[size:]
        if not data and end_stream:
            self._check_sendable()
            endpoint.end_stream(self.stream_id)
        if end_stream:
            self.local_closed = True

    def _check_sendable(self) -> None:
        if self.endpoint.closed:
            raise ConnectionGone(self.side)
        if self.local_closed:
            raise StreamReset(self.reset_code if self.reset_code is not None else CANCEL, self.side)

    @property
    def finished(self) -> bool:
        """Closed both ways: nothing to reset."""
        return self.rst or self.lost or (self.local_closed and self.ended)

    def reset(self, code: int) -> None:
        """RST_STREAM unless the stream is already over (never raises: used on the way out)."""
        if self.finished or self.endpoint.closed:
            self.local_closed = True
            return
        self.local_closed = self.rst = True
        self.endpoint.reset(self.stream_id, code)

    def discard(self) -> None:
        """Drop unread bytes, giving their share of the connection window back."""
        self._chunks.clear()
        pending = self._fc_queued + self._fc_handed
        self._fc_queued = self._fc_handed = 0
        if pending:
            self.endpoint.acknowledge(self.stream_id, pending)


class Endpoint(asyncio.Protocol):
    """The part of an HTTP/2 connection both sides share."""

    side: ClassVar[str] = "peer"
    client_side: ClassVar[bool] = False

    def __init__(
        self,
        limits: H2Limits,
        *,
        receive_window: int,
        settings: dict[h2.settings.SettingCodes, int],
    ) -> None:
        self.limits = limits
        # Outbound blocks are built from validated parts (gateway.h2.headers, or blocks h2
        # validated on the way in), so h2's second validation pass is skipped: it cost
        # about a tenth of the CPU of a small unary call.
        config = h2.config.H2Configuration(
            client_side=self.client_side,
            header_encoding=None,
            validate_outbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.state_machine = _GoawayKeepsStreams()
        self.h2.local_settings = h2.settings.Settings(
            client=self.client_side,
            initial_values={
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.stream_window,
                **settings,
            },
        )
        self.h2.decoder.max_header_list_size = limits.max_header_list_size
        self._receive_window = receive_window
        self.channels: dict[int, Channel] = {}
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._settings_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False

    # ---- asyncio.Protocol ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h2.initiate_connection()
        if self._receive_window > _DEFAULT_WINDOW:
            self.h2.increment_flow_control_window(self._receive_window - _DEFAULT_WINDOW)
        self.flush()
        loop = asyncio.get_running_loop()
        self._settings_timer = loop.call_later(self.limits.settings_timeout, self._settings_late)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            code = getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR)
            log.info("closing HTTP/2 connection on a protocol error", extra=self._log(exc))
            self.abort(int(code))
            return
        for event in events:
            self.dispatch(event)
        self.flush()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def eof_received(self) -> bool | None:
        return None  # close our side too: HTTP/2 has no half-closed connections

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._settings_timer is not None:
            self._settings_timer.cancel()
        self._writable.set()  # wake writers: they see `closed`
        for channel in list(self.channels.values()):
            channel.on_lost()

    # ---- events ----

    def dispatch(self, event: h2.events.Event) -> None:
        """Route one h2 event; subclasses handle request and response headers first."""
        if isinstance(event, h2.events.DataReceived):
            channel = self.channels.get(event.stream_id)
            size = event.flow_controlled_length or 0
            if channel is None or channel.rst:
                if size:
                    self.h2.acknowledge_received_data(size, event.stream_id)
            else:
                channel.on_data(event.data or b"", size)
        elif isinstance(event, h2.events.StreamEnded):
            if (channel := self.channels.get(event.stream_id)) is not None:
                channel.on_end()
        elif isinstance(event, h2.events.TrailersReceived):
            if (channel := self.channels.get(event.stream_id)) is not None:
                channel.on_trailers(list(event.headers or ()))
        elif isinstance(event, h2.events.StreamReset):
            if (channel := self.channels.get(event.stream_id)) is not None:
                self.on_stream_reset(channel, int(event.error_code or 0))
        elif isinstance(event, h2.events.WindowUpdated):
            if not event.stream_id:
                self._wake_all_windows()
            elif (channel := self.channels.get(event.stream_id)) is not None:
                channel.on_window()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.on_remote_settings()
            self._wake_all_windows()
        elif isinstance(event, h2.events.SettingsAcknowledged):
            if self._settings_timer is not None:
                self._settings_timer.cancel()
                self._settings_timer = None
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.on_goaway(int(event.error_code or 0), event.last_stream_id or 0)
        # PING is answered by h2; PRIORITY, ALTSVC and unknown frames are ignored.

    def on_stream_reset(self, channel: Channel, code: int) -> None:
        channel.on_reset(code)

    def on_remote_settings(self) -> None:
        """The peer's SETTINGS arrived (the first one is its connection preface)."""

    def on_goaway(self, code: int, last_stream_id: int) -> None:
        """The peer sent GOAWAY."""

    def _wake_all_windows(self) -> None:
        for channel in self.channels.values():
            channel.on_window()

    def _settings_late(self) -> None:
        self._settings_timer = None
        log.info("closing HTTP/2 connection: SETTINGS not acknowledged in time", extra=self._log())
        self.abort(int(h2.errors.ErrorCodes.SETTINGS_TIMEOUT))

    # ---- sending (all synchronous; writers wait in Channel) ----

    def flush(self) -> None:
        """Write soon: frames queued during one loop iteration leave in one write (one syscall).

        Measured: a write per frame operation cost a third of the engine's CPU
        on small unary calls.
        """
        if not self._flush_scheduled and not self.closed and self.transport is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        """Write now: after large DATA (so backpressure is seen at once) and before closing."""
        self._flush_scheduled = False
        transport = self.transport
        if transport is None or self.closed:
            return
        data = self.h2.data_to_send()
        if data:
            transport.write(data)
            if transport.get_write_buffer_size() > self.limits.max_write_backlog:
                log.info("dropping a peer that does not read", extra=self._log())
                self.closed = True
                transport.abort()

    async def writable(self) -> None:
        if self.closed:
            raise ConnectionGone(self.side)
        if self._writable.is_set():
            return
        try:
            async with asyncio.timeout(self.limits.idle_stream_timeout):
                # Re-check after waking: the stream woken first may have filled the
                # buffer again, and every other stream must then wait once more.
                while not self._writable.is_set():
                    await self._writable.wait()
                    if self.closed:
                        raise ConnectionGone(self.side)
        except TimeoutError:
            raise StreamIdle(self.side) from None

    def window(self, stream_id: int) -> int:
        try:
            return self.h2.local_flow_control_window(stream_id)
        except h2.exceptions.StreamClosedError:
            raise StreamReset(CANCEL, self.side) from None

    def send_headers(self, stream_id: int, headers: RawHeaders, *, end_stream: bool) -> None:
        try:
            self.h2.send_headers(stream_id, headers, end_stream=end_stream)
        except h2.exceptions.StreamClosedError:
            raise StreamReset(CANCEL, self.side) from None
        self.flush()

    def send_data(self, stream_id: int, data: memoryview, *, end_stream: bool) -> None:
        frame = self.h2.max_outbound_frame_size
        try:
            for start in range(0, len(data), frame):
                piece = data[start : start + frame]
                last = start + frame >= len(data)
                self.h2.send_data(stream_id, piece, end_stream=end_stream and last)
        except h2.exceptions.StreamClosedError:
            raise StreamReset(CANCEL, self.side) from None
        if len(data) >= _WRITE_NOW:
            self.flush_now()
        else:
            self.flush()

    def end_stream(self, stream_id: int) -> None:
        try:
            self.h2.end_stream(stream_id)
        except h2.exceptions.StreamClosedError:
            raise StreamReset(CANCEL, self.side) from None
        self.flush()

    def reset(self, stream_id: int, code: int) -> None:
        try:
            self.h2.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:  # already closed both ways: nothing to reset
            return
        self.flush()

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            self.h2.acknowledge_received_data(size, stream_id)
            self.flush()

    def release(self, channel: Channel, code: int = CANCEL) -> None:
        """The relay is done with `channel`: reset it if open, forget it, return its window."""
        channel.reset(code)
        channel.discard()
        if self.channels.pop(channel.stream_id, None) is not None:
            self.flush()
            self.on_released()

    def on_released(self) -> None:
        """A stream was released (subclasses track idleness and capacity)."""

    def goaway(self, code: int = NO_ERROR, last_stream_id: int | None = None) -> None:
        if self.closed:
            return
        self.h2.close_connection(error_code=code, last_stream_id=last_stream_id)
        self.flush()

    def abort(self, code: int) -> None:
        """GOAWAY with an error, then close: for protocol errors and unresponsive peers."""
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection(error_code=code)
        self.flush_now()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        self.flush_now()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _log(self, exc: BaseException | None = None) -> dict[str, str]:
        extra = {"side": self.side}
        if exc is not None:
            extra["error"] = type(exc).__name__
        return extra

    @staticmethod
    def header_names(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
        """Names only, for debugging logs: header values may be credentials."""
        return [name.decode("latin-1") for name, _ in headers]
