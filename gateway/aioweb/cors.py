"""CORS for browser buyers: preflights answered without minting, headers on every answer.

A page on another origin must be able to read the 402's `WWW-Authenticate`
and send `Authorization`. Preflights (`OPTIONS` + `Origin` +
`Access-Control-Request-Method`) are answered 204 before any payment logic,
so they never mint an invoice or store a token; a route without a CORS policy
gets a bare 204 (the browser then refuses, as it should). Every other answer
to an allowed origin, whether proxied, a challenge or an error, gets the
headers in `on_response_prepare`, just before it is sent.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from gateway.config.model import CorsPolicy
from gateway.paywall.preflight import allow_origin, preflight_answer

CORS = web.RequestKey("cors", CorsPolicy)  # the matched route's CORS policy, if any
PREFLIGHT = "Access-Control-Request-Method"
_ORIGIN = "Origin"


def is_preflight(request: web.BaseRequest) -> bool:
    return (
        request.method == "OPTIONS" and _ORIGIN in request.headers and PREFLIGHT in request.headers
    )


def preflight_response(request: web.BaseRequest, policy: CorsPolicy | None) -> web.Response:
    answer = preflight_answer(policy, request.headers[_ORIGIN], request.headers[PREFLIGHT])
    return web.Response(status=answer.status, headers=CIMultiDict(answer.headers))


async def add_cors_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare` signal: CORS headers for an allowed origin, on any answer."""
    policy = request.get(CORS)
    origin = request.headers.get(_ORIGIN)
    if policy is None or origin is None or "Access-Control-Allow-Origin" in response.headers:
        return
    allowed = allow_origin(policy, origin)
    if allowed is None:
        return
    response.headers["Access-Control-Allow-Origin"] = allowed
    if allowed != "*":
        response.headers.add("Vary", "Origin")
    response.headers["Access-Control-Expose-Headers"] = ", ".join(policy.expose_headers)
    if policy.allow_credentials:
        response.headers["Access-Control-Allow-Credentials"] = "true"
