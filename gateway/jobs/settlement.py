"""Settlement accounting: follow LND's SubscribeInvoices and book revenue per route.

Steady state: the follower resumes from the last settle index the ledger
advanced to, and LND replays every settlement after it before going live, so
nothing is missed while the gateway (or LND) was down; the ledger's
per-payment-hash uniqueness makes a replay count once. Invoices the gateway
did not mint are ignored. It runs beside serving: start-up never waits on it.

First start (nothing booked in order yet, resume index 0). LND reads a settle
index of 0 as "no backlog", so a follower that lists invoices and then
subscribes from 0 misses any invoice settled between the two calls, for good
once a later settlement moves the resume index past it. Here the follower
subscribes *first* and lists *after*, so every settlement is in the listing or
in the stream:

1. It finds an anchor: the highest settle index among LND's newest invoices
   (else, after listing and booking what settled while no gateway followed,
   the highest seen there).
2. It subscribes from anchor - 1, so LND at once replays the anchor's
   settlement. Receiving any event proves LND has registered the subscription
   (it registers before it replays). With no anchor (nothing ever settled in
   the gateway's era) it subscribes live-only and the first event of any kind
   is the proof.
3. Then it lists again (`gateway.jobs.reconcile`) and books what settled before
   the subscription existed; anything later is in the stream.
4. It processes the stream in settle-index order, advancing the resume index.
   Listing bookings never advance it, since they are not in that order.

A crash at any point leaves either a resume index below every unbooked
settlement, or a first start again. `l402-gateway report --reconcile` books
anything missed by other means.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from gateway.jobs.reconcile import InvoiceLister, ReconcileResult, reconcile, settled_invoice
from gateway.lightning import BackendError, Invoice, InvoiceState
from gateway.observability.metrics import GatewayMetrics
from gateway.store.roles import SettlementLedger
from gateway.store.types import SettledInvoice, StoreError

log = logging.getLogger("gateway.settlement")

BACKOFF_START = 0.5
BACKOFF_MAX = 10.0
ANCHOR_PAGE = 100  # newest invoices searched for a settled one to anchor the subscription


class InvoiceFeed(InvoiceLister, Protocol):
    """What the follower needs of the Lightning backend (gateway.lightning.backend.Backend)."""

    def settlements(self, after: int = 0) -> AsyncIterator[Invoice]: ...


class SettlementFollower:
    def __init__(self, lnd: InvoiceFeed, store: SettlementLedger, metrics: GatewayMetrics) -> None:
        self._lnd = lnd
        self._store = store
        self._metrics = metrics

    async def run(self) -> None:
        """Follow forever; reconnect with backoff when LND or the store fails."""
        backoff = BACKOFF_START
        while True:
            try:
                await self._follow_once()
            except (BackendError, StoreError) as exc:
                log.warning("settlement stream interrupted: %s", exc, extra={"error": str(exc)})
            except Exception:
                # Anything else must not stop revenue booking for the life of the process.
                log.exception("settlement follower failed; retrying")
            else:
                backoff = BACKOFF_START
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _follow_once(self) -> None:
        index = await self._store.last_settle_index()
        if index > 0:
            self._metrics.settle_index.set(index)
            events = self._lnd.settlements(index)
            try:
                await self._consume(events)
            finally:
                await _close(events)
        else:
            await self._first_start()

    async def _first_start(self) -> None:
        anchor = await self._newest_settle_index()
        if anchor <= 1:  # LND would read anchor - 1 = 0 as "no backlog"
            anchor = (await self._catch_up()).highest_settle_index
        events = self._lnd.settlements(anchor - 1 if anchor > 1 else 0)
        try:
            first = await anext(aiter(events), None)  # LND has registered the subscription
            if first is None:
                return  # the stream ended at once: start over
            caught = await self._catch_up()
            log.info(
                "settlement follower started",
                extra={"anchor": anchor, "caught_up": caught.booked, "scanned": caught.scanned},
            )
            await self._handle(first)
            await self._consume(events)
        finally:
            await _close(events)

    async def _newest_settle_index(self) -> int:
        newest = await self._lnd.invoices(limit=ANCHOR_PAGE, newest_first=True)
        return max((i.settle_index for i in newest if i.state is InvoiceState.SETTLED), default=0)

    async def _catch_up(self) -> ReconcileResult:
        return await reconcile(self._lnd, self._store, on_booked=self._count)

    async def _consume(self, events: AsyncIterator[Invoice]) -> None:
        async for invoice in events:
            await self._handle(invoice)

    async def _handle(self, invoice: Invoice) -> None:
        """Book a settled invoice of ours, advancing the resume index (settle-index order)."""
        if invoice.state is not InvoiceState.SETTLED or invoice.settle_index <= 0:
            return
        minted = await self._store.minted(invoice.payment_hash)
        if minted is None:
            return  # not minted by this gateway
        entry = settled_invoice(invoice, minted.route, minted.scheme)
        if await self._store.record_settlement(entry, advance=True):
            self._count(entry)
        self._metrics.settle_index.set(invoice.settle_index)

    def _count(self, entry: SettledInvoice) -> None:
        """Metrics and log for a newly booked settlement (stream or catch-up)."""
        self._metrics.settled_invoices.labels(route=entry.route).inc()
        self._metrics.revenue_msats.labels(route=entry.route).inc(entry.amt_paid_msat)
        self._metrics.scheme_revenue_msats.labels(route=entry.route, scheme=entry.scheme).inc(
            entry.amt_paid_msat
        )
        log.info(
            "invoice settled",
            extra={
                "route": entry.route,
                "settle_index": entry.settle_index,
                "amt_paid_msat": entry.amt_paid_msat,
            },
        )


async def _close(events: AsyncIterator[Invoice]) -> None:
    """End the gRPC stream now rather than whenever the generator is collected."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
