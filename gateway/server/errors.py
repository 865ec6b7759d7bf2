"""Every refusal the public listener makes, and the one place that renders it.

The handler and its collaborators raise typed `Refusal`s (gateway.paywall.refusals);
`refusal_answer` turns each into its HTTP answer as plain values (status,
headers, body bytes), which `error_middleware` sends for aiohttp and the
embedded ASGI middleware (gateway.embed) sends as ASGI messages, so no code
branches on status numbers and every transport answers alike. Status policy
(docs/status-codes.md):

- 402 + fresh challenge (`PaymentRequired`): no credential, or one that cannot
  buy this request; malformed or forged credentials too, unless
  `invalid_credential_status: 401` asks for the spec's 401 for those.
- 409 (`TokenInUse`): a per-request token is being used by a concurrent request.
- 429 + Retry-After (`ChallengeRateLimited`): nothing was minted or stored.
- 400 / 404 / 405 / 413 / 408 / 502 / 504: the request or the upstream failed.
- 503 + Retry-After: LND or the token store is unavailable; nothing was stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from gateway.l402 import challenge as l402_challenge
from gateway.l402.errors import L402Error, Reason
from gateway.l402.mint import Challenge
from gateway.paywall.refusals import Refusal
from gateway.server.reqkeys import OUTCOME, REQUEST_ID

log = logging.getLogger("gateway.errors")

RETRY_AFTER_SECONDS = 5

# Refusals of credentials that are not genuine (`invalid_credential_status` applies);
# every other reason is a genuine credential that cannot buy this request (402).
INVALID_CREDENTIAL = frozenset({Reason.MALFORMED, Reason.BAD_SIGNATURE, Reason.PREIMAGE_MISMATCH})


class GatewayError(Refusal):
    """A refusal made by the server itself (not the proxy)."""


class BadRequestPath(GatewayError):
    status = 400
    reason = "bad_path"


class NoRoute(GatewayError):
    status = 404
    reason = "no_route"


class MethodNotAllowed(GatewayError):
    """The resource exists, but no route takes this method (RFC 9110: 405 + Allow)."""

    status = 405
    reason = "method_not_allowed"

    def __init__(self, method: str, allowed: frozenset[str]) -> None:
        allow = ", ".join(sorted(allowed))
        super().__init__(f"{method} is not allowed here", headers=(("Allow", allow),))


class MethodNotImplemented(GatewayError):
    """A method no route takes and HTTP does not define (RFC 9110: 501)."""

    status = 501
    reason = "method_not_implemented"


class TokenInUse(GatewayError):
    status = 409
    reason = "in_use"

    def __init__(self) -> None:
        super().__init__("this single-use token is being used by another request", retry_after=1)


class LeaseLost(GatewayError):
    """This request's single-use lease lapsed and another request took the token over."""

    status = 409
    reason = "lease_lost"

    def __init__(self) -> None:
        super().__init__("this request outlived its hold on the single-use token; retry")


class ExpectationFailed(GatewayError):
    status = 417
    reason = "expectation_failed"


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
    """The token store failed or did not answer in time; a paid credential stays valid."""

    status = 503
    reason = "store_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=RETRY_AFTER_SECONDS)


class PaymentRequired(GatewayError):
    """A fresh challenge, minted; `refused` says why an offered credential was not enough."""

    status = 402
    reason = "challenge"

    def __init__(
        self, route: str, challenge: Challenge, refused: L402Error | None, status: int
    ) -> None:
        super().__init__("payment required")
        self.route = route
        self.challenge = challenge
        self.refused = refused
        self.status = status
        if refused is not None:  # the access log's outcome
            self.reason = f"refused_{refused.reason.value}"


def refusal_status(refused: L402Error | None, invalid_credential_status: int) -> int:
    """402, or the configured status for a credential that is not genuine."""
    if refused is not None and refused.reason in INVALID_CREDENTIAL:
        return invalid_credential_status
    return 402


JSON_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Answer:
    """A refusal's HTTP answer as plain values, so every transport (the aiohttp
    error middleware, the embedded ASGI middleware) sends the same bytes."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def is_grpc_content_type(content_type: str) -> bool:
    return content_type.startswith("application/grpc")


def is_grpc(request: web.BaseRequest) -> bool:
    return is_grpc_content_type(request.headers.get("Content-Type", ""))


def _json_answer(body: dict[str, Any], status: int, headers: Iterable[tuple[str, str]]) -> Answer:
    """`headers` include the Content-Type, where each answer always had it."""
    return Answer(status, tuple(headers), json.dumps(body).encode())


def payment_required_answer(exc: PaymentRequired, *, grpc: bool) -> Answer:
    """The challenge: JSON + both WWW-Authenticate headers, or gRPC's trailers-only form."""
    ch = exc.challenge
    if grpc:
        # gRPC cannot carry a 402: Aperture's trailers-only answer.
        return Answer(
            200,
            tuple(l402_challenge.grpc_headers(ch.macaroon_b64, ch.invoice, ch.amount_msats)),
            b"",
        )
    body = l402_challenge.body(
        exc.route,
        ch.amount_msats,
        ch.invoice,
        ch.macaroon_b64,
        ch.payment_hash.hex(),
        ch.expires_at,
    )
    if exc.refused is not None:
        if exc.refused.reason in INVALID_CREDENTIAL:
            body["error"] = "invalid_credential"
        body["reason"] = exc.refused.reason.value
        body["message"] = exc.refused.detail  # the core keeps details free of secrets
    headers = l402_challenge.headers(ch.macaroon_b64, ch.invoice, ch.amount_msats)
    return _json_answer(
        body,
        exc.status,
        [("Content-Type", JSON_CONTENT_TYPE), *headers, ("Cache-Control", "no-store")],
    )


def refusal_answer(exc: Refusal, *, grpc: bool = False) -> Answer:
    """The HTTP answer to any refusal (`grpc`: the request's Content-Type is gRPC)."""
    if isinstance(exc, PaymentRequired):
        return payment_required_answer(exc, grpc=grpc)
    headers = {"Cache-Control": "no-store"}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    headers.update(exc.headers)
    headers["Content-Type"] = JSON_CONTENT_TYPE
    return _json_answer({"error": exc.reason, "message": exc.message}, exc.status, headers.items())


def answer_response(answer: Answer) -> web.Response:
    return web.Response(
        status=answer.status, body=answer.body or None, headers=CIMultiDict(answer.headers)
    )


def render_payment_required(request: web.BaseRequest, exc: PaymentRequired) -> web.Response:
    return answer_response(payment_required_answer(exc, grpc=is_grpc(request)))


def render(request: web.BaseRequest, exc: Refusal) -> web.Response:
    """The HTTP answer to any refusal."""
    return answer_response(refusal_answer(exc, grpc=is_grpc(request)))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map typed refusals to their answers; anything unexpected is a 500 without details."""
    try:
        return await handler(request)
    except Refusal as exc:
        request[OUTCOME] = exc.reason
        return render(request, exc)
    except web.HTTPException:
        raise
    except Exception:
        request[OUTCOME] = "internal_error"
        log.exception("unhandled error", extra={"request_id": request.get(REQUEST_ID)})
        return render(request, GatewayError("internal error"))
