"""Issuing 402 challenges: an LND invoice, a fresh token, and Aperture's two headers.

Minting is rate limited per client (`challenge_rate_limit`) before anything
touches LND or the store: a limited client gets 429 + Retry-After instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web

from gateway.config.model import ChallengeRateLimit, Route
from gateway.l402 import challenge as l402_challenge
from gateway.l402.errors import L402Error
from gateway.l402.mint import InvoiceLike, Minter, MintRequest
from gateway.lightning import LndClient, LndError
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import TokenBucketLimiter, retry_after_seconds
from gateway.server.errors import ChallengeRateLimited, LightningUnavailable, StoreUnavailable
from gateway.store.base import StoreError, TokenStore

log = logging.getLogger("gateway.challenges")


class LndInvoiceSource:
    """Adapts the LND client to the core's InvoiceSource protocol."""

    def __init__(self, lnd: LndClient) -> None:
        self._lnd = lnd

    async def create_invoice(
        self, value_msat: int, memo: str, expiry: int, private: bool
    ) -> InvoiceLike:
        return await self._lnd.add_invoice(value_msat, memo, expiry, private)


def is_grpc(request: web.Request) -> bool:
    return request.headers.get("Content-Type", "").startswith("application/grpc")


class ChallengeIssuer:
    """Mints a token per challenge (at most as fast as each client's limit allows)
    and renders it for HTTP or gRPC clients."""

    def __init__(
        self,
        minter: Minter,
        metrics: GatewayMetrics,
        limit: ChallengeRateLimit,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._minter = minter
        self._metrics = metrics
        self._clock = clock
        self.limiter = TokenBucketLimiter(limit.per_minute, limit.burst)

    @classmethod
    def for_lnd(
        cls,
        lnd: LndClient,
        store: TokenStore,
        metrics: GatewayMetrics,
        limit: ChallengeRateLimit,
        clock: Callable[[], float] = time.time,
    ) -> ChallengeIssuer:
        return cls(Minter(LndInvoiceSource(lnd), store, clock), metrics, limit, clock)

    def set_limit(self, limit: ChallengeRateLimit) -> None:
        """Apply a reloaded `challenge_rate_limit`; clients keep their remaining tokens."""
        self.limiter.configure(limit.per_minute, limit.burst)

    async def respond(
        self,
        request: web.Request,
        route: Route,
        *,
        client: str,
        status: int = 402,
        refusal: L402Error | None = None,
    ) -> web.Response:
        """A fresh challenge for `client` (its address, the rate-limit key); `refusal` says
        why an offered credential was not enough. Raises ChallengeRateLimited (429)."""
        wait = self.limiter.allow(client, self._clock())
        if wait is not None:
            self._metrics.challenges_rate_limited.labels(route=route.name).inc()
            raise ChallengeRateLimited(retry_after_seconds(wait))
        mint_request = MintRequest(
            route=route.name,
            service=route.name,
            price_msat=route.price_msat,
            memo=route.memo,
            expiry=route.invoice_expiry_seconds,
            private=route.private_invoices,
            capabilities=route.capabilities,
            validity_seconds=route.token_validity_seconds,
            single_use=route.single_use,
        )
        try:
            ch = await self._minter.mint(mint_request)
        except LndError as exc:
            self._metrics.invoice_failures.labels(
                route=route.name, reason="lnd_" + exc.code.lower()
            ).inc()
            log.warning(
                "invoice creation failed",
                extra={"route": route.name, "lnd_code": exc.code, "lnd_method": exc.method},
            )
            raise LightningUnavailable("could not create a Lightning invoice; retry later") from exc
        except StoreError as exc:
            self._metrics.invoice_failures.labels(route=route.name, reason="store").inc()
            raise StoreUnavailable("could not store the new token; retry later") from exc
        self._metrics.challenges_issued.labels(route=route.name).inc()

        if is_grpc(request):
            headers = l402_challenge.grpc_headers(ch.macaroon_b64, ch.invoice, ch.amount_msats)
            response = web.Response(status=200)
            for name, value in headers:
                response.headers.add(name, value)
            return response

        body = l402_challenge.body(
            route.name,
            ch.amount_msats,
            ch.invoice,
            ch.macaroon_b64,
            ch.payment_hash.hex(),
            ch.expires_at,
        )
        if refusal is not None:
            if status == 401:
                body["error"] = "invalid_credential"
            body["reason"] = refusal.reason.value
            body["message"] = refusal.detail  # the core keeps details free of secrets
        response = web.json_response(body, status=status)
        for name, value in l402_challenge.headers(ch.macaroon_b64, ch.invoice, ch.amount_msats):
            response.headers.add(name, value)
        response.headers["Cache-Control"] = "no-store"
        return response
