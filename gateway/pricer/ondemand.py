"""The paywall's price source: the operator's pricing services, opened on first use.

`OnDemandPricer` is the paywall's `Pricer`: it opens a source's client the
first time a challenge needs it, so a gateway whose routes have no pricing
hook never opens (or imports) one, and a reload that adds a hook just works.
"""

from __future__ import annotations

from gateway.config.model import PricingHook
from gateway.observability.metrics import GatewayMetrics
from gateway.pricer.prices import Price, PriceQuery, Pricer


class OnDemandPricer:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._http: Pricer | None = None

    async def price(self, hook: PricingHook, query: PriceQuery) -> Price:
        if self._http is None:
            from gateway.pricer.hook import PriceHook  # aiohttp's client, loaded on first use

            self._http = PriceHook.create(self._metrics)
        return await self._http.price(hook, query)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
