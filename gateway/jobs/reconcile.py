"""Find settlements the ledger lacks, from the node's own invoice list, and book them.

The settlement follower should book every payment as it happens, but a
missed one must always be recoverable: LND keeps every invoice. `reconcile`
pages the node's invoice list from the first token this gateway minted (less a clock
skew allowance), asks the store which settled payment hashes are ours and
not booked yet, and books those. It is idempotent and safe beside a running
follower (the ledger books a payment hash once). Its bookings never move the
follower's resume index (`advance=False`): they are not in settle-index order.

Used by the follower's first start (to book what settled while no gateway
followed) and by `l402-gateway report --reconcile`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.lightning import Invoice, InvoiceState
from gateway.store.roles import SettlementLedger
from gateway.store.types import SettledInvoice

PAGE = 1000
CLOCK_SKEW_SECONDS = 300  # our token time vs LND's invoice creation time


class InvoiceLister(Protocol):
    """The listing part of gateway.lightning.backend.Backend."""

    async def invoices(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        created_since: int = 0,
        newest_first: bool = False,
    ) -> list[Invoice]: ...


@dataclass(frozen=True)
class ReconcileResult:
    """`scanned` invoices listed; `settled` of them settled; `ours` of those minted here;
    `booked` newly booked now (`booked_msat` in total); `highest_settle_index` of any
    settled invoice seen (0 if none)."""

    scanned: int = 0
    settled: int = 0
    ours: int = 0
    booked: int = 0
    booked_msat: int = 0
    highest_settle_index: int = 0


def settled_invoice(invoice: Invoice, route: str, scheme: str = "l402") -> SettledInvoice:
    return SettledInvoice(
        payment_hash=invoice.payment_hash,
        route=route,
        scheme=scheme,
        amt_paid_msat=invoice.amt_paid_msat,
        settle_index=invoice.settle_index,
        settled_at=invoice.settle_date or int(time.time()),
    )


async def reconcile(
    lnd: InvoiceLister,
    ledger: SettlementLedger,
    *,
    since: int | None = None,
    page: int = PAGE,
    on_booked: Callable[[SettledInvoice], None] | None = None,
) -> ReconcileResult:
    """Book every settled invoice of ours the ledger lacks (see module docstring).

    `since` (unix seconds) bounds the scan by invoice creation date; by default
    it starts at the first token in the store, and nothing is scanned when the
    store has minted none.
    """
    if since is None:
        first = await ledger.first_token_created_at()
        if first is None:
            return ReconcileResult()
        since = max(first - CLOCK_SKEW_SECONDS, 1)
    scanned = settled = ours = booked = booked_msat = highest = 0
    offset = 0
    while True:
        invoices = await lnd.invoices(offset, page, created_since=since)
        scanned += len(invoices)
        paid = [i for i in invoices if i.state is InvoiceState.SETTLED and i.settle_index > 0]
        settled += len(paid)
        highest = max([highest, *(i.settle_index for i in paid)])
        status = await ledger.booking_status([i.payment_hash for i in paid])
        for invoice in paid:
            if invoice.payment_hash not in status:
                continue  # not minted by this gateway
            ours += 1
            booking = status[invoice.payment_hash]
            if booking.booked:
                continue
            entry = settled_invoice(invoice, booking.route, booking.scheme)
            if await ledger.record_settlement(entry, advance=False):
                booked += 1
                booked_msat += entry.amt_paid_msat
                if on_booked is not None:
                    on_booked(entry)
        if len(invoices) < page:
            return ReconcileResult(scanned, settled, ours, booked, booked_msat, highest)
        offset = max(i.add_index for i in invoices)
