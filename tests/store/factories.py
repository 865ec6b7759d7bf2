"""Test data: token records shaped like the minter's."""

from __future__ import annotations

import hashlib
import os

from gateway.store import TokenRecord


def make_record(
    route: str = "ep212-premium-signal",
    *,
    single_use: bool = False,
    price_msat: int = 10_000,
    created_at: int = 1_700_000_000,
    valid_until: int | None = None,
) -> TokenRecord:
    payment_hash = os.urandom(32)
    token_id = os.urandom(32)
    identifier = b"\x00\x00" + payment_hash + token_id
    return TokenRecord(
        key_id=hashlib.sha256(identifier).digest(),
        token_id=token_id,
        payment_hash=payment_hash,
        route=route,
        root_key=os.urandom(32),
        price_msat=price_msat,
        single_use=single_use,
        created_at=created_at,
        valid_until=valid_until,
    )
