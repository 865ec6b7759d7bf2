"""SessionCatalog (admin API, `sessions list/show`) on real SQLite and real PostgreSQL:
sessions made with the store's own ops, listed with filters and pages, with their credits."""

from __future__ import annotations

import time

import pytest

from gateway.store import Store
from tests.support.sessions import open_session, spend, top_up

T0 = int(time.time()) - 3600


async def test_a_session_shows_its_balance_deposits_spending_and_refund(store: Store) -> None:
    seeded = await open_session(store, "premium", deposit_msat=50_000, unit_msat=10_000, now=T0)
    top = await top_up(store, seeded, 20_000, T0 + 10)
    await spend(store, seeded, 10_000, T0 + 20)
    info = await store.find_session(seeded.session_id)
    assert info is not None
    row = info.session
    assert (row.route, row.status, row.unit_msat, row.opened_at) == ("premium", "open", 10_000, T0)
    assert row.last_activity == T0 + 10  # the top-up touched it (spending here did not)
    assert (info.credited_msat, info.debited_msat, info.spent_msat) == (70_000, 10_000, 10_000)
    assert row.balance_msat == 60_000
    credits = await store.session_credits(seeded.session_id)
    assert [(c.payment_hash, c.amount_msat, c.credited_at) for c in credits] == [
        (seeded.session_id, 50_000, T0),
        (top, 20_000, T0 + 10),
    ]

    closed = await store.close_session(seeded.session_id, "admin", T0 + 30)
    assert closed is not None
    after = await store.find_session(seeded.session_id)
    assert after is not None
    assert (after.session.status, after.session.close_reason) == ("closed", "admin")
    assert (after.session.refund_msat, after.session.refund_state) == (60_000, "pending")
    # the refund is taken from the balance: debited counts it, spent does not
    assert (after.debited_msat, after.spent_msat, after.session.balance_msat) == (70_000, 10_000, 0)
    assert await store.find_session(b"\x07" * 32) is None
    assert await store.session_credits(b"\x07" * 32) == []


async def test_listing_filters_and_pages_newest_first(store: Store) -> None:
    made = []
    for index in range(5):  # two share an opened_at: the cursor must not skip either
        opened = T0 + min(index, 3)
        route = "premium" if index % 2 == 0 else "textgen"
        made.append(
            await open_session(store, route, deposit_msat=20_000, unit_msat=1_000, now=opened)
        )
    await store.close_session(made[1].session_id, "client", T0 + 100)
    await spend(store, made[2], 20_000, T0 + 100)
    await store.close_session(made[2].session_id, "idle", T0 + 101)  # nothing left: skipped

    listed = await store.list_sessions()
    assert len(listed) == 5
    keys = [(i.session.opened_at, i.session.session_id) for i in listed]
    assert keys == sorted(keys, reverse=True)

    seen: list[bytes] = []
    before = None
    while True:
        page = await store.list_sessions(limit=2, before=before)
        seen += [i.session.session_id for i in page]
        if len(page) < 2:
            break
        before = (page[-1].session.opened_at, page[-1].session.session_id)
    assert seen == [i.session.session_id for i in listed]

    still_open = await store.list_sessions("open")
    assert {i.session.session_id for i in still_open} == {made[n].session_id for n in (0, 3, 4)}
    closed = await store.list_sessions(status="closed", route="textgen")
    assert [i.session.session_id for i in closed] == [made[1].session_id]
    skipped = await store.list_sessions(refund_state="skipped")
    assert [i.session.session_id for i in skipped] == [made[2].session_id]
    assert await store.list_sessions(route="nope") == []
    with pytest.raises(ValueError, match="limit"):
        await store.list_sessions(limit=0)


async def test_no_view_holds_a_preimage(store: Store) -> None:
    seeded = await open_session(store, "premium", deposit_msat=5_000, unit_msat=1_000, now=T0)
    info = await store.find_session(seeded.session_id)
    assert info is not None
    assert seeded.preimage.hex() not in repr(info)
    assert seeded.return_invoice not in repr(info)  # kept out of repr, shown by no view
