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

Subscribed only while quiet. LND sends every subscriber every *added* invoice
as well, and prepares each one (it decodes the payment request again and
sends it over the stream): measured on regtest, 100-250 us of LND's CPU and
60-100 us of ours per challenge, a fifth more LND work per challenge than
behind Aperture, which follows nothing by default. The first added invoice on
a stream also proves LND has delivered the whole backlog (it sends the backlog
before any live event), so the follower stops there: it closes the stream,
waits `pause` seconds, and subscribes again from the last settlement it
processed, which LND then replays. Under challenge traffic LND so prepares
about one added invoice per `pause` instead of every one, and a settlement is
booked at most `pause` (plus a round trip) after it happened; with no
challenges the stream stays open and books at once. A stream that has no
settlement to resume after (index 0: LND would read it as "no backlog") is
never paused.
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
PAUSE_SECONDS = 1.0  # unsubscribed this long once invoices are being added


class InvoiceFeed(InvoiceLister, Protocol):
    """What the follower needs of the Lightning backend (gateway.lightning.backend.Backend)."""

    def settlements(self, after: int = 0) -> AsyncIterator[Invoice]: ...


class SettlementFollower:
    def __init__(
        self,
        lnd: InvoiceFeed,
        store: SettlementLedger,
        metrics: GatewayMetrics,
        *,
        pause: float = PAUSE_SECONDS,
    ) -> None:
        self._lnd = lnd
        self._store = store
        self._metrics = metrics
        self._pause = pause
        # The last settle index processed in stream order (ours or not): a stream resumes
        # after it, so settlements of invoices we did not mint are not replayed each time.
        self._seen = 0

    async def run(self) -> None:
        """Follow forever; reconnect with backoff when LND or the store fails."""
        backoff = BACKOFF_START
        while True:
            try:
                paused = await self._follow_once()
            except (BackendError, StoreError) as exc:
                log.warning("settlement stream interrupted: %s", exc, extra={"error": str(exc)})
            except Exception:
                # Anything else must not stop revenue booking for the life of the process.
                log.exception("settlement follower failed; retrying")
            else:
                backoff = BACKOFF_START
                if paused:  # caught up while invoices are being added: resubscribe later
                    await asyncio.sleep(self._pause)
                    continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _follow_once(self) -> bool:
        """One stream; True when it was closed on purpose (see the module docstring)."""
        index = max(await self._store.last_settle_index(), self._seen)
        if index > 0:
            self._metrics.settle_index.set(index)
            events = self._lnd.settlements(index)
            try:
                return await self._consume(events)
            finally:
                await _close(events)
        return await self._first_start()

    async def _first_start(self) -> bool:
        anchor = await self._newest_settle_index()
        if anchor <= 1:  # LND would read anchor - 1 = 0 as "no backlog"
            anchor = (await self._catch_up()).highest_settle_index
        events = self._lnd.settlements(anchor - 1 if anchor > 1 else 0)
        try:
            first = await anext(aiter(events), None)  # LND has registered the subscription
            if first is None:
                return False  # the stream ended at once: start over
            caught = await self._catch_up()
            # Every settlement up to the highest one listed is booked now: a stream may resume
            # after it (the live stream from 0 could not be paused otherwise).
            self._seen = max(self._seen, caught.highest_settle_index)
            log.info(
                "settlement follower started",
                extra={"anchor": anchor, "caught_up": caught.booked, "scanned": caught.scanned},
            )
            await self._handle(first)
            return await self._consume(events)
        finally:
            await _close(events)

    async def _newest_settle_index(self) -> int:
        newest = await self._lnd.invoices(limit=ANCHOR_PAGE, newest_first=True)
        return max((i.settle_index for i in newest if i.state is InvoiceState.SETTLED), default=0)

    async def _catch_up(self) -> ReconcileResult:
        return await reconcile(self._lnd, self._store, on_booked=self._count)

    async def _consume(self, events: AsyncIterator[Invoice]) -> bool:
        """Handle events until the stream ends (False) or, once there is a settlement to
        resume after, until the first added invoice (True: caught up, traffic flows)."""
        async for invoice in events:
            if _added(invoice):
                if self._seen > 0:
                    return True
                continue
            await self._handle(invoice)
        return False

    async def _handle(self, invoice: Invoice) -> None:
        """Book a settled invoice of ours, advancing the resume index (settle-index order)."""
        if invoice.state is not InvoiceState.SETTLED or invoice.settle_index <= 0:
            return
        minted = await self._store.minted(invoice.payment_hash)
        if minted is not None:  # else not minted by this gateway
            entry = settled_invoice(invoice, minted.route, minted.scheme)
            if await self._store.record_settlement(entry, advance=True):
                self._count(entry)
            self._metrics.settle_index.set(invoice.settle_index)
        self._seen = max(self._seen, invoice.settle_index)

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


def _added(invoice: Invoice) -> bool:
    """A live "invoice added" event (LND sends no added-invoice backlog: add index 0)."""
    return invoice.state is InvoiceState.OPEN and invoice.settle_index == 0


async def _close(events: AsyncIterator[Invoice]) -> None:
    """End the gRPC stream now rather than whenever the generator is collected."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
