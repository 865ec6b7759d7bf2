"""The paywall's price source: the operator's pricing services, opened on first use.

`OnDemandPricer` is the paywall's `Pricer`: it opens a source's client the
first time a challenge needs it, so a gateway whose routes have no pricing
hook never opens (or imports) one, and a reload that adds a hook just works.
HTTP hooks (`pricing: {url: ...}`) go to gateway.pricer.hook, Aperture
pricers (`pricing: {grpc: ...}`) to gateway.pricer.pool, whose clients the
metered holds share (`grpc`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.config.model import GrpcPricing, PricingHook
from gateway.l402.mint import Challenge
from gateway.observability.metrics import GatewayMetrics
from gateway.pricer.prices import Price, PriceQuery

if TYPE_CHECKING:
    from gateway.pricer.hook import PriceHook
    from gateway.pricer.pool import GrpcPricers


class OnDemandPricer:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._http: PriceHook | None = None
        self._grpc: GrpcPricers | None = None

    @property
    def grpc(self) -> GrpcPricers:
        if self._grpc is None:
            from gateway.pricer.pool import GrpcPricers  # grpc, loaded on first use

            self._grpc = GrpcPricers(self._metrics)
        return self._grpc

    async def price(self, hook: PricingHook | GrpcPricing, query: PriceQuery) -> Price:
        if isinstance(hook, GrpcPricing):
            return await self.grpc.price(hook, query)
        if self._http is None:
            from gateway.pricer.hook import PriceHook  # aiohttp's client, loaded on first use

            self._http = PriceHook.create(self._metrics)
        return await self._http.price(hook, query)

    async def minted(
        self, hook: PricingHook | GrpcPricing, query: PriceQuery, challenge: Challenge
    ) -> None:
        if isinstance(hook, GrpcPricing):
            await self.grpc.minted(hook, query, challenge)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._grpc is not None:
            await self._grpc.close()
            self._grpc = None
