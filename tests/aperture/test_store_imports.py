"""The store's batched import and revocation sync (gateway.store.imports), on real SQLite
and real PostgreSQL; and the importer stopping on a store failure mid-run."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Sequence

import pytest

from gateway.aperture.importer import ImportFailed, run_import
from gateway.aperture.keystore import open_source
from gateway.aperture.options import ImportOptions
from gateway.l402.records import TokenRecord
from gateway.store import Store, StoreError, open_store
from gateway.store.types import ImportedKey, ImportOutcome
from tests.aperture.schema import T0, ApertureDb, Token


def key(token: Token, source: str = "aperture", **changes: object) -> ImportedKey:
    imported = ImportedKey(
        token.key_id,
        token.root_key,
        T0,
        source,
        token.token_id,
        token.payment_hash,
        token.service,
        10_000,
    )
    return dataclasses.replace(imported, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


def minted_here(root_key: bytes) -> TokenRecord:
    token = Token()  # the same identifier layout as ours
    return TokenRecord(
        key_id=token.key_id,
        token_id=token.token_id,
        payment_hash=token.payment_hash,
        route="premium",
        root_key=root_key,
        price_msat=10_000,
        single_use=False,
        created_at=T0,
        valid_until=None,
    )


async def test_one_batch_gives_every_outcome(store: Store) -> None:
    new, present, revoked, earlier = Token(), Token(), Token(), Token()
    await store.import_root_keys([key(present), key(revoked), key(earlier)])
    assert revoked.token_id is not None
    assert await store.revoke(revoked.token_id.hex())
    ours = minted_here(os.urandom(32))
    await store.put_token(ours)
    clash_minted = ImportedKey(ours.key_id, os.urandom(32), T0, "aperture")
    clash_imported = key(earlier, root_key=os.urandom(32))
    batch = [key(new), key(present), key(revoked), clash_minted, clash_imported, key(new)]
    assert await store.import_root_keys(batch) == [
        ImportOutcome.IMPORTED,
        ImportOutcome.PRESENT,
        ImportOutcome.REVOKED,
        ImportOutcome.CONFLICT_MINTED,
        ImportOutcome.CONFLICT_IMPORTED,
        ImportOutcome.PRESENT,  # the same key twice in one batch
    ]
    assert await store.get_root_key(new.key_id) == new.root_key
    assert await store.get_root_key(revoked.key_id) is None  # stays revoked
    assert await store.get_root_key(ours.key_id) == ours.root_key  # never replaced
    assert await store.get_root_key(earlier.key_id) == earlier.root_key
    (twice,) = await store.import_root_keys([key(new, root_key=os.urandom(32))])
    assert twice is ImportOutcome.CONFLICT_IMPORTED


async def test_a_batch_fills_in_what_an_earlier_import_did_not_know(store: Store) -> None:
    token = Token()
    bare = key(token, token_id=None, payment_hash=None, service=None, price_msat=None)
    assert await store.import_root_keys([bare]) == [ImportOutcome.IMPORTED]
    assert await store.find_token(token.token_id) is None
    assert await store.import_root_keys([key(token)]) == [ImportOutcome.PRESENT]
    info = await store.find_token(token.token_id)
    assert info is not None
    assert (info.route, info.price_msat, info.imported) == ("premium", 10_000, True)


async def test_large_batches_and_their_bounds(store: Store) -> None:
    tokens = [Token() for _ in range(1200)]  # several IN lists and INSERT statements
    outcomes = await store.import_root_keys([key(t) for t in tokens])
    assert outcomes == [ImportOutcome.IMPORTED] * 1200
    again = await store.import_root_keys([key(t) for t in tokens])
    assert again == [ImportOutcome.PRESENT] * 1200
    for t in (tokens[0], tokens[599], tokens[-1]):
        assert await store.get_root_key(t.key_id) == t.root_key
    with pytest.raises(ValueError, match="at most 5000"):
        await store.import_root_keys([key(Token()) for _ in range(5001)])
    with pytest.raises(ValueError, match="32 bytes"):
        await store.import_root_keys([key(Token(), root_key=b"\x01" * 16)])
    assert await store.import_root_keys([]) == []


async def test_two_importers_racing_import_each_key_once(store_url: str) -> None:
    first, second = await open_store(store_url), await open_store(store_url)
    try:
        tokens = [Token() for _ in range(300)]
        batch = [key(t) for t in tokens]
        a, b = await asyncio.gather(first.import_root_keys(batch), second.import_root_keys(batch))
        for x, y in zip(a, b, strict=True):
            assert sorted([x, y]) == sorted([ImportOutcome.IMPORTED, ImportOutcome.PRESENT])
        for t in tokens[:5]:
            assert await second.get_root_key(t.key_id) == t.root_key
    finally:
        await first.close()
        await second.close()


async def test_live_imported_keys_and_their_revocation(store: Store) -> None:
    mine = [Token() for _ in range(5)]
    theirs = Token()
    await store.import_root_keys([key(t) for t in mine] + [key(theirs, "other")])
    seen: list[bytes] = []
    after = None
    while page := await store.live_imported_keys("aperture", after=after, limit=2):
        assert len(page) <= 2
        seen += [ref.key_id for ref in page]
        after = page[-1].key_id
    assert seen == sorted(t.key_id for t in mine)  # by key id, only this source's
    by_key = {t.key_id: t for t in mine}
    refs = await store.live_imported_keys("aperture")
    assert {ref.token_id for ref in refs} == {by_key[ref.key_id].token_id for ref in refs}
    assert await store.revoke_imported_keys([mine[0].key_id, mine[1].key_id]) == 2
    assert await store.revoke_imported_keys([mine[0].key_id]) == 0  # already revoked
    assert await store.get_root_key(mine[0].key_id) is None
    assert len(await store.live_imported_keys("aperture")) == 3
    assert [r.key_id for r in await store.live_imported_keys("other")] == [theirs.key_id]
    info = await store.find_token(mine[1].token_id)
    assert info is not None
    assert info.revoked_at is not None


@dataclasses.dataclass
class FailingStore:
    """A FAKE fault around the real store: its `fail_on`-th batch raises StoreError, as a
    database that goes away mid-run would (hard to cause at exactly that point)."""

    real: Store
    fail_on: int
    calls: int = 0

    async def import_root_keys(self, keys: Sequence[ImportedKey]) -> list[ImportOutcome]:
        self.calls += 1
        if self.calls == self.fail_on:
            raise StoreError("simulated database failure")
        return await self.real.import_root_keys(keys)

    async def import_root_key(self, key: ImportedKey) -> bool:
        return await self.real.import_root_key(key)

    async def live_imported_keys(
        self, source: str, *, after: bytes | None = None, limit: int = 1000
    ) -> list[object]:
        raise AssertionError("not reached")

    async def revoke_imported_keys(self, key_ids: Sequence[bytes]) -> int:
        raise AssertionError("not reached")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_store_failure_stops_with_what_was_done(
    aperture_db: ApertureDb, store: Store
) -> None:
    tokens = [Token() for _ in range(5)]
    await asyncio.to_thread(aperture_db.mint, tokens)  # its own event loop for PostgreSQL
    options = ImportOptions({"premium"}, page_rows=2)
    lines: list[str] = []
    source = await open_source(aperture_db.source)
    try:
        with pytest.raises(ImportFailed, match="simulated database failure") as failed:
            await run_import(source, FailingStore(store, fail_on=2), options, lines.append)  # type: ignore[arg-type]
        assert failed.value.report.imported == 2  # the first page
        assert await store.get_root_key(tokens[1].key_id) == tokens[1].root_key
        assert await store.get_root_key(tokens[2].key_id) is None
        again = await run_import(source, store, options, lines.append)
    finally:
        await source.close()
    assert (again.imported, again.already_present) == (3, 2)
    assert again.clean
    assert lines == []
