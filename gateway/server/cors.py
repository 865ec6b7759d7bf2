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

from gateway.config.model import CorsPolicy
from gateway.l402.grammar import is_token
from gateway.server.reqkeys import CORS

PREFLIGHT = "Access-Control-Request-Method"
_ORIGIN = "Origin"


def is_preflight(request: web.Request) -> bool:
    return (
        request.method == "OPTIONS" and _ORIGIN in request.headers and PREFLIGHT in request.headers
    )


def _allow_origin(policy: CorsPolicy, origin: str) -> str | None:
    """The Access-Control-Allow-Origin value for `origin`, or None when not allowed."""
    if not policy.allows(origin.lower()):
        return None
    if policy.any_origin and not policy.allow_credentials:
        return "*"
    return origin


def preflight_response(request: web.Request, policy: CorsPolicy | None) -> web.Response:
    response = web.Response(status=204)
    origin = request.headers[_ORIGIN]
    allowed = _allow_origin(policy, origin) if policy is not None else None
    if policy is None or allowed is None:
        return response
    response.headers["Access-Control-Allow-Origin"] = allowed
    if allowed != "*":
        response.headers["Vary"] = "Origin"
    method = request.headers[PREFLIGHT]
    if is_token(method):  # it is echoed: never reflect anything else
        response.headers["Access-Control-Allow-Methods"] = method
    response.headers["Access-Control-Allow-Headers"] = ", ".join(policy.allow_headers)
    response.headers["Access-Control-Max-Age"] = str(policy.max_age_seconds)
    if policy.allow_credentials:
        response.headers["Access-Control-Allow-Credentials"] = "true"
    return response


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` signal: CORS headers for an allowed origin, on any answer."""
    policy = request.get(CORS)
    origin = request.headers.get(_ORIGIN)
    if policy is None or origin is None or "Access-Control-Allow-Origin" in response.headers:
        return
    allowed = _allow_origin(policy, origin)
    if allowed is None:
        return
    response.headers["Access-Control-Allow-Origin"] = allowed
    if allowed != "*":
        response.headers.add("Vary", "Origin")
    response.headers["Access-Control-Expose-Headers"] = ", ".join(policy.expose_headers)
    if policy.allow_credentials:
        response.headers["Access-Control-Allow-Credentials"] = "true"
