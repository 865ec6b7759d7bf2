"""One HTTP/2 connection on asyncio, either side: h2's state machine, the socket, the streams.

`Endpoint` turns bytes into h2 events and events into per-stream `Channel`
state (gateway.h2engine.channel), and performs the channels' sends. Writes are
coalesced per event-loop iteration; writability (pause/resume_writing) gates
DATA, with the idle deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import ClassVar, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from gateway.h2engine import framerepr
from gateway.h2engine.channel import Channel
from gateway.h2engine.errors import CANCEL, NO_ERROR, ConnectionGone, StreamIdle, StreamReset
from gateway.h2engine.grpcwire import RawHeaders
from gateway.h2engine.limits import H2Limits

log = logging.getLogger("gateway.h2")
framerepr.install()

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
        # Outbound blocks are built from validated parts (gateway.h2engine.headers, or blocks h2
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
        transport = cast(asyncio.Transport, transport)  # uvloop's are not registered subclasses
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
