"""Issuing 402 challenges: an LND invoice, a fresh token, at most as fast as each client may.

Minting is rate limited per client (`challenge_rate_limit`) before anything
touches LND or the store: a limited client gets 429 + Retry-After instead.
The result is raised as a `PaymentRequired` refusal, which the error
middleware renders for HTTP or gRPC clients.

A route with a pricing hook (gateway.pricer.hook) gets its price per challenge,
after the rate limit (a limited client costs the hook nothing) and before
LND: that price goes into this challenge's invoice and token record only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from gateway.l402.errors import L402Error
from gateway.l402.mint import Challenge, Minter, MintRequest
from gateway.lightning import BackendError
from gateway.observability.metrics import GatewayMetrics
from gateway.payment.problems import Problem
from gateway.paywall.mpp.offers import OfferMinter
from gateway.paywall.ratelimit import ChallengeLimiter, retry_after_seconds
from gateway.paywall.refusals import (
    ChallengeRateLimited,
    LightningUnavailable,
    PaymentRequired,
    StoreUnavailable,
    refusal_status,
)
from gateway.paywall.routes import RouteRuntime
from gateway.pricer.prices import PriceQuery, Pricer
from gateway.store.types import StoreError

log = logging.getLogger("gateway.challenges")


class ChallengeIssuer:
    """Mints a token per challenge for clients within their `challenge_rate_limit`."""

    def __init__(
        self,
        minter: Minter,
        limiter: ChallengeLimiter,
        metrics: GatewayMetrics,
        clock: Callable[[], float],
        *,
        pricer: Pricer | None,
        offers: OfferMinter | None = None,
    ) -> None:
        self._minter = minter
        self._offers = offers
        self.limiter = limiter
        self._metrics = metrics
        self._clock = clock
        self._pricer = pricer

    async def demand_payment(
        self,
        runtime: RouteRuntime,
        client_key: str,
        refused: L402Error | None,
        invalid_credential_status: int,
        query: PriceQuery | None = None,
        problem: Problem | None = None,
    ) -> PaymentRequired:
        """A fresh challenge for `client_key`; `refused` says why an offered credential was
        not enough; `query` describes the request to a route's pricing hook (required
        when the route has one). Raises ChallengeRateLimited (429), LightningUnavailable
        or StoreUnavailable (503): nothing is stored in any of those cases. `problem`
        says why a Payment-scheme credential was refused."""
        challenge, offers = await self._mint(runtime, client_key, query)
        status = refusal_status(refused, invalid_credential_status)
        return PaymentRequired(
            runtime.name, challenge, refused, status, offers=offers, problem=problem
        )

    async def _mint_request(self, runtime: RouteRuntime, query: PriceQuery | None) -> MintRequest:
        """The route's prebuilt request, or a copy at the hook's price (validated again by
        MintRequest itself)."""
        assert runtime.mint is not None, "free routes are never challenged"
        hook = runtime.route.pricing
        if hook is None:
            return runtime.mint
        if query is None or self._pricer is None:
            raise RuntimeError(f"route {runtime.name!r} has a pricing hook but no price source")
        price = await self._pricer.price(hook, query)
        return dataclasses.replace(runtime.mint, price_msat=price.msat)

    async def _mint(
        self, runtime: RouteRuntime, client_key: str, query: PriceQuery | None
    ) -> tuple[Challenge | None, tuple[str, ...]]:
        """The L402 challenge (if the route sells L402) and the Payment offers (if it sells
        the Payment scheme), minted side by side at one price."""
        route = runtime.name
        now = self._clock()
        wait = await self.limiter.allow(client_key, now)
        if wait is not None:
            self._metrics.challenges_rate_limited.labels(route=route).inc()
            raise ChallengeRateLimited(retry_after_seconds(wait))
        request = await self._mint_request(runtime, query)
        # Read the clock again: a hook call may have taken a while.
        minted_at = int(self._clock())
        sells_l402 = runtime.route.sells_l402 or self._offers is None
        try:
            challenge, offers = await asyncio.gather(
                self._minter.mint(request, minted_at) if sells_l402 else _none(),
                self._offers.offers(runtime, request.price_msat, minted_at)
                if self._offers is not None
                else _no_offers(),
            )
        except BackendError as exc:
            self._metrics.invoice_failures.labels(
                route=route, reason="lnd_" + exc.code.lower()
            ).inc()
            # The backend's own words name the cause ("permission denied": wrong macaroon).
            log.warning(
                "invoice creation failed",
                extra={
                    "route": route,
                    "lnd_code": exc.code,
                    "lnd_method": exc.method,
                    "error": exc.explain(),
                },
            )
            raise LightningUnavailable("could not create a Lightning invoice; retry later") from exc
        except StoreError as exc:
            self._metrics.invoice_failures.labels(route=route, reason="store").inc()
            raise StoreUnavailable("could not store the new token; retry later") from exc
        self._metrics.challenges_issued.labels(route=route).inc()
        return challenge, offers


async def _none() -> None:
    return None


async def _no_offers() -> tuple[str, ...]:
    return ()
