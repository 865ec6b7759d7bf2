"""What the seller needs of a Lightning node, whatever the node is (the backend seam).

The paywall mints with `add_invoice`; the settlement follower and reconcile
read invoices through `invoices` (a page after a listing cursor) and
`settlements` (a stream after a settlement cursor); the pruner asks
`lookup_invoice`; readiness asks `health`. Cursors are the backend's own
integers (LND: add index and settle index), compared only by the backend.
Paying (session refunds) is a separate, narrower role, `RefundPayer`, held by
its own least-privilege credential.

Adding a backend means: a module implementing `Backend` (like
gateway.lightning.lnd), a branch in gateway.lightning.factory, and its
config section in gateway.config (docs/architecture.md, "Where does a change go").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from gateway.lightning.types import AddedInvoice, Invoice, NodeInfo, Payment


@dataclass(frozen=True, slots=True)
class Health:
    """Whether the node can serve the seller now; `detail` is secret-free and says why not."""

    ready: bool
    detail: str


class Backend(Protocol):
    """Also the core's `gateway.l402.mint.InvoiceSource` (add_invoice), structurally."""

    name: str  # the config's `backend:` value ("lnd")

    async def add_invoice(
        self, value_msat: int, memo: str = "", expiry: int = 3600, private: bool = True
    ) -> AddedInvoice: ...

    async def lookup_invoice(self, payment_hash: bytes) -> Invoice: ...

    async def invoices(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        created_since: int = 0,
        newest_first: bool = False,
    ) -> list[Invoice]:
        """One page of invoices after the listing cursor `after` (an `Invoice.add_index`),
        created at or after `created_since` (unix seconds; 0: all)."""
        ...

    def settlements(self, after: int = 0) -> AsyncIterator[Invoice]:
        """Every settlement with a settle cursor above `after`, then live ones, until
        cancelled or the node drops the stream; `after` 0 is live only (no backlog)."""
        ...

    async def node_info(self) -> NodeInfo: ...

    async def health(self, timeout: float) -> Health: ...

    async def close(self) -> None: ...


class RefundPayer(Protocol):
    """Pay an invoice (session refunds), with a credential that can do nothing else."""

    async def pay_invoice(
        self,
        bolt11: str,
        *,
        fee_limit_msat: int,
        timeout_seconds: int = 60,
        amount_msat: int | None = None,
    ) -> Payment: ...

    async def close(self) -> None: ...
