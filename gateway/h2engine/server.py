"""The client-facing side: one HTTP/2 connection from a client, one relay per stream."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from gateway.h2engine.api import FailReason
from gateway.h2engine.channel import Channel
from gateway.h2engine.endpoint import Endpoint
from gateway.h2engine.ends import ClientEnd
from gateway.h2engine.errors import REFUSED_STREAM
from gateway.h2engine.frames import ErrorCode, Setting
from gateway.h2engine.grpcwire import RawHeaders
from gateway.h2engine.relay import StreamRelay

if TYPE_CHECKING:
    from gateway.h2engine.proxy import H2Proxy

log = logging.getLogger("gateway.h2")
_RESET_PERIOD = 10.0


class ServerConnection(Endpoint):
    side = "client"
    client_side = False

    def __init__(self, proxy: H2Proxy) -> None:
        limits = proxy.limits
        super().__init__(
            limits,
            receive_window=limits.connection_window,
            settings={Setting.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams},
        )
        self.proxy = proxy
        self.peer: str | None = None
        self.relays: dict[int, StreamRelay] = {}
        self.draining = False
        self._resets = 0
        self._reset_period_start = 0.0
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else None
        super().connection_made(transport)
        self.proxy.register(self)
        self.arm_idle(self.limits.idle_connection_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for relay in list(self.relays.values()):
            relay.abort(ClientEnd.GONE)
        self.proxy.unregister(self)
        if not self._closed.done():
            self._closed.set_result(None)

    def on_headers(self, stream_id: int, headers: RawHeaders, end_stream: bool) -> None:
        """A new request (the wire checked it is well-formed)."""
        if self.draining or self.closed:
            self.reset(stream_id, REFUSED_STREAM)  # after our GOAWAY: the client may retry
            return
        channel = Channel(self, stream_id)
        self.channels[stream_id] = channel
        if end_stream:
            channel.on_end()
        relay = StreamRelay(self, channel, headers)
        self.relays[stream_id] = relay
        self.cancel_idle()
        relay.start()

    def on_stream_reset(self, channel: Channel, code: int) -> None:
        super().on_stream_reset(channel, code)
        if (relay := self.relays.get(channel.stream_id)) is not None:
            relay.abort(ClientEnd.RESET)
        self._count_reset()

    def on_refused(self, stream_id: int) -> None:
        """Streams we reset at once (over the limit, malformed) cost like client resets:
        a client that keeps opening them is the same flood."""
        self._count_reset()

    def _count_reset(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._reset_period_start > _RESET_PERIOD:
            self._reset_period_start, self._resets = now, 0
        self._resets += 1
        if self._resets > self.limits.reset_budget:
            log.warning("closing an HTTP/2 connection that resets too many streams")
            self.abort(int(ErrorCode.ENHANCE_YOUR_CALM))

    def on_goaway(self, code: int, last_stream_id: int) -> None:
        """The client will open no more streams: finish the open ones, then close."""
        self.draining = True
        if not self.relays:
            self.close()

    def relay_done(self, relay: StreamRelay) -> None:
        self.release(relay.client)
        self.relays.pop(relay.client.stream_id, None)
        if not self.relays:
            if self.draining:
                self.close()
            else:
                self.arm_idle(self.limits.idle_connection_timeout)

    def on_idle(self) -> None:
        if not self.relays:
            self.start_drain()

    # ---- graceful shutdown ----

    def start_drain(self) -> None:
        """GOAWAY: no new streams; the open ones finish; the connection then closes."""
        if self.draining and self.closed:
            return
        self.draining = True
        self.goaway(last_stream_id=self.wire.highest_inbound)
        if not self.relays:
            self.close()

    def force_close(self) -> None:
        """Past the drain deadline: every open stream ends with UNAVAILABLE."""
        for relay in list(self.relays.values()):
            relay.abort(FailReason.SHUTDOWN)
        if not self.relays:
            self.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)
