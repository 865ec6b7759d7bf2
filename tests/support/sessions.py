"""Payment-scheme sessions put into a real store with the store's own ops (open, top up,
spend), for tests of what operators see and do (admin API, CLI, MCP).

Each session is what the seller would have written: a deposit invoice row of
scheme `session`, consumed by `open_session` in the same transaction that
creates the session and credits it; top-ups the same way; requests spend by
reserving and settling units. The return invoice is a real signed BOLT11
invoice with no amount (as the session draft asks), whose payment hash the
test keeps.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from coincurve import PrivateKey

from gateway.l402.records import TokenRecord
from gateway.store.roles import Store
from gateway.store.types import HoldStatus, SessionAction, StoredAnswer
from tests.buyer.fakes import make_invoice

UNIT = "msat"


@dataclass(frozen=True)
class Seeded:
    session_id: bytes
    route: str
    return_invoice: str
    return_hash: bytes
    preimage: bytes  # the deposit's: a bearer secret, which no operator view may show


async def _deposit_row(store: Store, route: str, amount_msat: int, now: int) -> bytes:
    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    await store.put_token(
        TokenRecord(payment_hash, os.urandom(32), payment_hash, route, os.urandom(32),
                    amount_msat, True, now, now + 900, scheme="session")
    )  # fmt: skip
    return preimage


async def open_session(
    store: Store,
    route: str,
    *,
    deposit_msat: int,
    unit_msat: int,
    now: int,
    return_expiry: int = 30 * 86_400,
) -> Seeded:
    preimage = await _deposit_row(store, route, deposit_msat, now)
    session_id = hashlib.sha256(preimage).digest()
    return_hash = os.urandom(32)
    invoice = make_invoice(PrivateKey(), None, return_hash, timestamp=now, expiry=return_expiry)
    action = SessionAction(
        f"open:{os.urandom(8).hex()}", session_id, session_id, route, deposit_msat, now, now + 900
    )
    done = await store.open_session(action, invoice, unit_msat, StoredAnswer(200, "{}"))
    assert done.answer is not None, done
    return Seeded(session_id, route, invoice, return_hash, preimage)


async def top_up(store: Store, seeded: Seeded, amount_msat: int, now: int) -> bytes:
    """Credit a top-up; its invoice's payment hash."""
    preimage = await _deposit_row(store, seeded.route, amount_msat, now)
    payment_hash = hashlib.sha256(preimage).digest()
    action = SessionAction(
        f"topUp:{os.urandom(8).hex()}", seeded.session_id, payment_hash, seeded.route,
        amount_msat, now, now + 900,
    )  # fmt: skip
    done = await store.top_up_session(action, StoredAnswer(200, "{}"))
    assert done.answer is not None, done
    return payment_hash


async def spend(store: Store, seeded: Seeded, amount_msat: int, now: int) -> None:
    """One request served: a unit reserved, then settled (what a bearer request does)."""
    held = await store.reserve_units(
        seeded.session_id, amount_msat, unit=UNIT, scope=seeded.route, now=now, ttl=60,
        minimum=amount_msat,
    )  # fmt: skip
    assert held.status is HoldStatus.RESERVED, held
    assert held.hold_id is not None
    settled = await store.settle_units(seeded.session_id, held.hold_id, amount_msat, now=now)
    assert settled.debited == amount_msat
