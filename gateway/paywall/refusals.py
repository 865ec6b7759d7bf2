"""Every answer the gateway makes itself instead of serving: one status, one reason code.

Each layer raises typed subclasses (these, and the proxy's `ProxyError`s);
`gateway.paywall.answers` is the one place that turns any `Refusal` into the
bytes of an HTTP answer, and each transport sends those bytes its own way
(aiohttp's error middleware, the HTTP/2 engine's gRPC answer, an ASGI
response), so no code branches on status numbers. No framework import here:
the decision, the proxy, the HTTP/2 engine and the embedded middleware share
it. Status policy (docs/status-codes.md):

- 402 + fresh challenge (`PaymentRequired`): no credential, or one that cannot
  buy this request; malformed or forged credentials too, unless
  `invalid_credential_status: 401` asks for the spec's 401 for those.
- 409 (`TokenInUse`, `LeaseLost`): a per-request token is held by another request.
- 429 + Retry-After (`ChallengeRateLimited`): nothing was minted or stored.
- 400 / 404 / 405 / 501: the request cannot be located.
- 503 + Retry-After: Lightning or the token store is unavailable; nothing was stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.l402.errors import L402Error, Reason

if TYPE_CHECKING:
    from gateway.l402.mint import Challenge
    from gateway.payment.problems import Problem

RETRY_AFTER_SECONDS = 5

# Refusals of credentials that are not genuine (`invalid_credential_status` applies);
# every other reason is a genuine credential that cannot buy this request (402).
INVALID_CREDENTIAL = frozenset({Reason.MALFORMED, Reason.BAD_SIGNATURE, Reason.PREIMAGE_MISMATCH})


class Refusal(Exception):
    """A request the gateway answers itself. `message` is shown to the client: no secrets."""

    status: int = 500
    reason: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.headers = headers

    @property
    def detail(self) -> str:
        return self.message


class GatewayError(Refusal):
    """A refusal made by the paywall or the listener itself (not the proxy's upstream hop)."""


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
    """The Lightning backend could not mint an invoice; no token or root key was stored."""

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


class NotStarted(GatewayError):
    """A priced request arrived before start-up (or after shutdown): nothing can be sold."""

    status = 503
    reason = "not_started"

    def __init__(self) -> None:
        super().__init__(
            "the payment middleware is not running; retry later", retry_after=RETRY_AFTER_SECONDS
        )


class PaymentRequired(GatewayError):
    """A fresh challenge, minted: the L402 one (`challenge`) and/or the Payment scheme's
    offers (`offers`: WWW-Authenticate values). `refused` says why an offered L402
    credential was not enough; `problem`, why a Payment credential was not."""

    status = 402
    reason = "challenge"

    def __init__(
        self,
        route: str,
        challenge: Challenge | None,
        refused: L402Error | None,
        status: int,
        *,
        offers: tuple[str, ...] = (),
        problem: Problem | None = None,
    ) -> None:
        super().__init__("payment required")
        self.route = route
        self.challenge = challenge
        self.refused = refused
        self.status = status
        self.offers = offers
        self.problem = problem
        if refused is not None:  # the access log's outcome
            self.reason = f"refused_{refused.reason.value}"
        elif problem is not None:
            self.reason = f"refused_{problem.type.name.lower()}"


class BadPaymentCredential(GatewayError):
    """A Payment credential no challenge can answer (several credentials, an unsupported
    method or intent): 400 with its problem document, no fresh challenge."""

    status = 400
    reason = "bad_payment_credential"

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail or "bad Payment credential")
        self.problem = problem


class GatewayAnswer(GatewayError):
    """An answer the gateway gives itself instead of forwarding (a Payment session's open,
    top-up or close): `status`, a JSON `body` and headers (a receipt)."""

    reason = "answered"

    def __init__(
        self, status: int, body: str, headers: tuple[tuple[str, str], ...], outcome: str
    ) -> None:
        super().__init__(outcome, headers=headers)
        self.status = status
        self.body = body
        self.reason = outcome


def refusal_status(refused: L402Error | None, invalid_credential_status: int) -> int:
    """402, or the configured status for a credential that is not genuine."""
    if refused is not None and refused.reason in INVALID_CREDENTIAL:
        return invalid_credential_status
    return 402
