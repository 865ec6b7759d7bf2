"""Settlement accounting: follow LND's SubscribeInvoices and book revenue per route.

The follower resumes from the last settle index the store recorded, so LND
replays only what was missed while the gateway (or LND) was down, and the
store's per-payment-hash uniqueness makes a replay count once. Invoices the
gateway did not mint are ignored. It runs beside serving: start-up never
waits on the invoice history.

LND reads a settle index of 0 as "no backlog", not "from the beginning", so
while the store has booked nothing yet the follower first pages through
ListInvoices and books what settled while no gateway was following (a buyer
paying during a deploy), then subscribes from the highest settle index seen.
That scan starts at the store's first minted token (ListInvoices'
creation-date filter), so a gateway new to a busy node never walks the node's
older history, and one that has minted nothing skips it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.lightning import Invoice, InvoiceState, LndClient, LndError
from gateway.metrics import GatewayMetrics
from gateway.store.base import StoreError, TokenStore

log = logging.getLogger("gateway.settlement")

BACKOFF_START = 0.5
BACKOFF_MAX = 10.0
CATCH_UP_PAGE = 1000
CLOCK_SKEW_SECONDS = 300  # our token time vs LND's invoice creation time


class SettlementFollower:
    def __init__(self, lnd: LndClient, store: TokenStore, metrics: GatewayMetrics) -> None:
        self._lnd = lnd
        self._store = store
        self._metrics = metrics
        self._caught_up_to = 0  # highest settle index a ListInvoices catch-up has seen

    async def run(self) -> None:
        """Follow forever; reconnect with backoff when LND or the store fails."""
        backoff = BACKOFF_START
        while True:
            try:
                await self._follow_once()
            except (LndError, StoreError) as exc:
                log.warning("settlement stream interrupted", extra={"error": str(exc)})
            except Exception:
                # Anything else must not stop revenue booking for the life of the process.
                log.exception("settlement follower failed; retrying")
            else:
                backoff = BACKOFF_START
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _follow_once(self) -> None:
        index = max(await self._store.last_settle_index(), self._caught_up_to)
        if index == 0:
            index = self._caught_up_to = await self._catch_up()
        self._metrics.settle_index.set(index)
        async for invoice in self._lnd.subscribe_invoices(settle_index=index):
            if invoice.state is not InvoiceState.SETTLED or invoice.settle_index <= index:
                continue
            if await self._book(invoice):
                index = invoice.settle_index
                self._metrics.settle_index.set(index)

    async def _catch_up(self) -> int:
        """Book settled invoices since our first token; return the highest settle index seen."""
        first = await self._store.first_token_created_at()
        if first is None:
            return 0  # nothing minted yet: nothing of ours can have settled
        since = max(first - CLOCK_SKEW_SECONDS, 1)
        highest = 0
        offset = 0
        while True:
            page = await self._lnd.list_invoices(
                index_offset=offset, num_max=CATCH_UP_PAGE, creation_date_start=since
            )
            for invoice in page:
                if invoice.state is InvoiceState.SETTLED and invoice.settle_index > 0:
                    highest = max(highest, invoice.settle_index)
                    await self._book(invoice)
            if len(page) < CATCH_UP_PAGE:
                return highest
            offset = max(invoice.add_index for invoice in page)

    async def _book(self, invoice: Invoice) -> bool:
        """Record one settled invoice; False when this gateway did not mint it."""
        route = await self._store.route_for_payment_hash(invoice.payment_hash)
        if route is None:
            return False  # not minted by this gateway
        settled_at = invoice.settle_date or int(time.time())
        new = await self._store.record_settlement(
            invoice.payment_hash,
            route,
            invoice.amt_paid_msat,
            invoice.settle_index,
            settled_at,
        )
        if new:
            self._metrics.settled_invoices.labels(route=route).inc()
            self._metrics.revenue_msats.labels(route=route).inc(invoice.amt_paid_msat)
            log.info(
                "invoice settled",
                extra={
                    "route": route,
                    "settle_index": invoice.settle_index,
                    "amt_paid_msat": invoice.amt_paid_msat,
                },
            )
        return True
