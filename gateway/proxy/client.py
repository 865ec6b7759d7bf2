"""Streaming reverse proxy on one aiohttp ClientSession per application.

Two phases so the caller can decide before any byte reaches the client:
`open()` sends the request (body streamed, never buffered) and returns once the
upstream's status and headers are known; `relay()` streams the body back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.proxy.errors import (
    BodyTooLarge,
    ProxyError,
    RequestBodyError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.proxy.forwarded import forwarded_chain
from gateway.proxy.headers import downstream_response_headers, upstream_request_headers
from gateway.proxy.target import ProxyTarget

# aiohttp adds these when absent; a proxy must not invent headers the client did not send.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class _LimitedBody:
    """Async iterator over the client's body that stops past `limit` bytes.

    aiohttp wraps any exception raised here into a generic connection error,
    so the cause is kept in `failure` for `open()` / `relay()` to re-raise.
    """

    def __init__(self, content: aiohttp.StreamReader, limit: int) -> None:
        self._content = content
        self._limit = limit
        self.received = 0
        self.failure: ProxyError | None = None

    def __aiter__(self) -> _LimitedBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._content.readany()
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
        authorization: str | None,
        client_ip: str,
    ) -> UpstreamResponse:
        """Send `request` upstream and wait for the status line and headers.

        Raises BodyTooLarge before contacting the upstream when Content-Length
        is over the limit, and while streaming when a chunked body grows past it.
        """
        declared = request.content_length
        if declared is not None and declared > target.max_body_bytes:
            raise BodyTooLarge(target.max_body_bytes, declared)

        chain = forwarded_chain(
            request.remote, request.headers.getall("X-Forwarded-For", []), client_ip
        )
        believed = len(chain) > 1  # the peer vouched for an earlier hop
        proto = request.scheme
        forwarded_host = request.host
        if believed:
            proto = _last(request.headers.getall("X-Forwarded-Proto", [])) or proto
            forwarded_host = _last(request.headers.getall("X-Forwarded-Host", [])) or forwarded_host
        headers = upstream_request_headers(
            request.headers,
            host=target.upstream.host_port_subcomponent or "",
            authorization=authorization,
            forwarded_for=", ".join(chain),
            forwarded_proto=proto,
            forwarded_host=forwarded_host,
            extra=target.extra_headers,
        )
        body = _LimitedBody(request.content, target.max_body_bytes) if request.body_exists else None
        timeout = aiohttp.ClientTimeout(
            total=None, connect=target.timeout_seconds, sock_read=target.timeout_seconds
        )
        started = time.perf_counter()
        try:
            response = await self._session.request(
                request.method,
                target.url_for(request.rel_url),
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
        response = web.StreamResponse(
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


def _last(values: list[str]) -> str | None:
    """Rightmost entry of a possibly comma-joined header (the nearest hop's value)."""
    for value in reversed(values):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if parts:
            return parts[-1]
    return None


PROXY_KEY = web.AppKey("proxy", Proxy)


async def proxy_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: one Proxy (and ClientSession) per application."""
    proxy = Proxy.create()
    app[PROXY_KEY] = proxy
    yield
    await proxy.close()
