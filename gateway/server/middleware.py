"""Request id and access-log middleware for the public app."""

from __future__ import annotations

import logging
import re
import time
import uuid

from aiohttp import web

from gateway.server.errors import Handler
from gateway.server.reqkeys import ERROR, OUTCOME, REQUEST_ID, ROUTE, TOKEN_ID, UPSTREAM_STATUS

access_log = logging.getLogger("gateway.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id (the client's if sane), and log one line when it ends."""
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
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
    finally:
        access_log.info(
            "request",
            extra={
                "request_id": request_id,
                "route": request.get(ROUTE),
                "outcome": request.get(OUTCOME),
                "status": status,
                "method": request.method,
                "path": request.path,  # never the query string: it may carry secrets
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                "upstream_status": request.get(UPSTREAM_STATUS),
                "token_id": request.get(TOKEN_ID),
                "error": request.get(ERROR),
            },
        )
