"""Routes priced by Aperture pricers (`pricing: {grpc: ...}`): one client per pricer, prices,
and the booking of every bundle a metered pricer sells.

`GrpcPricers` is the gRPC half of the paywall's price source (the HTTP hook
is gateway.pricer.hook; gateway.pricer.ondemand picks one per route):

- `price`: `GetPrice` with the request text (gateway.pricer.wire). Not
  metered, any failure or an answer outside 1..`max_price` uses the route's
  fallback, as the HTTP hook does (`l402_pricing_fallbacks_total`). Metered,
  there is no fallback: a bundle the pricer did not quote cannot be booked
  with it, so a failure raises `NoPrice` (the paywall's 503, nothing minted).
- `minted`: a metered pricer books the bundle under the challenge's token id
  (`ChallengeMinted`) before the 402 leaves; if it cannot, the 402 is not
  sent (503): a buyer must never pay for a bundle nobody keeps.
- `client`: the pricer of a route, for the metered hold (AuthorizeRequest,
  ReportUsage: gateway.paywall.pricerhold).

A price of 0 is not "free" here (unlike Aperture): a pricer bug must not
give the API away, so it is invalid (fallback, or 503 when metered).
"""

from __future__ import annotations

import logging
import time

from gateway.config.model import GrpcPricing
from gateway.l402.mint import Challenge
from gateway.observability.metrics import GatewayMetrics
from gateway.pricer.client import GrpcPricer
from gateway.pricer.errors import NoPrice, PricerError, PricerUnavailable
from gateway.pricer.prices import Fallback, Price, PriceQuery

log = logging.getLogger("gateway.pricing")

_Key = tuple[str, str | None, float, float]


class GrpcPricers:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._clients: dict[_Key, GrpcPricer] = {}

    def _observe(self, method: str, seconds: float, code: str | None) -> None:
        self._metrics.pricer_rpc_latency.labels(method=method).observe(seconds)
        if code is not None:
            self._metrics.pricer_rpc_errors.labels(method=method, code=code).inc()

    def client(self, pricing: GrpcPricing) -> GrpcPricer:
        """The route's pricer client (one channel per address and settings, opened lazily)."""
        tls = str(pricing.tls_cert) if pricing.tls_cert is not None else None
        key = (pricing.address, tls, pricing.timeout_seconds, pricing.report_timeout_seconds)
        client = self._clients.get(key)
        if client is None:
            client = GrpcPricer.connect(
                pricing.address,
                tls_cert=pricing.tls_cert,
                timeout=pricing.timeout_seconds,
                report_timeout=pricing.report_timeout_seconds,
                observer=self._observe,
            )
            self._clients[key] = client
        return client

    async def price(self, pricing: GrpcPricing, query: PriceQuery) -> Price:
        if query.view is None:
            raise RuntimeError(f"route {query.route!r}: a gRPC pricer needs the request")
        started = time.perf_counter()
        reason: Fallback | None = None
        sats = 0
        try:
            sats = await self.client(pricing).get_price(await query.view.priced())
        except PricerError as exc:
            reason = Fallback.TIMEOUT if isinstance(exc, PricerUnavailable) else Fallback.ERROR
            if exc.code == "DEADLINE_EXCEEDED":
                reason = Fallback.TIMEOUT
            detail = exc.code
        else:
            detail = "price out of range"
            if not 1 <= sats * 1000 <= pricing.max_msat:
                reason = Fallback.INVALID
        finally:
            self._metrics.pricing_latency.labels(route=query.route).observe(
                time.perf_counter() - started
            )
        if reason is None:
            return Price(sats * 1000)
        self._metrics.pricing_fallbacks.labels(route=query.route, reason=reason.value).inc()
        if pricing.fallback_msat is None:  # metered: nothing is guessed
            log.warning(
                "metered pricer gave no price; challenge refused",
                extra={"route": query.route, "error": detail},
            )
            raise NoPrice("the pricer of this route is unavailable; retry later")
        log.warning(
            "pricer gave no price; fallback used",
            extra={"route": query.route, "reason": reason.value, "error": detail},
        )
        return Price(pricing.fallback_msat, reason)

    async def minted(self, pricing: GrpcPricing, query: PriceQuery, challenge: Challenge) -> None:
        if not pricing.metered:
            return
        if query.view is None:
            raise RuntimeError(f"route {query.route!r}: a gRPC pricer needs the request")
        try:
            await self.client(pricing).challenge_minted(
                await query.view.priced(),
                challenge.token_id_hex,
                query.service,
                challenge.amount_msats // 1000,
            )
        except PricerError as exc:
            log.warning(
                "metered pricer did not book the bundle; challenge withdrawn",
                extra={"route": query.route, "error": exc.code},
            )
            raise NoPrice("the pricer of this route is unavailable; retry later") from exc

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()
