"""Pruning support in the store, on real SQLite and real PostgreSQL alike.

A row is a candidate only when (a) older than the cut-off, (b) unsettled and
(c) never used or leased; `delete_tokens` re-checks (b) and (c) itself.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.store import Store, TokenRecord, open_store
from gateway.store.types import PruneCandidate, SettledInvoice
from tests.gateway.harness import poll
from tests.support.postgres import PostgresServer

from .conftest import OpenStore
from .factories import make_record

T0 = 1_700_000_000
CUTOFF = T0 + 1_000


async def put(store: Store, **kw: object) -> TokenRecord:
    record = make_record(**kw)  # type: ignore[arg-type]
    await store.put_token(record)
    return record


async def settle(store: Store, record: TokenRecord, index: int = 1) -> None:
    assert await store.record_settlement(
        SettledInvoice(record.payment_hash, record.route, record.price_msat, index, T0 + 5_000)
    )


def keys(candidates: list[PruneCandidate]) -> list[bytes]:
    return [c.key_id for c in candidates]


async def test_candidates_meet_age_settlement_and_use_conditions(store: Store) -> None:
    old = await put(store, created_at=T0)
    await put(store, created_at=CUTOFF)  # (a) not older than the cut-off
    await put(store, created_at=CUTOFF + 50)
    settled = await put(store, created_at=T0 + 1)  # (b)
    await settle(store, settled)
    used = await put(store, created_at=T0 + 2, single_use=True)  # (c) consumed
    result, lease_id = await store.reserve(used.key_id, T0 + 10, 30)
    assert result == "reserved"
    assert lease_id is not None
    assert await store.commit(used.key_id, lease_id, T0 + 11)
    leased = await put(store, created_at=T0 + 3, single_use=True)  # (c) in flight
    assert (await store.reserve(leased.key_id, T0 + 10, 30)).result == "reserved"
    revoked = await put(store, created_at=T0 + 4)  # unpaid and revoked: still prunable
    assert await store.revoke(revoked.token_id.hex())

    found = await store.prune_candidates(CUTOFF, 100)
    assert found == [
        PruneCandidate(old.key_id, old.payment_hash, T0),
        PruneCandidate(revoked.key_id, revoked.payment_hash, T0 + 4),
    ]


async def test_candidates_oldest_first_bounded_and_paged(store: Store) -> None:
    records = [await put(store, created_at=T0 + (i % 4)) for i in range(10)]  # ties included
    expected = sorted(records, key=lambda r: (r.created_at, r.key_id))
    first = await store.prune_candidates(CUTOFF, 4)
    assert keys(first) == [r.key_id for r in expected[:4]]
    seen = list(first)
    while True:
        after = (seen[-1].created_at, seen[-1].key_id)
        page = await store.prune_candidates(CUTOFF, 4, after=after)
        seen += page
        if len(page) < 4:
            break
    assert keys(seen) == [r.key_id for r in expected]
    assert await store.prune_candidates(CUTOFF, 4, after=(T0 + 99, b"\xff" * 32)) == []


async def test_delete_tokens_removes_only_still_prunable_rows(store: Store) -> None:
    a, b, c, d = [await put(store, created_at=T0 + i, single_use=True) for i in range(4)]
    candidates = await store.prune_candidates(CUTOFF, 10)
    assert keys(candidates) == [a.key_id, b.key_id, c.key_id, d.key_id]

    # Between reading the candidates and deleting: b settles, c is used, d is leased.
    await settle(store, b)
    result, lease_id = await store.reserve(c.key_id, T0 + 10, 30)
    assert result == "reserved"
    assert lease_id is not None
    assert await store.commit(c.key_id, lease_id, T0 + 11)
    assert (await store.reserve(d.key_id, T0 + 10, 30)).result == "reserved"

    assert await store.delete_tokens(keys(candidates)) == 1
    assert await store.get_root_key(a.key_id) is None
    for kept in (b, c, d):
        assert await store.get_root_key(kept.key_id) == kept.root_key
    assert await store.route_for_payment_hash(b.payment_hash) == b.route  # revenue still books
    assert await store.delete_tokens(keys(candidates)) == 0  # idempotent
    assert await store.delete_tokens([]) == 0


async def test_delete_tokens_deletes_a_large_batch(store: Store) -> None:
    records = [await put(store, created_at=T0) for _ in range(600)]
    unknown = [b"\x07" * 32]
    assert await store.delete_tokens([r.key_id for r in records] + unknown) == 600
    assert await store.prune_candidates(CUTOFF, 1000) == []
    assert await store.first_token_created_at() is None


async def test_settlement_racing_the_delete_from_another_process_wins(
    open_stores: OpenStore,
) -> None:
    """Two store handles (two gateway processes): whichever commits first, a settled row stays."""
    pruner, follower = await open_stores(), await open_stores()
    records = [await put(pruner, created_at=T0) for _ in range(40)]
    candidates = keys(await pruner.prune_candidates(CUTOFF, 100))
    settled = records[::2]

    async def book() -> None:
        for index, record in enumerate(settled, 1):
            await settle(follower, record, index)

    deleted, _ = await asyncio.gather(pruner.delete_tokens(candidates), book())
    survivors = [r for r in records if await pruner.get_root_key(r.key_id) is not None]
    # Every settlement booked before the delete kept its row; one booked after
    # found the row gone (impossible for real: LND never settles a canceled invoice).
    assert deleted + len(survivors) == len(records)
    for record in survivors:
        assert record in settled


@pytest.mark.postgres
async def test_postgres_delete_waits_for_a_settlement_in_flight(
    postgres_server: PostgresServer,
) -> None:
    """A settlement transaction open when the delete starts commits first and keeps its row."""
    name = postgres_server.create_database()
    store = await open_store(postgres_server.url(name))
    other = await asyncpg.connect(postgres_server.url(name))
    try:
        record = await put(store, created_at=T0)
        candidates = keys(await store.prune_candidates(CUTOFF, 10))
        booking = other.transaction()
        await booking.start()
        await other.execute(
            "INSERT INTO l402_settlements VALUES ($1, $2, $3, 1, $4, '2023-11-14')",
            record.payment_hash,
            record.route,
            record.price_msat,
            T0,
        )
        delete = asyncio.create_task(store.delete_tokens(candidates))

        async def delete_is_waiting() -> bool:
            waiting = await other.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE c.relname = 'l402_settlements' AND NOT l.granted"
            )
            return bool(waiting)

        await poll("the delete to wait for the settlement's lock", delete_is_waiting, 10.0)
        assert not delete.done()
        await booking.commit()
        assert await delete == 0
        assert await store.get_root_key(record.key_id) == record.root_key
    finally:
        await other.close()
        await store.close()
        postgres_server.drop_database(name)
