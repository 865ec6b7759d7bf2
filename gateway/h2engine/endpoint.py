"""One HTTP/2 connection on asyncio, either side: the protocol state, the socket, the streams.

`Endpoint` feeds bytes to its `H2Wire` (gateway.h2engine.wire), turns the
wire's callbacks into per-stream `Channel` state (gateway.h2engine.channel),
and performs the channels' sends. Writes are
coalesced per event-loop iteration; writability (pause/resume_writing) gates
DATA, with the idle deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar, cast

from gateway.h2engine.channel import Channel
from gateway.h2engine.errors import CANCEL, NO_ERROR, ConnectionGone, StreamIdle, StreamReset
from gateway.h2engine.frames import ErrorCode, Setting
from gateway.h2engine.grpcwire import RawHeaders
from gateway.h2engine.limits import H2Limits
from gateway.h2engine.wire import H2Wire, ProtocolError, StreamClosed

log = logging.getLogger("gateway.h2")

_DEFAULT_WINDOW = 65_535
_WRITE_NOW = 16 * 1024  # DATA at least this large is written at once, not coalesced
# Peers may send DATA frames this large (RFC 9113 default: 16 KiB): a 1 MiB gRPC
# message then crosses in 4 frames instead of 64, and each frame costs Python calls.
_MAX_FRAME = 256 * 1024


class Endpoint(asyncio.Protocol):
    """The part of an HTTP/2 connection both sides share (a `WireHandler` for `H2Wire`)."""

    side: ClassVar[str] = "peer"
    client_side: ClassVar[bool] = False

    def __init__(
        self,
        limits: H2Limits,
        *,
        receive_window: int,
        settings: dict[int, int],
    ) -> None:
        self.limits = limits
        self.wire = H2Wire(
            self,
            client_side=self.client_side,
            settings={
                Setting.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
                Setting.INITIAL_WINDOW_SIZE: limits.stream_window,
                Setting.MAX_FRAME_SIZE: _MAX_FRAME,
                **settings,
            },
            max_header_list_size=limits.max_header_list_size,
        )
        self._receive_window = receive_window
        self.channels: dict[int, Channel] = {}
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._settings_timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()
        self._flush_scheduled = False

    # ---- the idle timer: a connection with no stream for a while is let go ----

    def arm_idle(self, seconds: float) -> None:
        """(Re)start the idle timer; `on_idle` runs when it fires."""
        self.cancel_idle()
        if not self.closed:
            self._idle_timer = asyncio.get_running_loop().call_later(seconds, self._idle_fired)

    def cancel_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_fired(self) -> None:
        self._idle_timer = None
        if not self.channels:
            self.on_idle()

    def on_idle(self) -> None:
        """No stream for the idle timeout: the subclass lets the connection go."""

    # ---- asyncio.Protocol ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not registered subclasses
        self.transport = transport
        self.wire.initiate()
        if self._receive_window > _DEFAULT_WINDOW:
            self.wire.grow_connection_window(self._receive_window - _DEFAULT_WINDOW)
        self.flush()
        loop = asyncio.get_running_loop()
        self._settings_timer = loop.call_later(self.limits.settings_timeout, self._settings_late)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.wire.receive(data)
        except ProtocolError as exc:
            log.info("closing HTTP/2 connection on a protocol error", extra=self._log(exc))
            self.abort(int(exc.code))
            return
        self.flush()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def eof_received(self) -> bool | None:
        return None  # close our side too: HTTP/2 has no half-closed connections

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.cancel_idle()
        if self._settings_timer is not None:
            self._settings_timer.cancel()
        self._writable.set()  # wake writers: they see `closed`
        for channel in list(self.channels.values()):
            channel.on_lost()

    # ---- the wire's callbacks ----

    def on_headers(self, stream_id: int, headers: RawHeaders, end_stream: bool) -> None:
        """A request (server side) or response (client side): the subclasses' part."""

    def on_trailers(self, stream_id: int, headers: RawHeaders) -> None:
        if (channel := self.channels.get(stream_id)) is not None:
            channel.on_trailers(headers)
            channel.on_end()

    def on_data(self, stream_id: int, data: memoryview, flow: int, end_stream: bool) -> None:
        channel = self.channels.get(stream_id)
        if channel is None or channel.rst:
            if flow:
                self.wire.acknowledge(stream_id, flow)
            return
        if data or flow:
            channel.on_data(data, flow)
        if end_stream:
            channel.on_end()

    def on_reset(self, stream_id: int, code: int) -> None:
        if (channel := self.channels.get(stream_id)) is not None:
            self.on_stream_reset(channel, code)

    def on_window(self, stream_id: int) -> None:
        if not stream_id:
            self._wake_all_windows()
        elif (channel := self.channels.get(stream_id)) is not None:
            channel.on_window()

    def on_settings(self) -> None:
        self.on_remote_settings()
        self._wake_all_windows()

    def on_settings_ack(self) -> None:
        if self._settings_timer is not None:
            self._settings_timer.cancel()
            self._settings_timer = None

    def on_refused(self, stream_id: int) -> None:
        """The wire reset a new stream at once (the server side counts these)."""

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
        self.abort(int(ErrorCode.SETTINGS_TIMEOUT))

    # ---- sending (all synchronous; writers wait in Channel) ----

    def flush(self) -> None:
        """Write soon: frames queued during one loop iteration leave in one write (one syscall).

        Measured: a write per frame operation cost a third of the engine's CPU
        on small unary calls.
        """
        if not self._flush_scheduled and not self.closed and self.transport is not None:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        """Write now: after large DATA (so backpressure is seen at once) and before closing."""
        self._flush_scheduled = False
        transport = self.transport
        if transport is None or self.closed:
            return
        data = self.wire.data_to_send()
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
            return self.wire.window(stream_id)
        except StreamClosed:
            raise StreamReset(CANCEL, self.side) from None

    def send_headers(self, stream_id: int, headers: RawHeaders, *, end_stream: bool) -> None:
        try:
            self.wire.send_headers(stream_id, headers, end_stream=end_stream)
        except StreamClosed:
            raise StreamReset(CANCEL, self.side) from None
        self.flush()

    def send_data(self, stream_id: int, data: memoryview, *, end_stream: bool) -> None:
        try:
            self.wire.send_data(stream_id, data, end_stream=end_stream)
        except StreamClosed:
            raise StreamReset(CANCEL, self.side) from None
        if len(data) >= _WRITE_NOW:
            self.flush_now()
        else:
            self.flush()

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, memoryview(b""), end_stream=True)

    def reset(self, stream_id: int, code: int) -> None:
        self.wire.reset(stream_id, code)
        self.flush()

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            self.wire.acknowledge(stream_id, size)
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
        self.wire.goaway(code, last_stream_id)
        self.flush()

    def abort(self, code: int) -> None:
        """GOAWAY with an error, then close: for protocol errors and unresponsive peers."""
        if self.closed:
            return
        self.wire.goaway(code)
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
