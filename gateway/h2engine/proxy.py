"""The engine as the server uses it: an Admission, limits, the upstream pool, live connections."""

from __future__ import annotations

import asyncio
import contextlib

from gateway.h2engine.api import Admission
from gateway.h2engine.limits import H2Limits
from gateway.h2engine.server import ServerConnection
from gateway.h2engine.upstream import UpstreamPool

_FORCED_CLOSE_GRACE = 5.0  # streams ended with UNAVAILABLE get this long to say so


class H2Proxy:
    """One per process (per worker): `connection()` is the asyncio protocol factory.

    Build it inside the running event loop (e.g. in an aiohttp cleanup_ctx),
    serve it with `H2Site` (same port as HTTP/1.1) or
    `loop.create_server(proxy.connection, ...)` (HTTP/2 only), and `close()`
    it after the listeners stopped.
    """

    def __init__(self, admission: Admission, limits: H2Limits | None = None) -> None:
        self.admission = admission
        self.limits = limits or H2Limits()
        self.pool = UpstreamPool(self.limits)
        self._connections: set[ServerConnection] = set()

    def connection(self) -> ServerConnection:
        return ServerConnection(self)

    def register(self, connection: ServerConnection) -> None:
        self._connections.add(connection)

    def unregister(self, connection: ServerConnection) -> None:
        self._connections.discard(connection)

    @property
    def connection_count(self) -> int:
        """Client HTTP/2 connections open now (the caller bounds how many it accepts)."""
        return len(self._connections)

    @property
    def stream_count(self) -> int:
        return sum(len(c.relays) for c in self._connections)

    async def drain(self, timeout: float) -> None:
        """GOAWAY to every client; wait up to `timeout` for open streams, then end them.

        Streams still open at the deadline end with UNAVAILABLE (gRPC clients
        may retry) and their tickets get `failed(shutdown)` when the upstream
        had not answered.
        """
        connections = list(self._connections)
        for connection in connections:
            connection.start_drain()
        waits = [asyncio.ensure_future(c.wait_closed()) for c in connections]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=timeout)
        if not pending:
            return
        for connection in list(self._connections):
            connection.force_close()
        _, pending = await asyncio.wait(pending, timeout=_FORCED_CLOSE_GRACE)
        for connection in list(self._connections):
            connection.close()
        for wait in pending:
            wait.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await wait

    async def close(self, timeout: float = 0.0) -> None:
        """Drain (up to `timeout`) and close the upstream pool."""
        await self.drain(timeout)
        await self.pool.close()
