"""Streaming reverse proxy on one pooled HTTP/1.1 upstream client per process.

Two phases so the caller can decide before any byte reaches the client:
`open()` sends the request (body streamed, never buffered) and returns once the
upstream's status and headers are known; `relay()` streams the body back.
The upstream hop is gateway.proxy.upstream (pooled keep-alive connections,
llhttp parsing); the client side is aiohttp's server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.http.clientinfo import ClientInfo
from gateway.paywall.holds import BodyWatch
from gateway.proxy.errors import (
    BodyTooLarge,
    ProxyError,
    RequestBodyError,
    RequestBodyTimeout,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.proxy.headers import downstream_response_headers, headers_for_target
from gateway.proxy.target import ProxyTarget
from gateway.proxy.upstream import (
    Connection,
    Endpoint,
    UpstreamClosed,
    UpstreamPool,
    send_body,
    serialize_head,
)

# Methods whose requests carry a body by definition: an empty one is sent with
# Content-Length: 0 (as aiohttp's client did), so the upstream does not wait for one.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

# An answer this small goes out in one write (headers with the body): it is almost
# always in hand with its headers, and a write per part was a tenth of a paid
# request's CPU (bench/README.md). Larger or unsized answers send their headers
# at once, so a slow stream (server-sent events) is not held back.
COALESCE_BYTES = 64 * 1024


class _LimitedBody:
    """Async iterator over the client's body that stops past `limit` bytes or `deadline`.

    The deadline (loop time) bounds the whole upload: a slow client cannot hold
    a single-use lease past its end (status-codes.md). The cause of a failure
    is kept in `failure`, so `open()` reports the client's fault (413, 408,
    400) rather than the upstream connection it broke.
    """

    def __init__(
        self, content: aiohttp.StreamReader, limit: int, deadline: float, prefix: bytes = b""
    ) -> None:
        self._content = content
        self._limit = limit
        self._deadline = deadline
        self._prefix = prefix  # already read (a metered route's estimate): sent first
        self.received = 0
        self.failure: ProxyError | None = None

    def __aiter__(self) -> _LimitedBody:
        return self

    async def __anext__(self) -> bytes:
        if self._prefix:
            chunk, self._prefix = self._prefix, b""
            self.received += len(chunk)
            return chunk
        try:
            async with asyncio.timeout_at(self._deadline):
                chunk = await self._content.readany()
        except TimeoutError as exc:
            self.failure = RequestBodyTimeout("the request body was not received in time")
            raise self.failure from exc
        except Exception as exc:
            self.failure = RequestBodyError(f"reading the request body failed: {exc!r}")
            raise self.failure from exc
        if not chunk:
            raise StopAsyncIteration
        self.received += len(chunk)
        if self.received > self._limit:
            self.failure = BodyTooLarge(self._limit)
            raise self.failure
        return chunk


@dataclass(eq=False)
class UpstreamResponse:
    """An upstream answer whose body has not been read yet.

    Pass it to `Proxy.relay()`, or `close()` it when not relaying. `relay()`
    fills in the outcome fields for logging and metrics.
    """

    status: int
    reason: str | None
    headers: CIMultiDictProxy[str]
    connection: Connection
    pool: UpstreamPool
    read_timeout: float
    head_only: bool  # a HEAD request: the answer has no body whatever it declares
    elapsed: float
    """Seconds from sending the request to receiving the upstream's headers."""
    _body: _LimitedBody | None = None
    bytes_relayed: int = 0
    complete: bool = False  # the whole body reached the client
    client_disconnected: bool = False
    failure: ProxyError | None = None
    """Set when the upstream failed after the response had started."""
    _released: bool = False

    @property
    def content_length(self) -> int | None:
        if self.head_only:
            return 0
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    async def read(self) -> bytes:
        """The next body bytes, b"" at the end."""
        if self.head_only:
            return b""
        return await self.connection.read(self.read_timeout)

    def release(self) -> None:
        """Hand the connection back (kept alive only after a complete, clean exchange)."""
        if not self._released:
            self._released = True
            if self.head_only:
                self.connection.close()  # its parser may still expect a declared body
            self.pool.release(self.connection)

    def close(self) -> None:
        """Drop the upstream connection without reading the body."""
        self.connection.close()
        self.release()


def _classify(exc: BaseException, body: _LimitedBody | None, what: str) -> ProxyError:
    """A typed error for an upstream failure, preferring a client-body cause."""
    if body is not None and body.failure is not None:
        return body.failure
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"upstream timed out {what}")
    return UpstreamUnreachable(f"upstream failed {what}: {type(exc).__name__}")


def _endpoint(target: ProxyTarget) -> Endpoint:
    url = target.upstream
    port = url.port or (443 if url.scheme == "https" else 80)
    return Endpoint.of(url.host or "", port, target.ssl if url.scheme == "https" else False)


class _CoalescedResponse(web.StreamResponse):
    """A StreamResponse whose headers wait for the first body bytes, as web.Response's do."""

    _send_headers_immediately = False


class Proxy:
    """Forwards requests to `ProxyTarget`s over a shared, bounded connection pool."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._endpoints: dict[int, tuple[ProxyTarget, Endpoint]] = {}

    @classmethod
    def create(cls, *, limit: int = 256, keepalive_timeout: float = 30.0) -> Proxy:
        """A proxy owning its pool; call inside the running event loop."""
        return cls(UpstreamPool(limit=limit, idle_timeout=keepalive_timeout))

    async def close(self) -> None:
        await self._pool.close()

    def _endpoint(self, target: ProxyTarget) -> Endpoint:
        """The target's endpoint, computed once per target (targets live per route table)."""
        known = self._endpoints.get(id(target))
        if known is not None and known[0] is target:
            return known[1]
        endpoint = _endpoint(target)
        if len(self._endpoints) > 4096:  # every reload builds new targets: stay bounded
            self._endpoints.clear()
        self._endpoints[id(target)] = (target, endpoint)
        return endpoint

    async def open(
        self,
        request: web.BaseRequest,
        target: ProxyTarget,
        path: str,
        client: ClientInfo,
        authorization: str | None,
        *,
        prefix: bytes = b"",
        whole: bool = False,
        drop_headers: Sequence[str] = (),
    ) -> UpstreamResponse:
        """Send `request` upstream as `path` (its normal form) and wait for the status line
        and headers. `prefix`: the body's first bytes, already read from the client (a
        metered route's estimate): sent before the rest; `whole`: that is the whole body,
        so a body of declared length goes out with the head in one write, with no upload
        to stream. `drop_headers`: request headers not forwarded (Accept-Encoding on a
        route whose answers are read for usage).

        Bounded in time: the client's body must arrive within the route's body
        deadline and the upstream must answer within its timeout after that,
        so `open()` never outlives a lease taken just before it. Raises
        BodyTooLarge before contacting the upstream when Content-Length is over
        the limit, and while streaming when a chunked body grows past it.
        """
        declared = request.content_length
        if declared is not None and declared > target.max_body_bytes:
            raise BodyTooLarge(target.max_body_bytes, declared)
        headers = headers_for_target(request.headers, target, client, authorization)
        for name in drop_headers:
            headers.popall(name, None)
        loop = asyncio.get_running_loop()
        body_deadline = loop.time() + target.body_timeout_seconds
        body = None
        in_hand = request.body_exists and whole and len(prefix) == declared
        if request.body_exists and not in_hand:
            body = _LimitedBody(request.content, target.max_body_bytes, body_deadline, prefix)
            if declared is None:
                headers["Transfer-Encoding"] = "chunked"
        elif request.method in _BODY_METHODS and declared is None:
            headers["Content-Length"] = "0"
        url = target.url_for(path, request.rel_url.raw_query_string)
        head = serialize_head(request.method, url.raw_path_qs, headers)
        if in_hand:
            head += prefix
        started = time.perf_counter()
        # The whole exchange: the body's deadline (if any), then the upstream's timeout.
        deadline = (body_deadline if body is not None else loop.time()) + target.timeout_seconds
        try:
            connection = await self._exchange(
                target, head, body, declared is None, deadline, resend=not request.body_exists
            )
        except (ProxyError, UpstreamClosed, OSError, TimeoutError) as exc:
            raise _classify(exc, body, "before answering") from exc
        return UpstreamResponse(
            status=connection.status,
            reason=connection.reason,
            headers=connection.headers(),
            connection=connection,
            pool=self._pool,
            read_timeout=target.timeout_seconds,
            head_only=request.method == "HEAD",
            elapsed=time.perf_counter() - started,
            _body=body,
        )

    async def _exchange(
        self,
        target: ProxyTarget,
        head: bytes,
        body: _LimitedBody | None,
        chunked: bool,
        deadline: float,
        *,
        resend: bool,
    ) -> Connection:
        """Write the request and wait for the answer's head, all by `deadline` (loop time;
        TimeoutError after it); the connection keeps its slot. `resend`: the request may be
        sent again on a new connection if a pooled one turns out closed (bodiless only)."""
        endpoint = self._endpoint(target)
        if self._pool.ready(endpoint):  # the usual case: an idle connection, no waiting
            connection = await self._pool.acquire(endpoint, target.timeout_seconds)
        else:
            async with asyncio.timeout_at(deadline):
                connection = await self._pool.acquire(endpoint, target.timeout_seconds)
        try:
            try:
                return await _send(
                    connection, head, body, chunked, target.timeout_seconds, deadline
                )
            except UpstreamClosed as exc:
                # A pooled connection the upstream closed meanwhile: nothing was answered,
                # so a bodiless request is safely sent again, once, on a new connection.
                if not connection.used or exc.answered or not resend:
                    raise
                connection.close()
                self._pool.forget(connection)
                async with asyncio.timeout_at(deadline):
                    connection = await self._pool.connect(endpoint, target.timeout_seconds)
                return await _send(
                    connection, head, body, chunked, target.timeout_seconds, deadline
                )
        except BaseException:
            connection.close()
            self._pool.release(connection)
            raise

    async def relay(
        self,
        request: web.BaseRequest,
        opened: UpstreamResponse,
        extra_headers: Sequence[tuple[str, str]] = (),
        watch: BodyWatch | None = None,
    ) -> web.StreamResponse:
        """Stream the upstream body to the client, then release the connection.

        `extra_headers` are the gateway's own (a balance, a receipt); `watch`
        sees every body chunk on its way and sends it on itself (it may hold
        some back, add its own or end the body: a metered answer, a session's
        per-event billing); a watched answer's writes to the client each have the
        route's timeout, rolling forward with every chunk (a long generation is
        never cut, a client that stops reading does not hold its reservation
        forever). After headers are sent nothing can be reported as
        HTTP any more: an upstream failure closes the client connection (so the
        client sees a truncated body, not a clean end) and is recorded in
        `opened.failure`. `opened.complete` says whether the body reached its end.
        """
        length = opened.content_length
        rewrites = watch is not None and not watch.keeps_length
        small = length is not None and length <= COALESCE_BYTES and not rewrites
        headers = downstream_response_headers(opened.headers)
        for name, value in extra_headers:
            headers[name] = value
        if rewrites:
            headers.popall("Content-Length", None)  # a watcher may add bytes: chunked
        response = (_CoalescedResponse if small else web.StreamResponse)(
            status=opened.status, reason=opened.reason, headers=headers
        )
        complete = False

        async def send(data: bytes) -> None:  # a watcher's writes, each with a deadline
            await _write_within(request, response, data, opened.read_timeout)

        try:
            await response.prepare(request)
            while True:
                try:
                    chunk = await opened.read()
                except (UpstreamClosed, OSError, TimeoutError) as exc:
                    opened.failure = _classify(exc, opened._body, "while streaming the body")
                    request.protocol.force_close()
                    return response
                if not chunk:
                    break
                opened.bytes_relayed += len(chunk)
                if watch is None:
                    await response.write(chunk)
                    continue
                await watch.feed(chunk, send)
                if watch.ended:  # the watcher stops the answer here (a balance ran dry)
                    request.protocol.force_close()  # the upstream's rest is not read
                    break
            if watch is not None and not watch.ended:
                await watch.drain(send)
            await response.write_eof()
            complete = watch is None or not watch.ended
            opened.complete = complete
        except (ConnectionError, TimeoutError):  # gone, or stopped reading (a watched answer)
            opened.client_disconnected = True
            request.protocol.force_close()
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away (handler_cancellation).
            opened.client_disconnected = True
            raise
        finally:
            if complete:
                opened.release()
            else:
                opened.close()
        return response


# A client holding this much unsent data may be one that stopped reading: its next write
# may wait, so it gets a deadline (aiohttp's own writer pauses above its high-water mark).
STALLED_BYTES = 64 * 1024


async def _write_within(
    request: web.BaseRequest, response: web.StreamResponse, chunk: bytes, seconds: float
) -> None:
    """Write one chunk of a watched answer; a write that cannot finish within `seconds`
    raises TimeoutError (the client stopped reading). The deadline is per write, so it
    rolls forward while the answer flows and a long generation is never cut; it is only
    armed when the client's buffer is already full (a write that cannot wait costs none)."""
    transport = request.transport
    if transport is None or transport.get_write_buffer_size() < STALLED_BYTES:
        await response.write(chunk)
        return
    async with asyncio.timeout(seconds):
        await response.write(chunk)


async def _send(
    connection: Connection,
    head: bytes,
    body: _LimitedBody | None,
    chunked: bool,
    timeout: float,
    deadline: float,
) -> Connection:
    """Write the head, stream the body, and return once the answer's head is in, all by
    `deadline` (loop time)."""
    connection.write(head)
    if body is None:  # the deadline is the upstream's timeout: nothing more to bound
        await connection.head(deadline)
        return connection
    async with asyncio.timeout_at(deadline):
        return await _send_with_body(connection, body, chunked, timeout)


async def _send_with_body(
    connection: Connection, body: _LimitedBody, chunked: bool, timeout: float
) -> Connection:
    sending = asyncio.ensure_future(send_body(connection, body, chunked))
    answered = asyncio.ensure_future(connection.head())
    try:
        await asyncio.wait({sending, answered}, return_when=asyncio.FIRST_COMPLETED)
        if not answered.done():  # the whole body is out: now the answer, within the timeout
            sending.result()  # a failed upload (too large, too slow) is the answer
            async with asyncio.timeout(timeout):
                await answered
        elif not sending.done():  # an early answer: stop sending, never reuse the connection
            connection.keep_alive = False
        answered.result()
        if body.failure is not None:
            raise body.failure  # the upstream answered, then the body overran: do not relay
        return connection
    finally:
        for task in (sending, answered):
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
