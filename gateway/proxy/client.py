"""Streaming reverse proxy on one aiohttp ClientSession per application.

Two phases so the caller can decide before any byte reaches the client:
`open()` sends the request (body streamed, never buffered) and returns once the
upstream's status and headers are known; `relay()` streams the body back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.proxy.errors import (
    BodyTooLarge,
    ProxyError,
    RequestBodyError,
    RequestBodyTimeout,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.proxy.forwarded import ClientInfo
from gateway.proxy.headers import downstream_response_headers, upstream_request_headers
from gateway.proxy.target import ProxyTarget

# aiohttp adds these when absent; a proxy must not invent headers the client did not send.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class _LimitedBody:
    """Async iterator over the client's body that stops past `limit` bytes or `deadline`.

    The deadline (loop time) bounds the whole upload: a slow client cannot hold
    a single-use lease past its end (status-codes.md). aiohttp wraps any
    exception raised here into a generic connection error, so the cause is kept
    in `failure` for `open()` / `relay()` to re-raise.
    """

    def __init__(self, content: aiohttp.StreamReader, limit: int, deadline: float) -> None:
        self._content = content
        self._limit = limit
        self._deadline = deadline
        self.received = 0
        self.failure: ProxyError | None = None

    def __aiter__(self) -> _LimitedBody:
        return self

    async def __anext__(self) -> bytes:
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
    response: aiohttp.ClientResponse
    elapsed: float
    """Seconds from sending the request to receiving the upstream's headers."""
    _body: _LimitedBody | None = None
    bytes_relayed: int = 0
    client_disconnected: bool = False
    failure: ProxyError | None = None
    """Set when the upstream failed after the response had started."""

    def close(self) -> None:
        """Drop the upstream connection without reading the body."""
        self.response.close()


def _classify(exc: BaseException, body: _LimitedBody | None, what: str) -> ProxyError:
    """Map an aiohttp failure to a typed error, preferring a client-body cause."""
    if body is not None and body.failure is not None:
        return body.failure
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"upstream timed out {what}")
    return UpstreamUnreachable(f"upstream failed {what}: {type(exc).__name__}")


# An answer this small goes out in one write (headers with the body): it is almost
# always in hand with its headers, and a write per part was a tenth of a paid
# request's CPU (bench/README.md). Larger or unsized answers send their headers
# at once, so a slow stream (server-sent events) is not held back.
COALESCE_BYTES = 64 * 1024


class _CoalescedResponse(web.StreamResponse):
    """A StreamResponse whose headers wait for the first body bytes, as web.Response's do."""

    _send_headers_immediately = False


class Proxy:
    """Forwards requests to `ProxyTarget`s over a shared connection pool."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    @classmethod
    def create(cls, *, limit: int = 256, keepalive_timeout: float = 30.0) -> Proxy:
        """A proxy owning its session; call inside the running event loop."""
        connector = aiohttp.TCPConnector(
            limit=limit, limit_per_host=0, keepalive_timeout=keepalive_timeout, ttl_dns_cache=60
        )
        session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # bodies pass through byte-identical
            cookie_jar=aiohttp.DummyCookieJar(),  # never share one client's cookies with another
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=False,
            raise_for_status=False,
        )
        return cls(session)

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._session

    async def close(self) -> None:
        await self._session.close()

    async def open(
        self,
        request: web.Request,
        target: ProxyTarget,
        path: str,
        client: ClientInfo,
        authorization: str | None,
    ) -> UpstreamResponse:
        """Send `request` upstream as `path` (its normal form) and wait for the status line
        and headers.

        Bounded in time: the client's body must arrive within the route's body
        deadline and the upstream must answer within its timeout after that,
        so `open()` never outlives a lease taken just before it. Raises
        BodyTooLarge before contacting the upstream when Content-Length is over
        the limit, and while streaming when a chunked body grows past it.
        """
        declared = request.content_length
        if declared is not None and declared > target.max_body_bytes:
            raise BodyTooLarge(target.max_body_bytes, declared)
        headers = upstream_request_headers(
            request.headers,
            host=target.host_header,
            authorization=authorization,
            forwarded_for=", ".join(client.chain),
            forwarded_proto=client.proto,
            forwarded_host=client.host,
            extra=target.extra_headers,
        )
        loop = asyncio.get_running_loop()
        body_deadline = loop.time() + target.body_timeout_seconds
        body = None
        if request.body_exists:
            body = _LimitedBody(request.content, target.max_body_bytes, body_deadline)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=target.timeout_seconds, sock_read=target.timeout_seconds
        )
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(body_deadline + target.timeout_seconds):
                response = await self._session.request(
                    request.method,
                    target.url_for(path, request.rel_url.raw_query_string),
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    ssl=target.ssl,
                    timeout=timeout,
                    skip_auto_headers=_SKIP_AUTO_HEADERS,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _classify(exc, body, "before answering") from exc
        if body is not None and body.failure is not None:
            # The upstream answered early, then the body overran: do not relay.
            response.close()
            raise body.failure
        return UpstreamResponse(
            status=response.status,
            reason=response.reason,
            headers=response.headers,
            response=response,
            elapsed=time.perf_counter() - started,
            _body=body,
        )

    async def relay(self, request: web.Request, opened: UpstreamResponse) -> web.StreamResponse:
        """Stream the upstream body to the client, then release the connection.

        After headers are sent nothing can be reported as HTTP any more: an
        upstream failure closes the client connection (so the client sees a
        truncated body, not a clean end) and is recorded in `opened.failure`.
        """
        upstream = opened.response
        small = upstream.content_length is not None and upstream.content_length <= COALESCE_BYTES
        response = (_CoalescedResponse if small else web.StreamResponse)(
            status=opened.status,
            reason=opened.reason,
            headers=downstream_response_headers(opened.headers),
        )
        complete = False
        try:
            await response.prepare(request)
            chunks = upstream.content.iter_any()
            while True:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                except (aiohttp.ClientError, TimeoutError) as exc:
                    opened.failure = _classify(exc, opened._body, "while streaming the body")
                    request.protocol.force_close()
                    return response
                await response.write(chunk)
                opened.bytes_relayed += len(chunk)
            await response.write_eof()
            complete = True
        except ConnectionError:
            opened.client_disconnected = True
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away (handler_cancellation).
            opened.client_disconnected = True
            raise
        finally:
            if complete:
                upstream.release()
            else:
                upstream.close()
        return response
