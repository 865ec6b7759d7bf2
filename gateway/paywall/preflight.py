"""The answer to a CORS preflight, as plain values, for the proxy and the embedded middleware.

A preflight (OPTIONS + Origin + Access-Control-Request-Method) never buys
anything: it is answered 204 before any payment logic, so it mints no
invoice and stores no token, and, embedded, it never reaches an app handler
that would answer it from a priced route. An origin the route's policy allows
gets the CORS headers; any other origin, or a route without a policy, gets a
bare 204 (the browser then refuses, as it should). No framework import here.
"""

from __future__ import annotations

from gateway.config.model import CorsPolicy
from gateway.l402.grammar import is_token
from gateway.paywall.answers import Answer

ORIGIN = "origin"
REQUEST_METHOD = "access-control-request-method"


def allow_origin(policy: CorsPolicy, origin: str) -> str | None:
    """The Access-Control-Allow-Origin value for `origin`, or None when not allowed."""
    if not policy.allows(origin.lower()):
        return None
    if policy.any_origin and not policy.allow_credentials:
        return "*"
    return origin


def preflight_answer(policy: CorsPolicy | None, origin: str, requested_method: str) -> Answer:
    allowed = allow_origin(policy, origin) if policy is not None else None
    if policy is None or allowed is None:
        return Answer(204, (), b"")
    headers = [("Access-Control-Allow-Origin", allowed)]
    if allowed != "*":
        headers.append(("Vary", "Origin"))
    if is_token(requested_method):  # it is echoed: never reflect anything else
        headers.append(("Access-Control-Allow-Methods", requested_method))
    headers.append(("Access-Control-Allow-Headers", ", ".join(policy.allow_headers)))
    headers.append(("Access-Control-Max-Age", str(policy.max_age_seconds)))
    if policy.allow_credentials:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    return Answer(204, tuple(headers), b"")
