"""aiohttp's side of refusals: send the answer `gateway.paywall.answers` renders.

The handler and its collaborators raise typed `Refusal`s
(gateway.paywall.refusals); `error_middleware` turns each into its answer, and
anything unexpected into a 500 without details (the traceback is logged with
the request id, never sent).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.aioweb.answers import render
from gateway.paywall.refusals import GatewayError, Refusal
from gateway.server.reqkeys import ACCESS

log = logging.getLogger("gateway.errors")

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


async def error_middleware(request: web.BaseRequest, handler: Handler) -> web.StreamResponse:
    """Map typed refusals to their answers; anything unexpected is a 500 without details."""
    try:
        return await handler(request)
    except Refusal as exc:
        request[ACCESS].refused(exc)
        return render(request, exc)
    except web.HTTPException:
        raise
    except Exception:
        record = request[ACCESS]
        record.outcome = "internal_error"
        log.exception("unhandled error", extra={"request_id": record.request_id})
        return render(request, GatewayError("internal error"))
