"""The one place a `Refusal` becomes the bytes of an answer, for every transport.

`refusal_answer` gives the HTTP answer as plain values (status, headers,
body), which aiohttp's error middleware, the embedded ASGI and aiohttp
middlewares send as they are; `grpc_status_for` is the gRPC status the
HTTP/2 engine answers the same refusal with. A gRPC request cannot carry a
402: its challenge is Aperture's trailers-only answer (`grpc-status` 13 and
both WWW-Authenticate values). No framework import here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.l402 import challenge as l402_challenge
from gateway.payment.problems import CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from gateway.payment.problems import payment_required
from gateway.payment.wwwauth import parse_challenges
from gateway.paywall.refusals import (
    INVALID_CREDENTIAL,
    BadPaymentCredential,
    BadRequestPath,
    ChallengeRateLimited,
    GatewayAnswer,
    PaymentRequired,
    Refusal,
    TokenInUse,
)

JSON_CONTENT_TYPE = "application/json; charset=utf-8"

# gRPC status codes (grpc/doc/statuscodes.md).
GRPC_INVALID_ARGUMENT, GRPC_RESOURCE_EXHAUSTED = 3, 8
GRPC_UNIMPLEMENTED, GRPC_INTERNAL, GRPC_UNAVAILABLE = 12, 13, 14


@dataclass(frozen=True, slots=True)
class Answer:
    """A refusal's HTTP answer as plain values, so every transport sends the same bytes."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def is_grpc_content_type(content_type: str) -> bool:
    """gRPC (and gRPC-Web) requests announce themselves by content type."""
    return content_type.startswith("application/grpc")


def _json_answer(body: dict[str, Any], status: int, headers: Iterable[tuple[str, str]]) -> Answer:
    """`headers` include the Content-Type, where each answer always had it."""
    return Answer(status, tuple(headers), json.dumps(body).encode())


def _challenge_headers(exc: PaymentRequired) -> list[tuple[str, str]]:
    """Every WWW-Authenticate value of a 402: LSAT and L402 first, then the Payment offers."""
    headers: list[tuple[str, str]] = []
    ch = exc.challenge
    if ch is not None:
        headers += l402_challenge.headers(ch.macaroon_b64, ch.invoice, ch.amount_msats)
    headers += [("WWW-Authenticate", offer) for offer in exc.offers]
    return headers


def payment_required_answer(exc: PaymentRequired, *, grpc: bool) -> Answer:
    """The challenge: JSON + every WWW-Authenticate header, or gRPC's trailers-only form.

    With Payment-scheme offers the body is RFC 9457 `application/problem+json`
    (the payment-required problem, or why a Payment credential was refused),
    carrying the L402 members too when L402 is offered beside it: clients of
    either scheme find what they read."""
    ch = exc.challenge
    if grpc:
        headers = (
            []
            if ch is None
            else l402_challenge.grpc_headers(ch.macaroon_b64, ch.invoice, ch.amount_msats)
        )
        headers += [("www-authenticate", offer) for offer in exc.offers]
        return Answer(200, tuple(headers), b"")
    body: dict[str, Any] = {}
    if ch is not None:
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
    content_type = JSON_CONTENT_TYPE
    if exc.offers:
        problem = exc.problem or payment_required()
        if problem.challenge_id is None:  # the fresh challenge the problem refers to
            problem = dataclasses.replace(problem, challenge_id=offer_id(exc.offers[0]))
        body = {**body, **problem.to_json()}
        content_type = PROBLEM_CONTENT_TYPE
    return _json_answer(
        body,
        exc.status,
        [("Content-Type", content_type), *_challenge_headers(exc), ("Cache-Control", "no-store")],
    )


def offer_id(offer: str) -> str | None:
    """The `id` of a Payment challenge we emitted (for the problem's challengeId)."""
    challenges = parse_challenges(offer)
    return challenges[0].id if challenges else None


def refusal_answer(exc: Refusal, *, grpc: bool = False) -> Answer:
    """The HTTP answer to any refusal (`grpc`: the request's Content-Type is gRPC)."""
    if isinstance(exc, PaymentRequired):
        return payment_required_answer(exc, grpc=grpc)
    if isinstance(exc, GatewayAnswer):
        own = (("Content-Type", JSON_CONTENT_TYPE), ("Cache-Control", "no-store"))
        return Answer(exc.status, (*own, *exc.headers), exc.body.encode())
    if isinstance(exc, BadPaymentCredential):
        return _json_answer(
            exc.problem.to_json(),
            exc.status,
            [("Content-Type", PROBLEM_CONTENT_TYPE), ("Cache-Control", "no-store")],
        )
    headers = {"Cache-Control": "no-store"}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    headers.update(exc.headers)
    if exc.status == 204:  # no content (an OPTIONS answer): headers only
        return Answer(204, tuple(headers.items()), b"")
    headers["Content-Type"] = JSON_CONTENT_TYPE
    return _json_answer({"error": exc.reason, "message": exc.message}, exc.status, headers.items())


def grpc_status_for(refusal: Refusal) -> int:
    """The gRPC status a client acts on for each refusal (one table, by type)."""
    if isinstance(refusal, PaymentRequired):
        return GRPC_INTERNAL  # Aperture's: gRPC clients look for the L402 challenge with it
    if isinstance(refusal, ChallengeRateLimited):
        return GRPC_RESOURCE_EXHAUSTED
    if isinstance(refusal, BadRequestPath):
        return GRPC_INVALID_ARGUMENT
    if refusal.status in (404, 405, 501):
        return GRPC_UNIMPLEMENTED
    if isinstance(refusal, TokenInUse) or refusal.status == 503:
        return GRPC_UNAVAILABLE  # retryable: the store or Lightning will be back, the lease ends
    return GRPC_INTERNAL


def grpc_refusal_headers(refusal: Refusal) -> tuple[list[tuple[str, str]], str]:
    """The headers (lower-case names) and grpc-message of a refusal answered over gRPC."""
    headers: list[tuple[str, str]] = []
    if isinstance(refusal, PaymentRequired):
        headers = [(name.lower(), value) for name, value in _challenge_headers(refusal)]
        message = "payment required"
    else:
        message = refusal.message
    if refusal.retry_after is not None:
        headers.append(("retry-after", str(refusal.retry_after)))
    return headers, message
