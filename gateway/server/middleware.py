"""Request id, access log and the edge's request lifecycle, for the public app."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time

from aiohttp import web

from gateway.server.edge import edge_of
from gateway.server.errors import Handler
from gateway.server.reqkeys import (
    ERROR,
    OUTCOME,
    PATH,
    REQUEST_ID,
    ROUTE,
    TOKEN_ID,
    UPSTREAM_STATUS,
)

access_log = logging.getLogger("gateway.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Request ids: a random per-process prefix and a counter. Unique per process and
# across processes (the prefix), and far cheaper than uuid4 (a syscall per request).
_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):010x}"


CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id (the client's if sane), and log one line when it ends.

    Also tells the connection's edge protocol that a request is in progress, so
    its head and idle deadlines do not run while the request is handled.
    """
    edge = edge_of(request.transport)
    if edge is not None:
        edge.begin()
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _REQUEST_ID.match(offered) else new_request_id()
    request[REQUEST_ID] = request_id
    start = time.perf_counter()
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
        request[OUTCOME] = "client_disconnected"
        raise
    finally:
        if edge is not None:
            edge.end()
        access_log.info(
            "request",
            extra={
                "request_id": request_id,
                "route": request.get(ROUTE),
                "outcome": request.get(OUTCOME),
                "status": status,
                "method": request.method,
                # The normal form when the path was valid; never the query string.
                "path": request.get(PATH, request.path)[:512],
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                "upstream_status": request.get(UPSTREAM_STATUS),
                "token_id": request.get(TOKEN_ID),
                "error": request.get(ERROR),
            },
        )
