"""Settlement accounting: follow LND's SubscribeInvoices and book revenue per route.

The follower resumes from the last settle index the store recorded, so LND
replays only what was missed while the gateway (or LND) was down, and the
store's per-payment-hash uniqueness makes a replay count once. Invoices the
gateway did not mint are ignored. It runs beside serving: start-up never
waits on the invoice history.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.lightning import InvoiceState, LndClient, LndError
from gateway.metrics import GatewayMetrics
from gateway.store.base import StoreError, TokenStore

log = logging.getLogger("gateway.settlement")

BACKOFF_START = 0.5
BACKOFF_MAX = 10.0


class SettlementFollower:
    def __init__(self, lnd: LndClient, store: TokenStore, metrics: GatewayMetrics) -> None:
        self._lnd = lnd
        self._store = store
        self._metrics = metrics
        self.settled = asyncio.Event()  # set after each booked settlement (tests wait on it)
        self.booked = 0

    async def run(self) -> None:
        """Follow forever; reconnect with backoff when LND or the store fails."""
        backoff = BACKOFF_START
        while True:
            try:
                await self._follow_once()
            except (LndError, StoreError) as exc:
                log.warning("settlement stream interrupted", extra={"error": type(exc).__name__})
            else:
                backoff = BACKOFF_START
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _follow_once(self) -> None:
        index = await self._store.last_settle_index()
        self._metrics.settle_index.set(index)
        async for invoice in self._lnd.subscribe_invoices(settle_index=index):
            if invoice.state is not InvoiceState.SETTLED or invoice.settle_index <= index:
                continue
            route = await self._store.route_for_payment_hash(invoice.payment_hash)
            if route is None:
                continue  # not minted by this gateway
            settled_at = invoice.settle_date or int(time.time())
            new = await self._store.record_settlement(
                invoice.payment_hash,
                route,
                invoice.amt_paid_msat,
                invoice.settle_index,
                settled_at,
            )
            index = invoice.settle_index
            self._metrics.settle_index.set(index)
            if new:
                self._metrics.settled_invoices.labels(route=route).inc()
                self._metrics.revenue_msats.labels(route=route).inc(invoice.amt_paid_msat)
                self.booked += 1
                log.info(
                    "invoice settled",
                    extra={
                        "route": route,
                        "settle_index": index,
                        "amt_paid_msat": invoice.amt_paid_msat,
                    },
                )
            self.settled.set()
