"""Typed per-request state keys (aiohttp warns about plain string keys).

Kept free of imports from the rest of the server so every module can use them.
"""

from __future__ import annotations

from aiohttp import web

from gateway.config.model import CorsPolicy

REQUEST_ID = web.RequestKey("request_id", str)
ROUTE = web.RequestKey("route", str)
OUTCOME = web.RequestKey("outcome", str)
TOKEN_ID = web.RequestKey("token_id", str)
UPSTREAM_STATUS = web.RequestKey("upstream_status", int)
ERROR = web.RequestKey("error", str)  # why the request did not end normally (secret-free)
PATH = web.RequestKey("path", str)  # the normalised path (what was matched and forwarded)
CORS = web.RequestKey("cors", CorsPolicy)  # the matched route's CORS policy, if any
