"""The public listener's request entry on aiohttp's low-level server (no router, no app
middleware chain, no signals): every request is the same three steps.

1. the request context (gateway.server.middleware): request id, the access
   record, the edge's deadline paused;
2. refusals rendered (gateway.server.errors);
3. the handler (gateway.server.handler): locate, decide, forward.

The public listener has one route ("everything"), so `web.Application`'s
dispatch (URL router, match info, middleware wrappers, the
`on_response_prepare` signal) was pure overhead: measured with a trivial
handler on this machine, 31 us per request through an Application with one
catch-all route and two middlewares, 23 us through the low-level server. The
one signal it had, CORS headers on every answer, is kept by the request
class's prepare hook, which aiohttp calls for every response it sends.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.aioweb.cors import add_cors_headers
from gateway.server.errors import error_middleware
from gateway.server.middleware import request_context

if TYPE_CHECKING:
    from aiohttp.abc import AbstractStreamWriter
    from aiohttp.http_parser import RawRequestMessage
    from aiohttp.streams import StreamReader
    from aiohttp.web_protocol import RequestHandler

    from gateway.server.handler import PublicHandler


class PublicRequest(web.BaseRequest):
    """A request of the public listener: CORS headers added to every answer it sends
    (what `on_response_prepare` did through the Application)."""

    __slots__ = ()

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        await add_cors_headers(self, response)


class PublicEntry:
    """The request handler of the public listener's `web.Server`."""

    def __init__(self, handler: PublicHandler, client_max_size: int) -> None:
        self.handler = handler
        self._client_max_size = client_max_size
        self._guarded = functools.partial(error_middleware, handler=handler.handle)

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        return await request_context(request, self._guarded)

    def make_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> PublicRequest:
        return PublicRequest(
            message,
            payload,
            protocol,
            writer,
            task,
            asyncio.get_running_loop(),
            client_max_size=self._client_max_size,
        )

    def server(self, **kwargs: Any) -> web.Server:
        """aiohttp's low-level server for this entry (`handler_cancellation` and the like)."""
        return web.Server(self, request_factory=self.make_request, **kwargs)
