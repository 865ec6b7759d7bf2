"""Typed proxy failures (rendered by the server's error middleware, like every Refusal)."""

from __future__ import annotations

from gateway.paywall.refusals import Refusal


class ProxyError(Refusal):
    """A request could not be proxied."""

    status = 502
    reason = "proxy_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


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


class RequestBodyTimeout(ProxyError):
    """The client did not finish sending its body within the route's body deadline.

    A slow upload must not outlive a single-use lease (status-codes.md), so the
    upload has a deadline of its own, shorter than the lease.
    """

    status = 408
    reason = "request_body_timeout"
