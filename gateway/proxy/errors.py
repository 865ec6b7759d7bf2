"""Typed proxy failures.

The server maps every `ProxyError` to an HTTP answer in one place, using
`.status` and `.reason`; this package never builds error responses itself.
"""

from __future__ import annotations


class ProxyError(Exception):
    """A request could not be proxied; `status` is the HTTP status to answer."""

    status: int = 502
    reason: str = "proxy_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UpstreamUnreachable(ProxyError):
    """Connecting to the upstream failed, or it dropped the connection."""

    status = 502
    reason = "upstream_unreachable"


class UpstreamTimeout(ProxyError):
    """The upstream did not connect or answer within the route's timeout."""

    status = 504
    reason = "upstream_timeout"


class BodyTooLarge(ProxyError):
    """The request body exceeds the route's `max_body_bytes`."""

    status = 413
    reason = "body_too_large"

    def __init__(self, limit: int, declared: int | None = None) -> None:
        what = f"declared {declared} bytes" if declared is not None else "body"
        super().__init__(f"request {what} exceeds the limit of {limit} bytes")
        self.limit = limit
        self.declared = declared


class RequestBodyError(ProxyError):
    """Reading the client's body failed (client went away or sent a short body)."""

    status = 400
    reason = "bad_request_body"
