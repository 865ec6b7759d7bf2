"""Request id, the access record and the edge's request lifecycle, for the public app."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from gateway.paywall.access import AccessRecord, new_request_id
from gateway.server.edge import edge_of
from gateway.server.errors import Handler
from gateway.server.reqkeys import ACCESS

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer


async def request_context(request: web.BaseRequest, handler: Handler) -> web.StreamResponse:
    """Give every request an id (the client's if sane) and an access record, written
    when it ends; every answer the gateway makes carries the id in `X-Request-Id`.

    Also tells the connection's edge protocol that a request is in progress, so
    its head and idle deadlines do not run while the request is handled.
    """
    edge = edge_of(request.transport)
    if edge is not None:
        edge.begin()
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _REQUEST_ID.match(offered) else new_request_id()
    record = request[ACCESS] = AccessRecord(request_id, request.method, request.path)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        record.outcome = "client_disconnected"
        raise
    finally:
        if edge is not None:
            edge.end()
        record.done(status)
