"""A lean, pooled HTTP/1.1 client for the proxy's upstream hop (httptools' llhttp parser).

aiohttp's ClientSession did a paid request's upstream hop in about a quarter
of the request's CPU: a request object, tracing hooks, cookie handling,
timers and header normalisation per call, for a hop whose headers the proxy
has already chosen (bench/README.md). Here one request is: pick an idle
connection (or connect), write the prepared head, stream the body, parse the
answer with llhttp, hand the body over as it arrives.

Bounded and deadlined like the rest of the edge: a connect timeout, the
response head within the route's timeout once the body is sent, every body
read within it too, at most `limit` connections in all, idle connections
closed after `idle_timeout`, and reading paused while `HIGH_WATER` bytes of a
response wait for a slow client. A connection is reused only after a complete
exchange the upstream agreed to keep alive. A request that found its pooled
connection closed by the upstream before any answer is sent again once on a
new connection, when it has no body (one that streamed a body cannot be
replayed).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

HIGH_WATER = 256 * 1024  # response bytes buffered before reading pauses
LOW_WATER = 64 * 1024


class UpstreamClosed(ConnectionError):
    """The upstream closed or reset the connection, or sent what is not HTTP/1.1."""

    def __init__(self, detail: str, *, answered: bool) -> None:
        super().__init__(detail)
        self.answered = answered  # any byte of an answer arrived


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a connection goes; equal endpoints share pooled connections."""

    host: str
    port: int
    tls: ssl.SSLContext | bool = field(compare=False)
    tls_key: int = 0  # identity of the TLS context (contexts are not hashable by value)

    @classmethod
    def of(cls, host: str, port: int, tls: ssl.SSLContext | bool) -> Endpoint:
        return cls(host, port, tls, id(tls) if isinstance(tls, ssl.SSLContext) else int(tls))


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one exchange at a time (the pool hands it out)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.used = False  # served an exchange before (a stale close may be retried)
        self._parser = httptools.HttpResponseParser(self)
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writable: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.reason = ""
        self._raw_headers: list[tuple[str, str]] = []
        self._head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._more: asyncio.Future[None] | None = None
        self.complete = False
        self.keep_alive = False
        self._until_close = False
        self._received = False
        self._error: BaseException | None = None
        self._reading_paused = False

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(UpstreamClosed("the upstream's answer is not valid HTTP/1.1", answered=True))
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._until_close and self._head.done() and not self.complete:
            self.complete = True  # a close-delimited body ends with the connection
            self.keep_alive = False
            self._wake()
        elif not self.complete:
            self._fail(
                UpstreamClosed("the upstream closed the connection", answered=self._received)
            )
        if not self._closed.done():
            self._closed.set_result(None)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- httptools callbacks ---------------------------------------------------------
    def on_status(self, reason: bytes) -> None:
        self.reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103): wait for the real one
            self._raw_headers = []
            return
        self.status = status
        self.keep_alive = bool(self._parser.should_keep_alive())
        names = {name.lower() for name, _ in self._raw_headers}
        self._until_close = (
            "content-length" not in names
            and "transfer-encoding" not in names
            and status not in (204, 304)
        )
        if not self._head.done():
            self._head.set_result(None)

    def on_body(self, chunk: bytes) -> None:
        self._body.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def on_message_complete(self) -> None:
        if self.status == 0:  # the end of an interim answer
            return
        self.complete = True
        self._wake()

    # -- for the pool and the proxy --------------------------------------------------
    def _wake(self) -> None:
        if self._more is not None and not self._more.done():
            self._more.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved here: the waiter may already be gone
        self._wake()

    @property
    def usable(self) -> bool:
        return (
            self.transport is not None
            and not self.transport.is_closing()
            and not (self._closed.done())
        )

    async def drain(self) -> None:
        if self._writable is not None:
            await self._writable
        if self._closed.done():
            raise UpstreamClosed("the upstream closed the connection", answered=self._received)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def head(self, deadline: float | None = None) -> None:
        """Until the answer's head is in; TimeoutError at `deadline` (loop time). A timer
        on the head itself: cheaper than a timeout scope for the one wait of a bodiless
        exchange (bench/README.md)."""
        future = self._head
        if deadline is None or future.done():
            await future
            return
        timer = asyncio.get_running_loop().call_at(deadline, self._head_late, future)
        try:
            await future
        finally:
            timer.cancel()

    @staticmethod
    def _head_late(future: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_exception(TimeoutError())

    def headers(self) -> CIMultiDictProxy[str]:
        return CIMultiDictProxy(CIMultiDict(self._raw_headers))

    async def read(self, timeout: float) -> bytes:
        """The next body bytes, b"" at the end; raises UpstreamClosed or TimeoutError."""
        while not self._body:
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            self._more = asyncio.get_running_loop().create_future()
            async with asyncio.timeout(timeout):
                await self._more
        chunk = self._body.popleft()
        self._buffered -= len(chunk)
        if self._reading_paused and self._buffered < LOW_WATER and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False
        return chunk

    def finished_cleanly(self) -> bool:
        return self.complete and self.keep_alive and not self._body and self.usable

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def recycle(self) -> None:
        self._reset()
        self.used = True
        self.idle_since = time.monotonic()


class UpstreamPool:
    """Keep-alive connections per endpoint, bounded in total and in idle time."""

    def __init__(self, *, limit: int = 256, idle_timeout: float = 30.0) -> None:
        self._idle: dict[Endpoint, deque[Connection]] = {}
        self._slots = asyncio.Semaphore(limit)
        self._idle_timeout = idle_timeout
        self._open: set[Connection] = set()

    def ready(self, endpoint: Endpoint) -> bool:
        """`acquire` would not wait: a free slot and an idle connection to `endpoint`."""
        return not self._slots.locked() and bool(self._idle.get(endpoint))

    async def acquire(self, endpoint: Endpoint, connect_timeout: float) -> Connection:
        """An idle connection to `endpoint`, or a new one; holds a slot until `release`."""
        await self._slots.acquire()
        try:
            connection = self._take_idle(endpoint)
            if connection is None:
                connection = await self.connect(endpoint, connect_timeout)
            return connection
        except BaseException:
            self._slots.release()
            raise

    def _take_idle(self, endpoint: Endpoint) -> Connection | None:
        idle = self._idle.get(endpoint)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: least likely to be closed
            if connection.usable and now - connection.idle_since < self._idle_timeout:
                return connection
            self._discard(connection)
        return None

    async def connect(self, endpoint: Endpoint, connect_timeout: float) -> Connection:
        """A new connection (the caller already holds a slot: a retry after a stale one)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(connect_timeout):
            _, connection = await loop.create_connection(
                lambda: Connection(endpoint),
                endpoint.host,
                endpoint.port,
                ssl=endpoint.tls if endpoint.tls else None,
            )
        self._open.add(connection)
        return connection

    def release(self, connection: Connection) -> None:
        """After an exchange: back to the idle list if it ended cleanly, else closed."""
        self._slots.release()
        if connection.finished_cleanly():
            connection.recycle()
            self._idle.setdefault(connection.endpoint, deque()).append(connection)
        else:
            self._discard(connection)

    def _discard(self, connection: Connection) -> None:
        connection.close()
        self._open.discard(connection)

    def forget(self, connection: Connection) -> None:
        """A connection replaced by a retry: closed, and no longer counted as open."""
        self._discard(connection)

    async def close(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()


async def send_body(connection: Connection, body: AsyncIterable[bytes], chunked: bool) -> None:
    """Stream a request body (chunked framing when its length is unknown)."""
    async for chunk in body:
        if not chunk:
            continue
        if chunked:
            connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            connection.write(chunk)
        await connection.drain()
    if chunked:
        connection.write(b"0\r\n\r\n")


def serialize_head(method: str, target: str, headers: CIMultiDict[str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


__all__ = [
    "Connection",
    "Endpoint",
    "UpstreamClosed",
    "UpstreamPool",
    "send_body",
    "serialize_head",
]
