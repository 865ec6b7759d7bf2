"""TokenCatalog (admin API, `tokens list/show`) on real SQLite and real PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.store import ReserveResult, Store
from gateway.store.types import SettledInvoice, TokenInfo

from .factories import make_record

T0 = 1_700_000_000


async def test_a_token_shows_price_payment_use_and_revocation(store: Store) -> None:
    paid = make_record("premium", price_msat=10_000, created_at=T0, valid_until=T0 + 3600)
    single = make_record("textgen", single_use=True, price_msat=42_000, created_at=T0 + 1)
    revoked = make_record("premium", created_at=T0 + 2)
    for record in (paid, single, revoked):
        await store.put_token(record)
    await store.record_settlement(SettledInvoice(paid.payment_hash, "premium", 10_500, 4, T0 + 60))
    reservation = await store.reserve(single.key_id, T0 + 5, 30)
    assert reservation.result is ReserveResult.RESERVED
    assert reservation.lease_id is not None
    assert await store.commit(single.key_id, reservation.lease_id, T0 + 6)
    assert await store.revoke(revoked.token_id_hex)

    info = await store.find_token(paid.token_id)
    assert info == TokenInfo(
        token_id=paid.token_id,
        payment_hash=paid.payment_hash,
        route="premium",
        price_msat=10_000,
        single_use=False,
        created_at=T0,
        valid_until=T0 + 3600,
        revoked_at=None,
        used_at=None,
        settled_at=T0 + 60,
        amt_paid_msat=10_500,
    )
    assert await store.find_token(paid.payment_hash) == info  # by payment hash too
    used = await store.find_token(single.token_id)
    assert used is not None
    assert (used.single_use, used.used_at, used.settled_at) == (True, T0 + 6, None)
    gone = await store.find_token(revoked.token_id)
    assert gone is not None
    assert gone.revoked_at is not None
    assert await store.find_token(b"\x09" * 32) is None


async def test_the_root_key_is_never_part_of_a_token_info(store: Store) -> None:
    record = make_record()
    await store.put_token(record)
    info = await store.find_token(record.token_id)
    assert info is not None
    assert "root_key" not in {f.name for f in dataclasses.fields(info)}
    assert record.root_key.hex() not in repr(info)


async def test_listing_is_newest_first_and_pages_through_ties(store: Store) -> None:
    records = [make_record("a" if i % 3 else "b", created_at=T0 + i // 4) for i in range(23)]
    for record in records:
        await store.put_token(record)
    expected = sorted(records, key=lambda r: (r.created_at, r.token_id), reverse=True)
    seen: list[TokenInfo] = []
    before: tuple[int, bytes] | None = None
    while True:
        page = await store.list_tokens(limit=5, before=before)
        seen += page
        if len(page) < 5:
            break
        before = (page[-1].created_at, page[-1].token_id)
    # Four tokens per second: a created_at cursor alone would skip the tied ones.
    assert [i.token_id for i in seen] == [r.token_id for r in expected]

    only_b = await store.list_tokens(route="b", limit=100)
    assert [i.token_id for i in only_b] == [r.token_id for r in expected if r.route == "b"]


async def test_listing_rejects_absurd_arguments(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list_tokens(limit=0)
    with pytest.raises(ValueError, match="32 bytes"):
        await store.find_token(b"\x01")
