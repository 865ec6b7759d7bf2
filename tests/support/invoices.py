"""A named fake of the Lightning backend's invoice role for in-process tests of the request path.

Real LND covers the same paths in the regtest suites; this one lets unit tests
reach every branch without a node: it "creates" invoices whose preimages the
test knows, and can be told to fail like an unreachable LND.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from gateway.l402.mint import NewInvoice
from gateway.lightning import BackendUnavailable, Health


@dataclass
class MemoryInvoiceSource:
    """`add_invoice` as LndClient has it; `preimages[payment_hash]` pays an invoice."""

    preimages: dict[bytes, bytes] = field(default_factory=dict)
    calls: list[tuple[int, str, int, bool]] = field(default_factory=list)
    down: bool = False

    async def add_invoice(
        self, value_msat: int, memo: str, expiry: int, private: bool
    ) -> NewInvoice:
        self.calls.append((value_msat, memo, expiry, private))
        if self.down:
            raise BackendUnavailable("AddInvoice", "UNAVAILABLE", "fake LND is down")
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).digest()
        self.preimages[payment_hash] = preimage
        return NewInvoice(
            f"lnbcrt{value_msat // 1000}n1fake{len(self.calls)}", payment_hash, len(self.calls)
        )

    def preimage_for(self, payment_hash: bytes) -> bytes:
        return self.preimages[payment_hash]

    async def health(self, timeout: float) -> Health:
        """The readiness probe's call."""
        if self.down:
            return Health(False, "unreachable: UNAVAILABLE")
        return Health(True, "ok")

    async def close(self) -> None:
        return None
