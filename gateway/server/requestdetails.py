"""The HTTP/1.1 request's `RequestDetails`: its query, and a body prefix read once and forwarded.

Built only for routes that need it (gateway.pricer.requestview: metered
routes, Aperture pricers). Reading the prefix follows the rules forwarding
applies to the whole body: `Expect: 100-continue` is answered first (the
request is being decided on, so the client may send), a declared or actual
length over `max_body_bytes` is 413, and the bytes must arrive within the
route's `request_body_timeout_seconds` (408). What was read is kept and sent
upstream before the rest of the body (gateway.proxy.exchange).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.proxy.errors import BodyTooLarge, RequestBodyError, RequestBodyTimeout
from gateway.proxy.target import ProxyTarget
from gateway.server.forwarding import send_continue


class HttpRequestDetails:
    __slots__ = ("_eof", "_read", "_request", "_target")

    def __init__(self, request: web.BaseRequest, target: ProxyTarget) -> None:
        self._request = request
        self._target = target
        self._read = bytearray()
        self._eof = not request.body_exists

    @property
    def query(self) -> str:
        return self._request.rel_url.raw_query_string

    @property
    def consumed(self) -> bytes:
        """The body bytes read so far, to forward before the rest."""
        return bytes(self._read)

    @property
    def whole(self) -> bool:
        """Whether `consumed` is the whole body (it may go upstream with the head)."""
        return self._eof

    async def prefix(self, limit: int) -> tuple[bytes, bool]:
        request, target = self._request, self._target
        declared = request.content_length
        if declared is not None and declared > target.max_body_bytes:
            raise BodyTooLarge(target.max_body_bytes, declared)
        content = request.content
        while not self._eof and len(self._read) < limit:  # what already arrived: no waiting
            chunk = content.read_nowait(limit - len(self._read))
            if not chunk:
                self._eof = content.is_eof()
                break
            self._read += chunk
            if len(self._read) > target.max_body_bytes:
                raise BodyTooLarge(target.max_body_bytes)
            if content.at_eof():  # the usual small body: all of it came with the head
                self._eof = True
        if not self._eof and len(self._read) < limit:
            await send_continue(request)
            try:
                async with asyncio.timeout(target.body_timeout_seconds):
                    while len(self._read) < limit:
                        chunk = await request.content.readany()
                        if not chunk:
                            self._eof = True
                            break
                        self._read += chunk
                        if len(self._read) > target.max_body_bytes:
                            raise BodyTooLarge(target.max_body_bytes)
            except TimeoutError:
                raise RequestBodyTimeout("the request body was not received in time") from None
            except BodyTooLarge:
                raise
            except Exception as exc:  # the client went away or sent a broken body
                raise RequestBodyError(f"reading the request body failed: {exc!r}") from None
        whole = self._eof and len(self._read) <= limit
        return bytes(self._read[:limit]), whole
