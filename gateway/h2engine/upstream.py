"""The upstream side: pooled HTTP/2 client connections, streams multiplexed, per target.

A connection is used only once the upstream's own SETTINGS arrived (so a
server that does not speak HTTP/2 fails before any request byte is sent, and
its MAX_CONCURRENT_STREAMS is known). A target gets at most
`upstream_max_connections` connections of at most `upstream_max_streams`
streams each; one connect per target is in flight at a time and its waiters
share the outcome, so a dead upstream costs one connect attempt per wave of
requests, not one per request. GOAWAY drains a connection (streams above the
upstream's last stream id fail as refused); a lost connection fails its
streams; both are replaced on the next request.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from gateway.h2engine.api import FailReason, H2Target
from gateway.h2engine.channel import Channel
from gateway.h2engine.endpoint import Endpoint
from gateway.h2engine.errors import REFUSED_STREAM, UpstreamUnavailable
from gateway.h2engine.frames import Setting
from gateway.h2engine.grpcwire import RawHeaders
from gateway.h2engine.limits import H2Limits
from gateway.h2engine.wire import NoStreamAvailable

log = logging.getLogger("gateway.h2")


class UpstreamConnection(Endpoint):
    side = "upstream"
    client_side = True

    def __init__(self, pool: UpstreamPool, target: H2Target) -> None:
        super().__init__(
            pool.limits,
            receive_window=pool.limits.upstream_connection_window,
            settings={Setting.ENABLE_PUSH: 0},
        )
        self.pool = pool
        self.target = target
        self.draining = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def capacity(self) -> int:
        if self.closed or self.draining or not self.ready.done():
            return 0
        remote = self.wire.remote_max_streams
        return min(remote, self.limits.upstream_max_streams) - len(self.channels)

    def open_stream(self, headers: RawHeaders, *, end_stream: bool) -> Channel:
        try:
            stream_id = self.wire.open_stream(headers, end_stream=end_stream)
        except NoStreamAvailable:
            self.draining = True  # stream ids used up: a new connection takes over
            raise
        channel = Channel(self, stream_id)
        channel.local_closed = end_stream
        self.channels[stream_id] = channel
        self.cancel_idle()
        self.flush()
        return channel

    def on_headers(self, stream_id: int, headers: RawHeaders, end_stream: bool) -> None:
        """The final response (1xx responses stay in the wire)."""
        if (channel := self.channels.get(stream_id)) is not None:
            channel.on_headers(headers)
            if end_stream:
                channel.on_end()

    def on_remote_settings(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)
            if not self.channels:  # e.g. the request that connected it was cancelled
                self.arm_idle(self.limits.upstream_idle_timeout)
        self.pool.changed()

    def on_goaway(self, code: int, last_stream_id: int) -> None:
        self.draining = True
        for stream_id, channel in list(self.channels.items()):
            if stream_id > last_stream_id:
                channel.on_reset(REFUSED_STREAM)  # never processed upstream
        if not self.channels:
            self.close()
        self.pool.changed()

    def on_released(self) -> None:
        self.pool.changed()
        if self.channels:
            return
        if self.draining:
            self.close()
        else:
            self.arm_idle(self.limits.upstream_idle_timeout)

    def on_idle(self) -> None:
        self.draining = True
        self.goaway()
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.ready.done():
            self.ready.set_exception(UpstreamUnavailable(FailReason.NOT_HTTP2, "no SETTINGS"))
            self.ready.exception()  # retrieved here: the connect path reports it
        self.pool.forget(self)


class UpstreamPool:
    """HTTP/2 connections to upstream targets, shared by all client connections of a process."""

    def __init__(self, limits: H2Limits) -> None:
        self.limits = limits
        self._connections: dict[H2Target, list[UpstreamConnection]] = {}
        self._connecting: dict[H2Target, asyncio.Task[UpstreamConnection]] = {}
        self._changed = asyncio.Event()
        self._closed = False

    async def open_stream(
        self, target: H2Target, headers: RawHeaders, *, end_stream: bool
    ) -> Channel:
        """A new upstream stream with `headers` sent, or UpstreamUnavailable by the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + target.connect_timeout
        while True:
            if self._closed:
                raise UpstreamUnavailable(FailReason.SHUTDOWN)
            connection = self._pick(target)
            if connection is not None:
                try:
                    return connection.open_stream(headers, end_stream=end_stream)
                except NoStreamAvailable:
                    connection.draining = True
                    continue
            pending = self._connecting.get(target)
            if pending is None and len(self._connections.get(target, ())) < (
                self.limits.upstream_max_connections
            ):
                pending = loop.create_task(self._connect(target))
                self._connecting[target] = pending
                pending.add_done_callback(lambda task: self._connect_done(target, task))
            try:
                async with asyncio.timeout_at(deadline):
                    if pending is not None:
                        await asyncio.shield(pending)
                    else:
                        self._changed.clear()
                        await self._changed.wait()
            except TimeoutError:
                reason = FailReason.CONNECT_TIMEOUT if pending else FailReason.BUSY
                raise UpstreamUnavailable(reason) from None

    def _pick(self, target: H2Target) -> UpstreamConnection | None:
        best: UpstreamConnection | None = None
        for connection in self._connections.get(target, ()):
            if connection.capacity > 0 and (best is None or connection.capacity > best.capacity):
                best = connection
        return best

    async def _connect(self, target: H2Target) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        connection: UpstreamConnection | None = None
        where = f"{target.host}:{target.port}"
        try:
            async with asyncio.timeout(target.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(self, target),
                    target.host,
                    target.port,
                    ssl=target.tls,
                    server_hostname=(target.server_hostname or target.host)
                    if target.tls is not None
                    else None,
                )
                if target.tls is not None:
                    assert connection.transport is not None
                    tls = connection.transport.get_extra_info("ssl_object")
                    if tls is None or tls.selected_alpn_protocol() != "h2":
                        raise UpstreamUnavailable(FailReason.NOT_HTTP2, f"{where}: no ALPN h2")
                await connection.ready
        except TimeoutError:
            self._discard(connection)
            log.warning("upstream connect timed out", extra={"upstream": where})
            raise UpstreamUnavailable(FailReason.CONNECT_TIMEOUT, where) from None
        except ssl.SSLError as exc:
            self._discard(connection)
            log.warning("upstream TLS failed", extra={"upstream": where, "error": str(exc.reason)})
            raise UpstreamUnavailable(FailReason.TLS_FAILED, where) from None
        except OSError as exc:
            self._discard(connection)
            log.warning("upstream connect failed", extra={"upstream": where, "error": exc.strerror})
            raise UpstreamUnavailable(FailReason.CONNECT_FAILED, where) from None
        except UpstreamUnavailable:
            self._discard(connection)
            raise
        self._connections.setdefault(target, []).append(connection)
        self.changed()
        return connection

    def _connect_done(self, target: H2Target, task: asyncio.Task[UpstreamConnection]) -> None:
        if self._connecting.get(target) is task:
            del self._connecting[target]
        if not task.cancelled():
            task.exception()  # every waiter got it; mark it retrieved for the ones that left

    @staticmethod
    def _discard(connection: UpstreamConnection | None) -> None:
        if connection is not None:
            connection.close()

    def changed(self) -> None:
        """Capacity may have appeared: wake the requests waiting for a stream."""
        self._changed.set()

    def forget(self, connection: UpstreamConnection) -> None:
        connections = self._connections.get(connection.target)
        if connections and connection in connections:
            connections.remove(connection)
            if not connections:
                del self._connections[connection.target]
        self.changed()

    @property
    def connection_count(self) -> int:
        return sum(len(c) for c in self._connections.values())

    async def close(self) -> None:
        """Close every connection (streams still open fail as upstream_closed)."""
        self._closed = True
        for task in list(self._connecting.values()):
            task.cancel()
        for connections in list(self._connections.values()):
            for connection in list(connections):
                connection.goaway()
                connection.close()
        self._connections.clear()
        self.changed()
