"""HTTP/1.1 (aiohttp) and HTTP/2 (the engine) on the same port.

Every connection starts with a small sniffing protocol. HTTP/2 with prior
knowledge (how gRPC clients speak h2c) opens with the fixed 24-byte client
preface `PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`, which no HTTP/1.1 request
can start with (`PRI` is no method an HTTP/1.1 server serves). As soon as the
first bytes differ from the preface, the connection goes to aiohttp's protocol;
once all 24 match, to the engine. The chosen protocol takes over the transport
(`transport.set_protocol`) and is replayed `connection_made` and the bytes
read so far. A connection that sends nothing within `sniff_timeout` goes to
aiohttp, so idle HTTP/1.1 connections behave exactly as without the engine.
HTTP/1.1 `Upgrade: h2c` is not supported (gRPC clients never use it).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import cast

from aiohttp import web

from gateway.h2engine.proxy import H2Proxy

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class SniffingProtocol(asyncio.Protocol):
    """Reads up to 24 bytes, then hands the connection to HTTP/1.1 or HTTP/2."""

    def __init__(self, http1: ProtocolFactory, http2: ProtocolFactory, timeout: float) -> None:
        self._http1 = http1
        self._http2 = http2
        self._timeout = timeout
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not registered subclasses
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._timeout, self._hand_over, self._http1)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        seen = min(len(self._buffer), len(PREFACE))
        if self._buffer[:seen] != PREFACE[:seen]:
            self._hand_over(self._http1)
        elif len(self._buffer) >= len(PREFACE):
            self._hand_over(self._http2)

    def eof_received(self) -> bool | None:
        # Closed before it said which protocol it speaks: nothing to answer.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None

    def _hand_over(self, factory: ProtocolFactory) -> None:
        transport = self._transport
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if transport is None or transport.is_closing():
            return
        self._transport = None
        protocol = factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._buffer and isinstance(protocol, asyncio.Protocol):
            buffered, self._buffer = self._buffer, b""
            protocol.data_received(buffered)


class H2Site(web.BaseSite):
    """Like `web.TCPSite`, plus HTTP/2 streams for `proxy` on the same listening socket.

    `runner.cleanup()` stops it like any site: stop accepting, then GOAWAY to
    HTTP/2 clients and up to `shutdown_timeout` for their open streams.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        proxy: H2Proxy,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        shutdown_timeout: float = 30.0,
        backlog: int = 128,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._proxy = proxy
        self._host = host
        self._port = port
        self._shutdown_timeout = shutdown_timeout
        self._reuse_address = reuse_address
        self._reuse_port = reuse_port
        self._bound_port: int | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        return self._bound_port if self._bound_port is not None else self._port

    async def start(self) -> None:
        await super().start()
        http1 = self._runner.server
        assert http1 is not None
        proxy = self._proxy
        sniff_timeout = proxy.limits.sniff_timeout
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SniffingProtocol(http1, proxy.connection, sniff_timeout),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._server = server
        for sock in server.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                self._bound_port = sock.getsockname()[1]
                break

    async def stop(self) -> None:
        await super().stop()
        await self._proxy.drain(self._shutdown_timeout)
