"""Every refusal the gateway makes, and the one place that turns it into an HTTP answer.

Status policy (see docs/status-codes.md):
- 401 + fresh challenge: the credential is malformed or forged (bad signature,
  preimage that does not match). The client must not retry it, but may pay anew.
- 402 + fresh challenge: the credential was genuine but cannot buy this request
  (expired, used up, revoked, minted for another route, lacks a capability).
- 409: a per-request token is being used by a concurrent request right now.
- 429 + Retry-After: the client asked for challenges faster than
  `challenge_rate_limit` allows; nothing was minted or stored.
- 413 / 502 / 504: the request body or the upstream failed (`ProxyError`).
- 503 + Retry-After: LND or the token store is unavailable; nothing was stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.l402.errors import Reason
from gateway.proxy.errors import ProxyError
from gateway.server.reqkeys import OUTCOME, REQUEST_ID

log = logging.getLogger("gateway.errors")

# Which refused credentials get 401 (do not retry this credential) vs 402 (pay again).
AUTH_STATUS: dict[Reason, int] = {
    Reason.MALFORMED: 401,
    Reason.BAD_SIGNATURE: 401,
    Reason.PREIMAGE_MISMATCH: 401,
    Reason.EXPIRED: 402,
    Reason.WRONG_ROUTE: 402,
    Reason.REVOKED: 402,
    Reason.ALREADY_USED: 402,
    Reason.MISSING_CAPABILITY: 402,
    Reason.IN_USE: 409,
}

RETRY_AFTER_SECONDS = 5


class GatewayError(Exception):
    """A refusal with an HTTP status and a closed reason code (also a log field)."""

    status = 500
    reason = "internal_error"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class NoRoute(GatewayError):
    status = 404
    reason = "no_route"


class TokenInUse(GatewayError):
    status = 409
    reason = "in_use"

    def __init__(self) -> None:
        super().__init__("this single-use token is being used by another request", retry_after=1)


class ChallengeRateLimited(GatewayError):
    """Minting refused for this client (`challenge_rate_limit`); no invoice, nothing stored."""

    status = 429
    reason = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many payment challenges from this client; retry in {retry_after} s",
            retry_after=retry_after,
        )


class LightningUnavailable(GatewayError):
    """LND could not mint an invoice; no token or root key was stored."""

    status = 503
    reason = "lightning_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=RETRY_AFTER_SECONDS)


class StoreUnavailable(GatewayError):
    """The token store failed; a paid credential stays valid for a retry."""

    status = 503
    reason = "store_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=RETRY_AFTER_SECONDS)


def json_error(
    status: int, reason: str, message: str, *, retry_after: int | None = None
) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return web.json_response({"error": reason, "message": message}, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map typed failures to JSON answers; anything unexpected is a 500 without details."""
    try:
        return await handler(request)
    except GatewayError as exc:
        request[OUTCOME] = exc.reason
        return json_error(exc.status, exc.reason, exc.message, retry_after=exc.retry_after)
    except ProxyError as exc:
        request[OUTCOME] = exc.reason
        return json_error(exc.status, exc.reason, exc.detail)
    except web.HTTPException:
        raise
    except Exception:
        request[OUTCOME] = "internal_error"
        log.exception("unhandled error", extra={"request_id": request.get(REQUEST_ID)})
        return json_error(500, "internal_error", "internal error")
